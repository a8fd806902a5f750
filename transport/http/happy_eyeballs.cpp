#include "transport/http/happy_eyeballs.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "transport/core/log.hpp"

namespace quiclab::http {

std::vector<SocketAddress> order_for_racing(const std::vector<SocketAddress>& resolved) {
  std::vector<SocketAddress> v6, v4;
  for (const auto& a : resolved) {
    auto& list = a.is_v6() ? v6 : v4;
    if (std::find(list.begin(), list.end(), a) == list.end()) list.push_back(a);
  }
  std::vector<SocketAddress> out;
  out.reserve(v6.size() + v4.size());
  for (std::size_t i = 0; i < std::max(v6.size(), v4.size()); ++i) {
    if (i < v6.size()) out.push_back(v6[i]);
    if (i < v4.size()) out.push_back(v4[i]);
  }
  return out;
}

// ---- AttemptSchedule ---------------------------------------------------------

AttemptSchedule::AttemptSchedule(std::size_t candidates, Timestamp attempt_delay)
    : state_(candidates, State::waiting), delay_(attempt_delay) {}

std::vector<std::size_t> AttemptSchedule::launch(Timestamp now) {
  if (winner_ || next_ >= state_.size()) return {};
  state_[next_] = State::trying;
  last_start_ = now;
  return {next_++};
}

std::vector<std::size_t> AttemptSchedule::start(Timestamp now) {
  if (begun_) return {};
  begun_ = true;
  return launch(now);
}

std::vector<std::size_t> AttemptSchedule::due(Timestamp now) {
  auto deadline = expiry();
  if (!deadline || now < *deadline) return {};
  return launch(now);
}

std::vector<std::size_t> AttemptSchedule::failed(std::size_t i, Timestamp now) {
  if (i >= state_.size() || state_[i] != State::trying) return {};
  state_[i] = State::failed;
  if (winner_) return {};
  // RFC 8305 section 5: when the attempts running have all failed, the next
  // one need not wait for the delay to run out.
  if (in_progress().empty()) return launch(now);
  return {};
}

bool AttemptSchedule::succeeded(std::size_t i) {
  if (i >= state_.size() || state_[i] != State::trying || winner_) return false;
  state_[i] = State::won;
  winner_ = i;
  return true;
}

std::optional<Timestamp> AttemptSchedule::expiry() const {
  if (!begun_ || winner_ || next_ >= state_.size()) return std::nullopt;
  return last_start_ + delay_;
}

bool AttemptSchedule::exhausted() const {
  return begun_ && !winner_ && next_ >= state_.size() && in_progress().empty();
}

std::vector<std::size_t> AttemptSchedule::in_progress() const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < state_.size(); ++i) {
    if (state_[i] == State::trying) out.push_back(i);
  }
  return out;
}

// ---- RacingClient ------------------------------------------------------------

RacingClient::RacingClient(uv::Loop& loop, Url origin, int socktype, std::uint64_t attempt_delay_ms,
                           AttemptFactory make_attempt)
    : origin_(std::move(origin)),
      socktype_(socktype),
      delay_(attempt_delay_ms * kNanosPerMilli),
      make_attempt_(std::move(make_attempt)),
      resolver_(loop),
      timer_(loop),
      soon_(loop) {}

RacingClient::~RacingClient() { *alive_ = false; }

void RacingClient::later(std::function<void()> fn) {
  soon_fns_.push_back(std::move(fn));
  if (soon_.active()) return;
  auto alive = alive_;
  soon_.start(0, 0, [this, alive] {
    if (!*alive) return;
    auto fns = std::move(soon_fns_);
    soon_fns_.clear();
    for (auto& f : fns) {
      f();
      if (!*alive) return;
    }
  });
}

Client* RacingClient::winner() const {
  if (direct_ && !attempts_.empty()) return attempts_[0].client.get();
  if (schedule_ && schedule_->winner()) return attempts_[*schedule_->winner()].client.get();
  return nullptr;
}

void RacingClient::connect(std::function<void(Status)> on_ready) {
  on_ready_ = std::move(on_ready);
  if (auto numeric = SocketAddress::from_ip(origin_.host, origin_.port); numeric.ok()) {
    begin({*numeric});
    return;
  }
  auto alive = alive_;
  auto st =
      resolver_.resolve(origin_.host, origin_.port, socktype_, [this, alive](Result<std::vector<SocketAddress>> r) {
        if (*alive) on_resolved(std::move(r));
      });
  if (!st) {
    later([this, e = st.error()] { fail_everything(e); });
  }
}

