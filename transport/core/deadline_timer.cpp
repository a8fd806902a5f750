#include "transport/core/deadline_timer.hpp"

#include <utility>

namespace quiclab::uv {

std::uint64_t timer_delay_ms(Timestamp deadline, Timestamp now) {
  if (deadline <= now) return 0;
  const Timestamp left = deadline - now;
  if (left < kNanosPerMilli) return 0;
  return (left + kNanosPerMilli - 1) / kNanosPerMilli;
}

DeadlineTimer::DeadlineTimer(Loop& loop, NowFn now) : timer_(loop), now_(std::move(now)) {}

DeadlineTimer::~DeadlineTimer() {
  *alive_ = false;
  for (auto& e : entries_) e->removed = true;
}

DeadlineTimer::Id DeadlineTimer::add(ExpiryFn expiry, HandleFn handle) {
  auto e = std::make_shared<Entry>();
  e->id = next_id_++;
  e->expiry = std::move(expiry);
  e->handle = std::move(handle);
  entries_.push_back(e);
  return e->id;
}

void DeadlineTimer::remove(Id id) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if ((*it)->id != id) continue;
    (*it)->removed = true;  // a firing holding a copy skips it
    entries_.erase(it);
    return;
  }
}

void DeadlineTimer::rearm() {
  std::optional<Timestamp> next;
  for (const auto& e : entries_) {
    if (auto t = e->expiry(); t && (!next || *t < *next)) next = t;
  }
  if (!next) {
    armed_for_.reset();
    timer_.stop();
    return;
  }
  if (armed_for_ == next && timer_.active()) return;
  armed_for_ = next;
  timer_.start(timer_delay_ms(*next, now_()), 0, [this] { fire(); });
}

void DeadlineTimer::fire() {
  armed_for_.reset();
  run_due(now_());
}

void DeadlineTimer::run_due(Timestamp now) {
  auto alive = alive_;
  // A snapshot, so that handlers may add or remove entries; the shared
  // pointers keep a handler alive while it runs even if it removes itself.
  const auto snapshot = entries_;
  for (const auto& e : snapshot) {
    if (e->removed) continue;
    auto t = e->expiry();
    if (!t || *t > now) continue;
    e->handle(now);
    if (!*alive) return;  // a handler destroyed us
  }
  rearm();
}

}  // namespace quiclab::uv
