#include "p2p/rendezvous_client.hpp"

#include "transport/core/log.hpp"

namespace quiclab::rendezvous {

using namespace quiclab::stun;

Client::Client(ClientConfig config) : config_(std::move(config)) {}

void Client::start(Message m, std::string peer, Timestamp now) {
  m.add_string(attr::kUsername, config_.name);
  EncodeOptions opts;
  opts.integrity_sha256_key = config_.key;
  opts.fingerprint = true;
  auto id = m.transaction_id;
  auto meth = m.method;
  pending_.erase(id);
  pending_.emplace(id, Pending{ClientTransaction(encode(m, opts), id, now, config_.transaction), meth, std::move(peer)});
  pump(now);
}

void Client::pump(Timestamp now) {
  for (auto& [id, p] : pending_) {
    if (auto bytes = p.tx.poll_transmit(now)) outgoing_.push_back(std::move(*bytes));
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

void Client::introduce(const std::string& peer, Timestamp now) {
  Message m;
  m.method = method::kIntroduce;
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

bool Client::handle_datagram(ByteView data, Timestamp now) {
  auto m = decode(data);
  if (!m) {
    log::debug("rendezvous client: ignoring datagram: {}", m.error().message);
    return false;
  }
  if (m->message_class == MessageClass::Indication && m->method == method::kPeerIntroduction) {
    // Only the server knows our key, so a verified indication is the server's.
    if (check_integrity_sha256(*m, config_.key) != IntegrityCheck::Ok) {
      log::info("rendezvous client: dropping PeerIntroduction with bad integrity");
      return false;
    }
    auto c = candidates_of(*m);
    if (!c || c->name.empty()) {
      log::info("rendezvous client: dropping malformed PeerIntroduction");
      return false;
    }
    Event e;
    e.kind = Event::Kind::IntroductionReceived;
    e.method = m->method;
    e.peer = c->name;
    e.candidates = std::move(*c);
    events_.push_back(std::move(e));
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
  Event e;
  e.method = p.method;
  e.peer = p.peer;
  if (m->message_class == MessageClass::ErrorResponse) {
    e.kind = Event::Kind::RequestFailed;
    if (auto err = m->error(); err && *err) {
      e.error_code = (*err)->code;
      e.reason = (*err)->reason;
    }
    if (p.method == method::kRefresh && e.error_code == error_code::kNotFound) {
      // The registration expired on the server: take the name again.
      registered_ = false;
      pending_.erase(it);
      register_name(now);
      events_.push_back(std::move(e));
      return true;
    }
  } else if (p.method == method::kRegister || p.method == method::kRefresh) {
    e.kind = Event::Kind::Registered;
    auto lifetime = m->u32(attr::kLifetime);
    e.lifetime_s = lifetime && *lifetime ? **lifetime : 0;
    if (auto mapped = m->xor_address(attr::kXorMappedAddress); mapped && *mapped) e.mapped = **mapped;
    registered_ = e.lifetime_s > 0;
    if (registered_) {
      refresh_due_ = now + static_cast<Timestamp>(config_.refresh_at * static_cast<double>(e.lifetime_s) * 1e9);
    } else {
      refresh_due_.reset();
    }
  } else if (p.method == method::kLookup) {
    e.kind = Event::Kind::LookupResult;
    e.found = true;
    auto lifetime = m->u32(attr::kLifetime);
    e.lifetime_s = lifetime && *lifetime ? **lifetime : 0;
  } else {
    auto c = candidates_of(*m);
    if (!c) {
      e.kind = Event::Kind::RequestFailed;
      e.reason = c.error().message;
    } else {
      e.kind = Event::Kind::Introduced;
      e.candidates = std::move(*c);
    }
  }
  if (e.kind == Event::Kind::RequestFailed && p.method == method::kLookup && e.error_code == error_code::kNotFound) {
    e.kind = Event::Kind::LookupResult;
    e.found = false;
  }
  pending_.erase(it);
  events_.push_back(std::move(e));
  return true;
}

std::optional<Timestamp> Client::expiry() const {
  std::optional<Timestamp> next = refresh_due_;
  for (const auto& [id, p] : pending_) {
    if (auto e = p.tx.expiry(); e && (!next || *e < *next)) next = e;
  }
  return next;
}

void Client::handle_expiry(Timestamp now) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    it->second.tx.handle_expiry(now);
    if (it->second.tx.state() == ClientTransaction::State::TimedOut) {
      Event e;
      e.kind = Event::Kind::RequestTimedOut;
      e.method = it->second.method;
      e.peer = it->second.peer;
      events_.push_back(std::move(e));
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
}

std::vector<Bytes> Client::take_datagrams() { return std::exchange(outgoing_, {}); }
std::vector<Event> Client::take_events() { return std::exchange(events_, {}); }

}  // namespace quiclab::rendezvous
