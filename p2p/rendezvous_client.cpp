#include "p2p/rendezvous_client.hpp"

#include "p2p/ice_agent.hpp"
#include "transport/core/log.hpp"

namespace quiclab::rendezvous {

using namespace quiclab::stun;

std::string_view event_name(const Event& e) {
  struct V {
    std::string_view operator()(const Registered&) const { return "registered"; }
    std::string_view operator()(const LookupResult&) const { return "lookup"; }
    std::string_view operator()(const IntroductionPending&) const { return "introduction_pending"; }
    std::string_view operator()(const Introduced&) const { return "introduced"; }
    std::string_view operator()(const IntroductionReceived&) const { return "introduction_received"; }
    std::string_view operator()(const IntroductionFailed&) const { return "introduction_failed"; }
    std::string_view operator()(const RequestFailed&) const { return "request_failed"; }
    std::string_view operator()(const RequestTimedOut&) const { return "request_timed_out"; }
  };
  return std::visit(V{}, e);
}

Client::Client(ClientConfig config) : config_(std::move(config)) {}

void Client::sent_at(Timestamp now) {
  // Any datagram to the server refreshes the NAT mapping; the keepalive
  // waits a full interval after the last one.
  if (registered_ && config_.keepalive > 0) keepalive_due_ = now + config_.keepalive;
}

void Client::start(Message m, std::string peer, Timestamp now, IntroductionOffer offer) {
  m.add_string(attr::kUsername, config_.name);
  EncodeOptions opts;
  opts.integrity_sha256_key = config_.key;
  opts.fingerprint = true;
  auto id = m.transaction_id;
  auto meth = m.method;
  pending_.erase(id);
  pending_.emplace(id, Pending{ClientTransaction(encode(m, opts), id, now, config_.transaction), meth, std::move(peer),
                               std::move(offer)});
  pump(now);
}

void Client::pump(Timestamp now) {
  for (auto& [id, p] : pending_) {
    if (auto bytes = p.tx.poll_transmit(now)) {
      outgoing_.push_back(std::move(*bytes));
      sent_at(now);
    }
  }
}

void Client::register_name(Timestamp now) {
  Message m;
  m.method = method::kRegister;
  m.transaction_id = random_transaction_id();
  m.add_string(attr::kRegistrationKey, as_string(config_.key));
  m.add_u32(attr::kLifetime, config_.lifetime_s);
  for (const auto& h : config_.host_candidates) m.add_xor_address(attr::kHostCandidate, h);
  refresh_due_.reset();
  start(std::move(m), {}, now);
}

void Client::refresh(Timestamp now, std::optional<std::uint32_t> lifetime_s) {
  Message m;
  m.method = method::kRefresh;
  m.transaction_id = random_transaction_id();
  m.add_u32(attr::kLifetime, lifetime_s.value_or(config_.lifetime_s));
  for (const auto& h : config_.host_candidates) m.add_xor_address(attr::kHostCandidate, h);
  if (lifetime_s && *lifetime_s == 0) {
    registered_ = false;
    refresh_due_.reset();
    keepalive_due_.reset();
  }
  start(std::move(m), {}, now);
}

void Client::lookup(const std::string& peer, Timestamp now) {
  Message m;
  m.method = method::kLookup;
  m.transaction_id = random_transaction_id();
  m.add_string(attr::kPeerName, peer);
  start(std::move(m), peer, now);
}

namespace {
Result<PeerCandidates> candidates_of(const Message& m) {
  PeerCandidates c;
  c.name = m.string(attr::kPeerName).value_or("");
  auto r = m.xor_address(attr::kReflexiveCandidate);
  if (!r) return r.error();
  if (!*r) return make_error(ErrorDomain::stun, EINVAL, "no REFLEXIVE-CANDIDATE");
  c.reflexive = **r;
  auto hosts = m.xor_addresses(attr::kHostCandidate);
  if (!hosts) return hosts.error();
  c.hosts = *hosts;
  return c;
}
}  // namespace

IntroductionOffer Client::make_offer() {
  Random& r = config_.random ? *config_.random : Random::system();
  auto creds = ice::random_credentials(r);
  IntroductionOffer o;
  o.ufrag = std::move(creds.ufrag);
  o.password = std::move(creds.password);
  while (o.tie_breaker == 0) r.fill(reinterpret_cast<std::uint8_t*>(&o.tie_breaker), sizeof o.tie_breaker);
  o.fingerprint = config_.certificate_fingerprint;
  o.relay = config_.relay_candidate;
  o.birthday = config_.birthday;
  return o;
}

void Client::introduce(const std::string& peer, Timestamp now, std::uint32_t wait_s) {
  Message m;
  m.method = method::kIntroduce;
  m.transaction_id = random_transaction_id();
  m.add_string(attr::kPeerName, peer);
  auto offer = make_offer();
  add_offer(m, offer);
  if (wait_s > 0) m.add_u32(attr::kWait, wait_s);
  start(std::move(m), peer, now, std::move(offer));
}

void Client::answer(const Message& request, std::optional<IntroductionOffer> offer, std::optional<int> error) {
  auto r = make_response(request, error ? MessageClass::ErrorResponse : MessageClass::SuccessResponse);
  if (error) r.add_error_code(*error, "Bad Request");
  if (offer) {
    add_offer(r, *offer);
    for (const auto& h : config_.host_candidates) r.add_xor_address(attr::kHostCandidate, h);
  }
  EncodeOptions opts;
  opts.integrity_sha256_key = config_.key;
  opts.fingerprint = true;
  outgoing_.push_back(encode(r, opts));
}

// Requests from the server: PeerIntroduction (another peer asks for us) and
// IntroductionResult (what became of our Introduce). Both are retransmitted
// until answered, so both are answered every time and reported once.
void Client::handle_server_request(const Message& m, Timestamp now) {
  constexpr Timestamp kRemember = 60 * kNanosPerSecond;
  constexpr std::size_t kMaxRemembered = 64;
  auto id = m.u64(attr::kIntroductionId);
  if (!id || !*id) {
    log::info("rendezvous client: dropping a server request without INTRODUCTION-ID");
    return;
  }
  if (m.method == method::kPeerIntroduction) {
    auto c = candidates_of(m);
    auto remote = read_offer(m);
    if (!c || c->name.empty() || !remote) {
      log::info("rendezvous client: malformed PeerIntroduction: {}", !c        ? c.error().message
                                                                     : !remote ? remote.error().message
                                                                               : "no PEER-NAME");
      answer(m, std::nullopt, error_code::kBadRequest);
      return;
    }
    auto it = answered_.find(**id);
    if (it == answered_.end()) {
      if (answered_.size() >= kMaxRemembered) answered_.erase(answered_.begin());
      it = answered_.emplace(**id, Answered{make_offer(), now + kRemember}).first;
      events_.push_back(IntroductionReceived{std::move(*c), std::move(*remote), it->second.offer, **id});
    }
    answer(m, it->second.offer, std::nullopt);
    sent_at(now);
    return;
  }
  // IntroductionResult
  auto it = asked_.find(**id);
  if (it != asked_.end() && !it->second.reported) {
    it->second.reported = true;
    it->second.forget_at = now + kRemember;
    const std::string peer = it->second.peer;
    auto err = m.error();
    if (err && *err) {
      events_.push_back(IntroductionFailed{peer, **id, (*err)->code, (*err)->reason});
    } else {
      auto c = candidates_of(m);
      auto remote = read_offer(m);
      if (c && remote) {
        events_.push_back(Introduced{std::move(*c), std::move(*remote), it->second.offer, **id});
      } else {
        events_.push_back(
            IntroductionFailed{peer, **id, error_code::kBadRequest,
                               "malformed IntroductionResult: " + (!c ? c.error().message : remote.error().message)});
      }
    }
  }
  answer(m, std::nullopt, std::nullopt);
  sent_at(now);
}

void Client::forget_old(Timestamp now) {
  for (auto it = answered_.begin(); it != answered_.end();)
    it = it->second.forget_at <= now ? answered_.erase(it) : std::next(it);
  for (auto it = asked_.begin(); it != asked_.end();)
    it = it->second.reported && it->second.forget_at <= now ? asked_.erase(it) : std::next(it);
}

bool Client::handle_datagram(ByteView data, Timestamp now) {
  auto m = decode(data);
  if (!m) {
    log::debug("rendezvous client: ignoring datagram: {}", m.error().message);
    return false;
  }
  if (m->message_class == MessageClass::Request &&
      (m->method == method::kPeerIntroduction || m->method == method::kIntroductionResult)) {
    // Only the server knows our key, so a verified request is the server's.
    if (check_integrity_sha256(*m, config_.key) != IntegrityCheck::Ok) {
      log::info("rendezvous client: dropping a server request with bad integrity");
      return false;
    }
    handle_server_request(*m, now);
    return true;
  }
  auto it = pending_.find(m->transaction_id);
  if (it == pending_.end()) return false;
  Pending& p = it->second;
  bool authentic = check_integrity_sha256(*m, config_.key) == IntegrityCheck::Ok;
  // Success responses must be authentic; error responses to requests the server
  // could not authenticate cannot carry integrity, so accept those unsigned.
  if (m->message_class == MessageClass::SuccessResponse && !authentic) {
    log::info("rendezvous client: dropping unauthenticated success response");
    return false;
  }
  if (!p.tx.handle_response(*m)) return false;
  const std::uint16_t method = p.method;
  const std::string peer = p.peer;
  IntroductionOffer offer = std::move(p.offer);
  pending_.erase(it);
  auto lifetime_of = [&] {
    auto lifetime = m->u32(attr::kLifetime);
    return lifetime && *lifetime ? **lifetime : 0u;
  };
  if (m->message_class == MessageClass::ErrorResponse) {
    RequestFailed f{method, peer, 0, {}};
    if (auto err = m->error(); err && *err) {
      f.error_code = (*err)->code;
      f.reason = (*err)->reason;
    }
    if (method == method::kRefresh && f.error_code == error_code::kNotFound) {
      // The registration expired on the server: take the name again.
      registered_ = false;
      keepalive_due_.reset();
      register_name(now);
    }
    if (method == method::kLookup && f.error_code == error_code::kNotFound) {
      events_.push_back(LookupResult{peer, false, 0});
    } else {
      events_.push_back(std::move(f));
    }
    return true;
  }
  if (method == method::kRegister || method == method::kRefresh) {
    Registered r;
    r.lifetime_s = lifetime_of();
    if (auto mapped = m->xor_address(attr::kXorMappedAddress); mapped && *mapped) r.mapped = **mapped;
    registered_ = r.lifetime_s > 0;
    if (registered_) {
      refresh_due_ = now + static_cast<Timestamp>(config_.refresh_at * static_cast<double>(r.lifetime_s) * 1e9);
      if (config_.keepalive > 0 && !keepalive_due_) keepalive_due_ = now + config_.keepalive;
    } else {
      refresh_due_.reset();
      keepalive_due_.reset();
    }
    events_.push_back(std::move(r));
  } else if (method == method::kLookup) {
    events_.push_back(LookupResult{peer, true, lifetime_of()});
  } else {
    auto id = m->u64(attr::kIntroductionId);
    if (!id || !*id) {
      events_.push_back(RequestFailed{method, peer, 0, "Introduce answered without INTRODUCTION-ID"});
      return true;
    }
    auto wait = m->u32(attr::kWait);
    const std::uint32_t wait_s = wait && *wait ? **wait : 0u;
    if (asked_.size() >= 64) asked_.erase(asked_.begin());
    asked_[**id] = Asked{peer, std::move(offer), false, 0};
    events_.push_back(IntroductionPending{peer, **id, wait_s});
  }
  return true;
}

std::optional<Timestamp> Client::expiry() const {
  std::optional<Timestamp> next = refresh_due_;
  if (keepalive_due_ && (!next || *keepalive_due_ < *next)) next = keepalive_due_;
  for (const auto& [id, p] : pending_) {
    if (auto e = p.tx.expiry(); e && (!next || *e < *next)) next = e;
  }
  return next;
}

void Client::handle_expiry(Timestamp now) {
  forget_old(now);
  for (auto it = pending_.begin(); it != pending_.end();) {
    it->second.tx.handle_expiry(now);
    if (it->second.tx.state() == ClientTransaction::State::TimedOut) {
      events_.push_back(RequestTimedOut{it->second.method, it->second.peer});
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  if (refresh_due_ && now >= *refresh_due_) {
    refresh_due_.reset();
    refresh(now);
  }
  pump(now);
  if (keepalive_due_ && now >= *keepalive_due_) {
    // RFC 8489 Binding indication: no answer, no transaction; FINGERPRINT so
    // the server (and any demultiplexer) can tell it is STUN.
    Message k;
    k.message_class = MessageClass::Indication;
    k.method = method::kBinding;
    k.transaction_id = random_transaction_id();
    EncodeOptions opts;
    opts.fingerprint = true;
    outgoing_.push_back(encode(k, opts));
    ++keepalives_sent_;
    keepalive_due_.reset();
    sent_at(now);
  }
}

std::vector<Bytes> Client::take_datagrams() { return std::exchange(outgoing_, {}); }
std::vector<Event> Client::take_events() { return std::exchange(events_, {}); }

}  // namespace quiclab::rendezvous