void RacingClient::connect(std::vector<SocketAddress> candidates, std::function<void(Status)> on_ready) {
  on_ready_ = std::move(on_ready);
  if (candidates.empty()) {
    later([this] {
      fail_everything(make_error(ErrorDomain::config, EINVAL, "no address to connect to for " + origin_.host));
    });
    return;
  }
  begin(order_for_racing(candidates));
}

void RacingClient::on_resolved(Result<std::vector<SocketAddress>> addrs) {
  if (closing_) return;
  if (!addrs) return fail_everything(addrs.error());
  begin(order_for_racing(*addrs));
}

void RacingClient::begin(std::vector<SocketAddress> addrs) {
  direct_ = addrs.size() == 1;
  attempts_.resize(addrs.size());
  for (std::size_t i = 0; i < addrs.size(); ++i) attempts_[i].remote = std::move(addrs[i]);
  if (!direct_) {
    std::string list;
    for (const auto& a : attempts_) list += (list.empty() ? "" : ", ") + a.remote.ip();
    log::debug("happy eyeballs: {} resolves to {}; trying them {} ms apart", origin_.host, list,
               delay_ / kNanosPerMilli);
  }
  schedule_.emplace(attempts_.size(), delay_);
  race_start_ = uv::Loop::hrtime();
  launch(schedule_->start(race_start_));
  if (direct_) {
    // No race: everything queued so far goes to the only client at once.
    while (!waiting_.empty()) {
      auto [rq, body, done] = std::move(waiting_.front());
      waiting_.pop_front();
      forward(std::move(rq), std::move(body), std::move(done));
    }
  }
  arm();
}

void RacingClient::launch(const std::vector<std::size_t>& which) {
  for (auto i : which) {
    auto& a = attempts_[i];
    if (!direct_) log::debug("happy eyeballs: attempt {} to {}", i + 1, a.remote.to_string());
    // A raced connection's clock starts with the first attempt, whichever wins.
    a.client = make_attempt_(a.remote, direct_ ? std::nullopt : std::optional<Timestamp>(race_start_));
    ++open_attempts_;
    auto alive = alive_;
    a.client->connect([this, alive, i](Status st) {
      if (*alive) on_attempt_ready(i, std::move(st));
    });
  }
}

void RacingClient::on_attempt_ready(std::size_t i, Status st) {
  // A retired attempt reports the close we asked for: not news.
  if (!schedule_ || attempts_[i].closed) return;
  if (direct_) {
    if (!st) failure_ = st.error();
    if (on_ready_) {
      auto cb = std::move(on_ready_);
      on_ready_ = nullptr;
      cb(std::move(st));
    }
    return;
  }
  auto now = uv::Loop::hrtime();
  if (!st) {
    attempts_[i].error = st.error();
    log::debug("happy eyeballs: {} failed: {}", attempts_[i].remote.to_string(), st.error().message);
    launch(schedule_->failed(i, now));
    if (schedule_->exhausted()) return settle_lost();
    arm();
    return;
  }
  if (!schedule_->succeeded(i)) return;
  log::debug("happy eyeballs: {} won after {:.1f} ms", attempts_[i].remote.to_string(), to_ms(now - race_start_));
  timer_.stop();
  for (auto j : schedule_->in_progress()) close_attempt(j, /*abort=*/true);
  for (std::size_t j = 0; j < attempts_.size(); ++j) {
    if (j != i && attempts_[j].error) close_attempt(j, /*abort=*/true);
  }
  if (on_ready_) {
    auto cb = std::move(on_ready_);
    on_ready_ = nullptr;
    cb(Status{});
  }
  auto alive = alive_;
  while (*alive && !waiting_.empty() && !closing_) {
    auto [rq, body, done] = std::move(waiting_.front());
    waiting_.pop_front();
    forward(std::move(rq), std::move(body), std::move(done));
  }
}

void RacingClient::arm() {
  auto deadline = schedule_ ? schedule_->expiry() : std::nullopt;
  if (!deadline) {
    timer_.stop();
    return;
  }
  auto now = uv::Loop::hrtime();
  std::uint64_t ms = *deadline > now ? (*deadline - now + kNanosPerMilli - 1) / kNanosPerMilli : 0;
  auto alive = alive_;
  timer_.start(ms, 0, [this, alive] {
    if (!*alive || !schedule_) return;
    launch(schedule_->due(uv::Loop::hrtime()));
    arm();
  });
}

void RacingClient::settle_lost() {
  // Every address failed: say what each one answered.
  std::string detail;
  int code = EHOSTUNREACH;
  ErrorDomain domain = ErrorDomain::os;
  for (const auto& a : attempts_) {
    if (!a.error) continue;
    code = a.error->code;
    domain = a.error->domain;
    detail += (detail.empty() ? "" : "; ") + a.error->message;
  }
  for (std::size_t j = 0; j < attempts_.size(); ++j) close_attempt(j, /*abort=*/true);
  // Last: the user's callback may destroy this client.
  fail_everything(make_error(
      domain, code,
      "cannot reach " + origin_.host + " at any of its " + std::to_string(attempts_.size()) + " addresses: " + detail));
}

void RacingClient::fail_everything(const Error& e) {
  failure_ = e;
  timer_.stop();
  auto alive = alive_;
  if (on_ready_) {
    auto cb = std::move(on_ready_);
    on_ready_ = nullptr;
    cb(Status(e));
    if (!*alive) return;
  }
  while (!waiting_.empty()) {
    auto [rq, body, done] = std::move(waiting_.front());
    waiting_.pop_front();
    ClientResponse r;
    r.url = rq.url.to_string();
    r.error = e;
    if (done) done(std::move(r));
    if (!*alive) return;
  }
  maybe_closed();
}

void RacingClient::forward(ClientRequest request, BodyCallback on_body, CompleteCallback on_complete) {
  if (auto* c = winner()) c->submit(std::move(request), std::move(on_body), std::move(on_complete));
}

void RacingClient::submit(ClientRequest request, BodyCallback on_body, CompleteCallback on_complete) {
  if (failure_ || closing_) {
    ClientResponse r;
    r.url = request.url.to_string();
    r.error = failure_.value_or(make_error(ErrorDomain::generic, ECANCELED, "client is closed"));
    later([done = std::move(on_complete), r = std::move(r)]() mutable {
      if (done) done(std::move(r));
    });
    return;
  }
  if (winner()) return forward(std::move(request), std::move(on_body), std::move(on_complete));
  waiting_.emplace_back(std::move(request), std::move(on_body), std::move(on_complete));
}

void RacingClient::close_attempt(std::size_t i, bool abort) {
  auto& a = attempts_[i];
  if (!a.client || a.closed) return;
  a.closed = true;
  auto alive = alive_;
  a.client->close(
      [this, alive, i] {
        if (!*alive) return;
        // Freed from the loop, not inside its own callback.
        later([this, i] {
          attempts_[i].client.reset();
          --open_attempts_;
          maybe_closed();
        });
      },
      abort);
}

void RacingClient::close(std::function<void()> on_closed, bool abort) {
  on_closed_ = std::move(on_closed);
  if (closing_) return;
  closing_ = true;
  resolver_.cancel();
  timer_.stop();
  auto* w = winner();
  for (std::size_t j = 0; j < attempts_.size(); ++j) {
    // The winner closes as asked; losers still trying are aborted.
    close_attempt(j, attempts_[j].client.get() == w ? abort : true);
  }
  if (!w || on_ready_) {
    // Nothing connected yet: what waits fails now, from the loop.
    later(
        [this] { fail_everything(make_error(ErrorDomain::generic, ECANCELED, "client closed before it connected")); });
  } else {
    later([this] { maybe_closed(); });
  }
}

void RacingClient::maybe_closed() {
  if (!closing_ || closed_reported_ || open_attempts_ > 0) return;
  closed_reported_ = true;
  auto cb = std::move(on_closed_);
  on_closed_ = nullptr;
  if (cb) cb();
}

ConnectionInfo RacingClient::info() const {
  if (auto* w = winner()) return w->info();
  for (const auto& a : attempts_) {
    if (a.client) return a.client->info();
  }
  return {};
}

}  // namespace quiclab::http
