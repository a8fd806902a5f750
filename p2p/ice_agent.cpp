#include "p2p/ice_agent.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace quiclab::ice {

namespace {

std::uint32_t type_preference(CandidateType t) {
  switch (t) {
    case CandidateType::host:
      return 126;
    case CandidateType::prflx:
      return 110;
    case CandidateType::srflx:
      return 100;
    case CandidateType::relay:
      return 0;
  }
  return 0;
}

stun::TransactionId new_transaction_id(Random& random) {
  stun::TransactionId id{};
  random.fill(id.data(), id.size());
  return id;
}

}  // namespace

std::string_view to_string(CandidateType t) {
  switch (t) {
    case CandidateType::host:
      return "host";
    case CandidateType::srflx:
      return "srflx";
    case CandidateType::prflx:
      return "prflx";
    case CandidateType::relay:
      return "relay";
  }
  return "?";
}

std::string_view to_string(PairState s) {
  switch (s) {
    case PairState::waiting:
      return "waiting";
    case PairState::in_progress:
      return "in-progress";
    case PairState::succeeded:
      return "succeeded";
    case PairState::failed:
      return "failed";
  }
  return "?";
}

std::string_view to_string(BirthdayConfig::Role r) {
  switch (r) {
    case BirthdayConfig::Role::none:
      return "none";
    case BirthdayConfig::Role::open:
      return "open";
    case BirthdayConfig::Role::probe:
      return "probe";
  }
  return "?";
}

std::uint32_t candidate_priority(CandidateType type, std::uint16_t local_preference) {
  return (type_preference(type) << 24) | (std::uint32_t{local_preference} << 8) | (256u - 1u);
}

std::uint64_t pair_priority(std::uint32_t g, std::uint32_t d) {
  return (std::uint64_t{1} << 32) * std::min(g, d) + 2 * std::uint64_t{std::max(g, d)} + (g > d ? 1 : 0);
}

Credentials random_credentials(Random& random) {
  // ice-char = ALPHA / DIGIT / "+" / "/" (RFC 8839): 64 symbols, 6 bits each.
  static constexpr std::string_view kChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto draw = [&](std::size_t n) {
    std::string s(n, 'A');
    std::vector<std::uint8_t> bytes(n);
    random.fill(bytes.data(), n);
    for (std::size_t i = 0; i < n; ++i) s[i] = kChars[bytes[i] & 63];
    return s;
  };
  return {draw(8), draw(24)};
}

Agent::Agent(AgentConfig config, Random& random, Timestamp now)
    : config_(std::move(config)), random_(random), start_(now) {}

void Agent::add_local_candidate(Candidate c) {
  if (c.priority == 0) {
    // Local preference: IPv6 above IPv4 (RFC 8421's spirit), then order of arrival.
    std::uint16_t pref = static_cast<std::uint16_t>((c.address.is_v6() ? 65535 : 65000) - local_.size());
    c.priority = candidate_priority(c.type, pref);
  }
  for (const auto& l : local_)
    if (l.address == c.address) return;
  local_.push_back(c);
  if (c.type == CandidateType::relay && remote_credentials_ && state_ == State::checking) {
    // The allocation finished after the introduction: pair the relay with what we know of the peer.
    std::vector<Candidate> remotes;
    for (const auto& p : pairs_)
      if (!p.relayed && p.remote.type != CandidateType::relay) remotes.push_back(p.remote);
    for (const auto& r : remotes) (void)add_pair(r, true);
  }
  reprioritize();
}

const Candidate* Agent::local_relay(const SocketAddress& remote) const {
  for (const auto& l : local_)
    if (l.type == CandidateType::relay && l.address.family() == remote.family()) return &l;
  return nullptr;
}

Candidate Agent::local_for(const SocketAddress& remote, bool relayed, std::uint16_t base) const {
  if (const auto* b = birthday_base(base)) return *b;
  if (relayed) {
    if (const auto* r = local_relay(remote)) return *r;
  }
  for (const auto& l : local_)
    if (l.type == CandidateType::host && l.address.family() == remote.family()) return l;
  for (const auto& l : local_)
    if (l.address.family() == remote.family() && l.type != CandidateType::relay) return l;
  Candidate none;
  none.priority = candidate_priority(CandidateType::host, 0);
  return none;
}

void Agent::reprioritize() {
  for (auto& p : pairs_) {
    const std::uint32_t l =
        p.local.priority ? p.local.priority : local_for(p.remote.address, p.relayed, p.base).priority;
    p.priority = config_.controlling ? pair_priority(l, p.remote.priority) : pair_priority(p.remote.priority, l);
  }
}

std::optional<std::size_t> Agent::find_pair(const SocketAddress& remote, bool relayed, std::uint16_t base) const {
  for (std::size_t i = 0; i < pairs_.size(); ++i)
    if (pairs_[i].remote.address == remote && pairs_[i].relayed == relayed && pairs_[i].base == base) return i;
  return std::nullopt;
}

std::optional<std::size_t> Agent::add_pair(const Candidate& remote, bool relayed, std::uint16_t base) {
  if (auto i = find_pair(remote.address, relayed, base)) return i;
  if (pairs_.size() >= config_.max_pairs) {
    ++stats_.pairs_refused;
    return std::nullopt;
  }
  Pair p;
  p.local = local_for(remote.address, relayed, base);
  p.remote = remote;
  p.relayed = relayed;
  p.base = base;
  pairs_.push_back(p);
  reprioritize();
  return pairs_.size() - 1;
}

void Agent::set_remote(Credentials remote, std::vector<Candidate> candidates, Timestamp now) {
  if (remote_credentials_ || state_ != State::checking) return;
  remote_credentials_ = std::move(remote);
  for (auto& c : candidates) {
    bool family_ok = false;
    for (const auto& l : local_) family_ok = family_ok || l.address.family() == c.address.family();
    if (!family_ok || c.address.empty()) continue;
    bool known = false;
    for (const bool relayed : {false, true}) {
      if (auto i = find_pair(c.address, relayed)) {
        // Known already as peer-reflexive (its check came first): now we know its real type.
        pairs_[*i].remote.type = c.type;
        pairs_[*i].remote.priority = c.priority;
        known = true;
      }
    }
    if (!known) add_pairs_for(c);
  }
  reprioritize();
  schedule_next_check(now);
}

void Agent::add_pairs_for(const Candidate& c) {
  // Direct from the socket (the peer's relay counts: it is relayed on their side), unless relay_only.
  if (!config_.relay_only || c.type == CandidateType::relay) (void)add_pair(c, false);
  if (c.type != CandidateType::relay && local_relay(c.address)) (void)add_pair(c, true);
}

const Pair* Agent::selected() const { return selected_ ? &pairs_[*selected_] : nullptr; }

std::optional<Timestamp> Agent::expiry() const {
  std::optional<Timestamp> e;
  auto take = [&](Timestamp t) {
    if (!e || t < *e) e = t;
  };
  if (state_ == State::failed) return std::nullopt;
  if (state_ == State::checking) take(verdict_deadline());
  if (birthday_ == BirthdayPhase::idle && config_.birthday.role != BirthdayConfig::Role::none && checks_started_)
    take(*checks_started_ + config_.birthday.wait);
  if (birthday_ == BirthdayPhase::running) {
    if (next_probe_at_) take(*next_probe_at_);
    if (birthday_end_at_) take(*birthday_end_at_);
  }
  if (next_check_at_) take(*next_check_at_);
  for (const auto& [id, t] : transactions_) take(t.next_at);
  if (next_consent_at_) take(*next_consent_at_);
  if (relay_deadline_ && state_ == State::checking) take(*relay_deadline_);
  if (state_ == State::connected) take(consent_expires_);
  return e;
}

void Agent::handle_expiry(Timestamp now) {
  if (state_ == State::failed) return;
  // Retransmissions and give-ups.
  for (auto it = transactions_.begin(); it != transactions_.end();) {
    auto& t = it->second;
    if (t.next_at > now) {
      ++it;
      continue;
    }
    if (t.transmissions >= config_.max_transmissions || t.cancelled) {
      auto& p = pairs_[t.pair];
      if (!t.consent && !t.cancelled && p.state == PairState::in_progress) {
        p.state = PairState::failed;
        events_.push_back(CheckResult{p.remote.address, false, std::nullopt,
                                      fmt::format("no answer after {} transmissions", t.transmissions), p.relayed,
                                      p.base});
      }
      if (nominating_ && *nominating_ == t.pair && t.use_candidate) nominating_.reset();
      it = transactions_.erase(it);
      continue;
    }
    ++t.transmissions;
    ++stats_.retransmissions;
    t.last_sent = now;
    t.rto *= 2;
    // The last transmission waits one more RTO for its answer (like STUN's Rm).
    t.next_at = now + t.rto;
    out_.push_back({pairs_[t.pair].remote.address, t.request, pairs_[t.pair].relayed, pairs_[t.pair].base});
    ++it;
  }
  birthday_step(now);
  if (state_ == State::checking && now >= verdict_deadline()) {
    fail(failure_reason(), now);
    return;
  }
  if (state_ == State::connected && now >= consent_expires_) {
    fail(fmt::format("consent lost: no answer from {} for {} s", pairs_[*selected_].remote.address.to_string(),
                     config_.consent_timeout / kNanosPerSecond),
         now);
    return;
  }
  if (next_consent_at_ && now >= *next_consent_at_ && selected_) {
    ++stats_.consent_checks;
    send_check(*selected_, false, true, now);
    // 5 s +- 20 % (RFC 7675 section 5.1), from our seeded randomness.
    std::uint8_t b[2];
    random_.fill(b, 2);
    const double jitter = 0.8 + 0.4 * ((b[0] << 8 | b[1]) / 65535.0);
    next_consent_at_ = now + static_cast<Timestamp>(static_cast<double>(config_.consent_interval) * jitter);
  }
  if (relay_deadline_ && now >= *relay_deadline_) {
    relay_deadline_.reset();
    if (state_ == State::checking && config_.controlling && !nominating_) {
      // No direct pair within relay_wait: the best relayed pair that works, ours first (the QUIC
      // client's relayed path then has a local address of its own, the relayed one).
      std::optional<std::size_t> best;
      for (std::size_t i = 0; i < pairs_.size(); ++i) {
        const auto& p = pairs_[i];
        if (p.state != PairState::succeeded || !is_relayed(p)) continue;
        if (!best || std::pair(p.relayed, p.priority) > std::pair(pairs_[*best].relayed, pairs_[*best].priority))
          best = i;
      }
      if (best) {
        nominating_ = *best;
        send_check(*best, true, false, now);
      }
    }
  }
  if (next_check_at_ && now >= *next_check_at_) {
    next_check_at_.reset();
    if (checking_pairs() && can_send_checks()) {
      // Triggered checks first, then the best waiting pair.
      std::optional<std::pair<std::size_t, bool>> pick;
      while (!triggered_.empty() && !pick) {
        auto [i, use] = triggered_.front();
        triggered_.pop_front();
        const auto& p = pairs_[i];
        if (use || (p.state != PairState::in_progress && p.state != PairState::succeeded)) pick = {{i, use}};
      }
      if (!pick) {
        std::optional<std::size_t> best;
        for (std::size_t i = 0; i < pairs_.size(); ++i) {
          if (pairs_[i].state != PairState::waiting) continue;
          if (upgrading_ && is_relayed(pairs_[i])) continue;  // connected over a relay: only direct ones matter
          if (!best || pairs_[i].priority > pairs_[*best].priority) best = i;
        }
        if (best) pick = {{*best, false}};
      }
      if (pick) {
        send_check(pick->first, pick->second, false, now);
        last_check_ = now;
        any_check_sent_ = true;
      }
    }
    schedule_next_check(now);
  }
}

void Agent::schedule_next_check(Timestamp now) {
  if (!checking_pairs() || !can_send_checks() || next_check_at_) return;
  bool work = !triggered_.empty();
  for (const auto& p : pairs_) work = work || (p.state == PairState::waiting && !(upgrading_ && is_relayed(p)));
  if (!work) return;
  next_check_at_ = any_check_sent_ ? std::max(now, last_check_ + config_.ta) : now;
  if (!checks_started_) checks_started_ = *next_check_at_;
}

void Agent::enqueue_triggered(std::size_t pair, bool use_candidate) {
  for (const auto& [i, use] : triggered_)
    if (i == pair && use == use_candidate) return;
  triggered_.emplace_back(pair, use_candidate);
}

Bytes Agent::encode_check(const Candidate& local, bool relayed, bool use_candidate, stun::TransactionId& id) {
  stun::Message m;
  m.message_class = stun::MessageClass::Request;
  m.method = stun::method::kBinding;
  m.transaction_id = id = new_transaction_id(random_);
  m.add_string(stun::attr::kUsername, remote_credentials_->ufrag + ":" + config_.local.ufrag);
  // The priority a peer-reflexive candidate learned from this check would have.
  m.add_u32(stun::attr::kPriority, candidate_priority(relayed ? CandidateType::relay : CandidateType::prflx,
                                                      static_cast<std::uint16_t>((local.priority >> 8) & 0xFFFF)));
  m.add_u64(config_.controlling ? stun::attr::kIceControlling : stun::attr::kIceControlled, config_.tie_breaker);
  if (use_candidate) m.add(stun::attr::kUseCandidate, {});
  stun::EncodeOptions eo;
  eo.integrity_key = Bytes(remote_credentials_->password.begin(), remote_credentials_->password.end());
  eo.fingerprint = true;
  return stun::encode(m, eo);
}

void Agent::send_check(std::size_t pair, bool use_candidate, bool consent, Timestamp now) {
  auto& p = pairs_[pair];
  stun::TransactionId id{};
  Transaction t;
  t.pair = pair;
  t.request = encode_check(local_for(p.remote.address, p.relayed, p.base), p.relayed, use_candidate, id);
  t.first_sent = t.last_sent = now;
  t.rto = config_.initial_rto;
  t.next_at = now + t.rto;
  t.transmissions = 1;
  t.use_candidate = use_candidate;
  t.consent = consent;
  t.controlling = config_.controlling;
  if (!consent && p.state != PairState::succeeded) p.state = PairState::in_progress;
  out_.push_back({p.remote.address, t.request, p.relayed, p.base});
  ++stats_.checks_sent;
  transactions_.emplace(id, std::move(t));
}

// ---- birthday punching ----

const Candidate* Agent::birthday_base(std::uint16_t k) const {
  return k > 0 && k <= birthday_bases_.size() ? &birthday_bases_[k - 1] : nullptr;
}

std::uint16_t Agent::add_birthday_base(const SocketAddress& local, Timestamp now) {
  if (birthday_ != BirthdayPhase::running || config_.birthday.role != BirthdayConfig::Role::open ||
      birthday_bases_.size() >= config_.birthday.sockets || !birthday_target_)
    return 0;
  Candidate c;
  c.type = CandidateType::host;
  c.address = local;
  // Below every candidate of the socket: a pair on a birthday base wins only when it is the one that works.
  c.priority = candidate_priority(CandidateType::host, static_cast<std::uint16_t>(1024 - birthday_bases_.size()));
  birthday_bases_.push_back(c);
  const auto k = static_cast<std::uint16_t>(birthday_bases_.size());
  // Its first check opens the mapping towards the prober; the prober's NAT
  // drops it (it filters by port), unless a probe already went to that port.
  ++stats_.birthday_sprays;
  send_probe(*birthday_target_, k, now);
  return k;
}

void Agent::send_probe(const SocketAddress& to, std::uint16_t base, Timestamp now) {
  stun::TransactionId id{};
  Bytes request = encode_check(local_for(to, false, base), false, false, id);
  out_.push_back({to, std::move(request), false, base});
  probes_[id] = Probe{to, base, now, config_.controlling};
}

Timestamp Agent::verdict_deadline() const {
  Timestamp d = start_ + config_.timeout;
  const auto& b = config_.birthday;
  if (b.role != BirthdayConfig::Role::none && checks_started_ && b.rate > 0) {
    // The whole probe window, and a second for the answers.
    const Timestamp window = static_cast<Timestamp>(b.probes) * kNanosPerSecond / b.rate;
    d = std::max(d, *checks_started_ + b.wait + 2 * config_.ta + window + kNanosPerSecond);
  }
  return d;
}

bool Agent::direct_pair_succeeded() const {
  return std::any_of(pairs_.begin(), pairs_.end(),
                     [](const Pair& p) { return p.state == PairState::succeeded && !is_relayed(p); });
}

void Agent::birthday_step(Timestamp now) {
  const auto& b = config_.birthday;
  if (b.role == BirthdayConfig::Role::none || birthday_ == BirthdayPhase::done) return;
  if (birthday_ == BirthdayPhase::idle) {
    if (!checks_started_ || now < *checks_started_ + b.wait) return;
    if (!checking_pairs() || direct_pair_succeeded()) {
      birthday_ = BirthdayPhase::done;  // not needed: checks alone found a way
      return;
    }
    // The target: the peer's server-reflexive address (its public IP, and
    // for the open role its one mapping: an endpoint-independent NAT keeps it).
    for (const auto& p : pairs_)
      if (!p.relayed && p.remote.type == CandidateType::srflx && !birthday_target_) birthday_target_ = p.remote.address;
    if (!birthday_target_) {
      birthday_ = BirthdayPhase::done;
      events_.push_back(BirthdayEnded{false, "the peer offered no server-reflexive address", 0, 0, now - start_});
      return;
    }
    birthday_ = BirthdayPhase::running;
    birthday_started_ = now;
    const Timestamp window = b.rate ? static_cast<Timestamp>(b.probes) * kNanosPerSecond / b.rate : 0;
    // The prober starts two Ta later, so the other side's mappings exist when
    // the first probes arrive; both end when the last probe's answer is due.
    if (b.role == BirthdayConfig::Role::probe) next_probe_at_ = now + 2 * config_.ta;
    birthday_end_at_ = now + 2 * config_.ta + window + kNanosPerSecond;
    events_.push_back(BirthdayStarted{b.role, *birthday_target_, now - start_});
    return;
  }
  // Running.
  if (!checking_pairs() || (direct_pair_succeeded() && stats_.birthday_hits == 0)) {
    end_birthday(false, "not needed: a direct pair works", now);
    return;
  }
  if (next_probe_at_ && now >= *next_probe_at_) {
    next_probe_at_.reset();
    const std::uint32_t span = std::uint32_t{b.last_port} - b.first_port + 1;
    if (stats_.birthday_probes < b.probes && probed_ports_.size() < span) {
      std::uint16_t port = 0;
      do {
        std::uint8_t r[4];
        random_.fill(r, 4);
        const std::uint32_t v = (std::uint32_t{r[0]} << 24) | (r[1] << 16) | (r[2] << 8) | r[3];
        port = static_cast<std::uint16_t>(b.first_port + v % span);
      } while (!probed_ports_.insert(port).second);
      SocketAddress to = *birthday_target_;
      to.set_port(port);
      ++stats_.birthday_probes;
      send_probe(to, 0, now);
      if (stats_.birthday_probes < b.probes) next_probe_at_ = now + kNanosPerSecond / std::max(1u, b.rate);
    }
  }
  if (birthday_end_at_ && now >= *birthday_end_at_)
    end_birthday(false,
                 b.role == BirthdayConfig::Role::probe
                     ? fmt::format("no mapping found: {} probes to {} went unanswered", stats_.birthday_probes,
                                   birthday_target_->ip())
                     : fmt::format("no probe reached any of our {} birthday sockets", birthday_bases_.size()),
                 now);
}

bool Agent::handle_probe_answer(const stun::Message& m, const SocketAddress& from, Timestamp now, std::uint16_t base) {
  auto it = probes_.find(m.transaction_id);
  if (it == probes_.end()) return false;
  if (!remote_credentials_ ||
      stun::check_integrity(m, as_bytes(remote_credentials_->password)) != stun::IntegrityCheck::Ok) {
    ++stats_.bad_credentials;
    return true;
  }
  const Probe probe = it->second;
  probes_.erase(it);
  ++stats_.responses_received;
  if (!(from == probe.to) || base != probe.base || !checking_pairs()) return true;
  bool conflict = false;
  if (m.message_class == stun::MessageClass::ErrorResponse) {
    auto e = m.error();
    if (!e || !e->has_value() || (*e)->code != stun::error_code::kRoleConflict) return true;
    // Both sides think they control: no check got through before this one
    // (which is why we probe). Repair as for a check, then check the pair.
    ++stats_.role_conflicts;
    if (probe.controlling == config_.controlling) switch_role(now);
    conflict = true;
  }
  ++stats_.birthday_hits;
  // The answer proves the pair (this base, `from`): it is one like any other from here on.
  Candidate c;
  c.type = CandidateType::prflx;
  c.address = from;
  c.priority = candidate_priority(CandidateType::prflx);
  for (const auto& q : pairs_)
    if (q.remote.address == from) c = q.remote;
  auto idx = add_pair(c, false, base);
  if (!idx) return true;
  if (birthday_ == BirthdayPhase::running)
    end_birthday(true, fmt::format("probe to {} answered after {} probes", from.to_string(), stats_.birthday_probes),
                 now);
  if (pairs_[*idx].state == PairState::succeeded) return true;
  if (conflict) {
    pairs_[*idx].state = PairState::waiting;
    enqueue_triggered(*idx, false);
    schedule_next_check(now);
    return true;
  }
  Transaction t;
  t.pair = *idx;
  t.first_sent = t.last_sent = probe.sent;
  t.controlling = config_.controlling;
  auto mapped = m.xor_address(stun::attr::kXorMappedAddress);
  pair_succeeded(*idx, t, mapped && mapped->has_value() ? **mapped : SocketAddress{}, now);
  return true;
}

void Agent::end_birthday(bool hit, std::string detail, Timestamp now) {
  if (birthday_ != BirthdayPhase::running) return;
  birthday_ = BirthdayPhase::done;
  next_probe_at_.reset();
  birthday_end_at_.reset();
  probes_.clear();
  events_.push_back(
      BirthdayEnded{hit, std::move(detail), stats_.birthday_probes, stats_.birthday_sprays, now - start_});
}

void Agent::send_answer(const stun::Message& request, const SocketAddress& to, std::optional<int> error, bool via_relay,
                        std::uint16_t base) {
  auto r =
      stun::make_response(request, error ? stun::MessageClass::ErrorResponse : stun::MessageClass::SuccessResponse);
  if (error)
    r.add_error_code(*error, "Role Conflict");
  else
    r.add_xor_address(stun::attr::kXorMappedAddress, to);
  stun::EncodeOptions eo;
  eo.integrity_key = Bytes(config_.local.password.begin(), config_.local.password.end());
  eo.fingerprint = true;
  out_.push_back({to, stun::encode(r, eo), via_relay, base});
}

void Agent::handle_datagram(const SocketAddress& from, ByteView data, Timestamp now, bool via_relay,
                            std::uint16_t base) {
  if (base > birthday_bases_.size()) return;  // not a socket we know
  if (state_ == State::failed) return;
  auto m = stun::decode(data);
  if (!m || m->method != stun::method::kBinding) {
    ++stats_.bad_messages;
    return;
  }
  switch (m->message_class) {
    case stun::MessageClass::Request:
      handle_request(*m, from, now, via_relay, base);
      break;
    case stun::MessageClass::SuccessResponse:
    case stun::MessageClass::ErrorResponse:
      handle_response(*m, from, now, via_relay, base);
      break;
    case stun::MessageClass::Indication:
      break;  // keepalive (RFC 8445 11): nothing to do
  }
  schedule_next_check(now);
}

void Agent::handle_request(const stun::Message& m, const SocketAddress& from, Timestamp now, bool via_relay,
                           std::uint16_t base) {
  auto user = m.string(stun::attr::kUsername);
  const std::string prefix = config_.local.ufrag + ":";
  if (!user || user->rfind(prefix, 0) != 0 ||
      stun::check_integrity(m, as_bytes(config_.local.password)) != stun::IntegrityCheck::Ok) {
    ++stats_.bad_credentials;
    return;
  }
  ++stats_.requests_received;
  if (base > 0 && birthday_ == BirthdayPhase::running) {
    // A probe landed on one of our birthday mappings.
    ++stats_.birthday_hits;
    end_birthday(true,
                 fmt::format("a probe from {} reached birthday socket {} ({})", from.to_string(), base,
                             birthday_bases_[base - 1].address.to_string()),
                 now);
  }
  // Role conflict (RFC 8445 7.3.1.1).
  auto their_controlling = m.u64(stun::attr::kIceControlling);
  auto their_controlled = m.u64(stun::attr::kIceControlled);
  if (!their_controlling || !their_controlled) {
    ++stats_.bad_messages;
    return;
  }
  if (config_.controlling && their_controlling->has_value()) {
    ++stats_.role_conflicts;
    if (config_.tie_breaker >= **their_controlling) {
      send_answer(m, from, stun::error_code::kRoleConflict, via_relay, base);
      return;
    }
    switch_role(now);
  } else if (!config_.controlling && their_controlled->has_value()) {
    ++stats_.role_conflicts;
    if (config_.tie_breaker >= **their_controlled) {
      switch_role(now);
    } else {
      send_answer(m, from, stun::error_code::kRoleConflict, via_relay, base);
      return;
    }
  }
  send_answer(m, from, std::nullopt, via_relay, base);
  if (!checking_pairs()) return;  // consent checks of a connected peer: answered, nothing else
  // The source is a peer-reflexive candidate when we did not know it.
  auto idx = find_pair(from, via_relay, base);
  if (!idx) {
    Candidate c;
    c.type = CandidateType::prflx;
    auto prio = m.u32(stun::attr::kPriority);
    c.priority = prio && prio->has_value() ? **prio : candidate_priority(CandidateType::prflx);
    c.address = from;
    // A candidate we know from another base (a birthday socket meets the
    // peer's reflexive address): keep what the introduction said it is.
    if (base > 0)
      for (const auto& q : pairs_)
        if (q.remote.address == from && q.remote.type != CandidateType::prflx) c = q.remote;
    idx = add_pair(c, via_relay, base);
    if (!idx) return;
    ++stats_.prflx_remote;
  }
  auto& p = pairs_[*idx];
  const bool use_candidate = m.find(stun::attr::kUseCandidate) != nullptr;
  if (use_candidate && !config_.controlling) {
    if (p.state == PairState::succeeded) {
      if (state_ == State::checking)
        select(*idx, now);
      else if (!is_relayed(p) && selected_ != idx)
        change_path(*idx, now);
      return;
    }
    p.nominate_on_success = true;
  }
  if (p.state != PairState::succeeded) {
    if (p.state == PairState::in_progress) {
      // RFC 8445 7.3.1.4: the check in flight was probably dropped on the way
      // in by the peer's NAT (which has just let the peer's packet out): stop
      // retransmitting it (its answer is still accepted) and check again now.
      for (auto& [id, t] : transactions_)
        if (t.pair == *idx && !t.consent && !t.use_candidate) t.cancelled = true;
    }
    p.state = PairState::waiting;
    enqueue_triggered(*idx, false);
  }
}

void Agent::handle_response(const stun::Message& m, const SocketAddress& from, Timestamp now, bool via_relay,
                            std::uint16_t base) {
  auto it = transactions_.find(m.transaction_id);
  if (it == transactions_.end()) {
    if (!via_relay) (void)handle_probe_answer(m, from, now, base);
    return;  // late or foreign: nothing to match
  }
  if (!remote_credentials_ ||
      stun::check_integrity(m, as_bytes(remote_credentials_->password)) != stun::IntegrityCheck::Ok) {
    ++stats_.bad_credentials;
    return;
  }
  Transaction t = std::move(it->second);
  transactions_.erase(it);
  ++stats_.responses_received;
  auto& p = pairs_[t.pair];
  if (!(from == p.remote.address) || via_relay != p.relayed || base != p.base) {
    // RFC 8445 7.2.5.2.1: the answer must come from where the check went.
    if (!t.consent) p.state = PairState::failed;
    events_.push_back(
        CheckResult{p.remote.address, false, std::nullopt, "answer from " + from.to_string(), p.relayed, p.base});
    return;
  }
  if (m.message_class == stun::MessageClass::ErrorResponse) {
    auto e = m.error();
    const int code = e && e->has_value() ? (*e)->code : 0;
    if (code == stun::error_code::kRoleConflict) {
      ++stats_.role_conflicts;
      // Switch only if the check was sent in the role we still have.
      if (t.controlling == config_.controlling) switch_role(now);
      if (state_ == State::checking) {
        p.state = PairState::waiting;
        enqueue_triggered(t.pair, false);
      }
      events_.push_back(CheckResult{p.remote.address, false, std::nullopt, "487 role conflict", p.relayed, p.base});
      return;
    }
    if (!t.consent) p.state = PairState::failed;
    events_.push_back(
        CheckResult{p.remote.address, false, std::nullopt, fmt::format("error {}", code), p.relayed, p.base});
    return;
  }
  auto mapped = m.xor_address(stun::attr::kXorMappedAddress);
  pair_succeeded(t.pair, t, mapped && mapped->has_value() ? **mapped : SocketAddress{}, now);
}

void Agent::pair_succeeded(std::size_t pair, const Transaction& t, const SocketAddress& mapped, Timestamp now) {
  auto& p = pairs_[pair];
  const Timestamp rtt = now - t.last_sent;
  if (t.consent) {
    consent_expires_ = now + config_.consent_timeout;
    return;
  }
  p.rtt = rtt;
  p.state = PairState::succeeded;
  // The mapped address names the pair's local end: one of our candidates
  // (host without NAT, srflx behind an endpoint-independent one), or a new,
  // peer-reflexive one. Checks still leave from the base, the one socket.
  if (!mapped.empty()) {
    auto known = std::find_if(local_.begin(), local_.end(), [&](const Candidate& c) { return c.address == mapped; });
    if (known != local_.end()) {
      p.local = *known;
    } else {
      Candidate c;
      c.type = CandidateType::prflx;
      c.address = mapped;
      c.priority =
          candidate_priority(CandidateType::prflx, static_cast<std::uint16_t>((p.local.priority >> 8) & 0xFFFF));
      // Bounded: a peer answering with ever new addresses must not grow our list.
      if (local_.size() < config_.max_pairs) local_.push_back(c);
      ++stats_.prflx_local;
      p.local = c;
    }
  }
  events_.push_back(CheckResult{p.remote.address, true, rtt,
                                std::string(t.use_candidate ? "nominated" : "") +
                                    (p.relayed ? (t.use_candidate ? " via relay" : "via relay") : ""),
                                p.relayed, p.base});
  if (!checking_pairs()) return;
  if (t.use_candidate) {
    if (state_ == State::checking)
      select(pair, now);
    else if (!is_relayed(p))
      change_path(pair, now);
    return;
  }
  if (upgrading_) {
    // Connected over a relay: a direct pair that works takes over (controlling nominates it).
    if (is_relayed(p)) return;
    if (config_.controlling && !nominating_) {
      nominating_ = pair;
      send_check(pair, true, false, now);
    } else if (!config_.controlling && p.nominate_on_success) {
      change_path(pair, now);
    }
    return;
  }
  if (config_.controlling) {
    if (!nominating_ && is_relayed(p) && !config_.relay_only && checks_started_ &&
        now < *checks_started_ + config_.relay_wait) {
      // Held back: a direct pair may still work. Nominated at the deadline if none did.
      relay_deadline_ = *checks_started_ + config_.relay_wait;
      return;
    }
    if (!nominating_) {
      // The nomination goes out at once, outside the Ta pacing: it is one
      // check to an address that has just answered us, so it adds no
      // unsolicited traffic, and waiting for the next Ta slot would add up
      // to 50 ms to every connection.
      nominating_ = pair;
      send_check(pair, true, false, now);
    }
  } else if (p.nominate_on_success) {
    select(pair, now);
  }
}

void Agent::select(std::size_t pair, Timestamp now) {
  if (state_ != State::checking) return;
  auto& p = pairs_[pair];
  p.nominated = true;
  selected_ = pair;
  state_ = State::connected;
  nominating_.reset();
  relay_deadline_.reset();
  // Over a relay the direct pairs are still checked (a path that works later takes over).
  upgrading_ = is_relayed(p) && !config_.relay_only;
  if (!upgrading_) {
    next_check_at_.reset();
    triggered_.clear();
  }
  // Checks still in flight on other pairs are no longer needed (direct ones are, when upgrading).
  for (auto it = transactions_.begin(); it != transactions_.end();) {
    if (it->second.pair != pair && !(upgrading_ && !is_relayed(pairs_[it->second.pair])))
      it = transactions_.erase(it);
    else
      ++it;
  }
  consent_expires_ = now + config_.consent_timeout;
  next_consent_at_ = now + config_.consent_interval;
  events_.push_back(Connected{p.local, p.remote, now - start_, p.rtt});
  if (!upgrading_) end_birthday(stats_.birthday_hits > 0, "connected", now);
}

void Agent::change_path(std::size_t pair, Timestamp now) {
  if (!upgrading_ || !selected_) return;
  pairs_[*selected_].nominated = false;
  auto& p = pairs_[pair];
  p.nominated = true;
  selected_ = pair;
  upgrading_ = false;
  nominating_.reset();
  next_check_at_.reset();
  triggered_.clear();
  for (auto it = transactions_.begin(); it != transactions_.end();) {
    if (it->second.pair != pair)
      it = transactions_.erase(it);
    else
      ++it;
  }
  consent_expires_ = now + config_.consent_timeout;
  next_consent_at_ = now + config_.consent_interval;
  events_.push_back(PathChanged{p.local, p.remote, now - start_, p.rtt});
  end_birthday(stats_.birthday_hits > 0, "the path moved to a direct pair", now);
}

void Agent::switch_role(Timestamp now) {
  config_.controlling = !config_.controlling;
  nominating_.reset();
  reprioritize();
  events_.emplace_back(std::in_place_type<RoleChanged>, RoleChanged{config_.controlling});
  // A new controlling side nominates what already works.
  if (config_.controlling && state_ == State::checking) {
    for (std::size_t i = 0; i < pairs_.size(); ++i) {
      if (pairs_[i].state == PairState::succeeded) {
        nominating_ = i;
        enqueue_triggered(i, true);
        break;
      }
    }
  }
  schedule_next_check(now);
}

void Agent::fail(std::string reason, Timestamp now) {
  end_birthday(false, "the checks ended without a path", now);
  state_ = State::failed;
  next_check_at_.reset();
  next_consent_at_.reset();
  transactions_.clear();
  triggered_.clear();
  events_.push_back(Failed{std::move(reason)});
}

std::string Agent::failure_reason() const {
  const auto secs = fmt::format("{} s", config_.timeout / kNanosPerSecond);
  if (!remote_credentials_) return "no introduction within " + secs + ": the peer's candidates never arrived";
  if (pairs_.empty()) return "no candidate of the peer is reachable from here (no common address family)";
  bool any_success = false;
  for (const auto& p : pairs_) any_success = any_success || p.state == PairState::succeeded;
  if (any_success) return "checks succeeded but no pair was nominated within " + secs;
  std::string birthday;
  if (config_.birthday.role == BirthdayConfig::Role::probe && stats_.birthday_probes > 0)
    birthday = fmt::format("; birthday punching found no mapping ({} probes to random ports of {} unanswered)",
                           stats_.birthday_probes, birthday_target_ ? birthday_target_->ip() : std::string("?"));
  else if (config_.birthday.role == BirthdayConfig::Role::open && stats_.birthday_sprays > 0)
    birthday = fmt::format("; birthday punching found no mapping (no probe reached our {} extra sockets)",
                           stats_.birthday_sprays);
  if (stats_.requests_received > 0)
    return fmt::format(
        "no direct path: {} checks from the peer arrived, but none of our {} checks ({} datagrams) to {} addresses "
        "was answered (the peer's NAT keeps our packets out: it maps per destination or filters by port); a relay "
        "is needed{}",
        stats_.requests_received, stats_.checks_sent, stats_.checks_sent + stats_.retransmissions, pairs_.size(),
        birthday);
  return fmt::format(
      "no direct path: none of our {} checks ({} datagrams) to {} addresses was answered and no check from the "
      "peer arrived (both NATs keep the other's packets out, e.g. one maps per destination (symmetric NAT) and "
      "the other filters by port); a relay is needed{}",
      stats_.checks_sent, stats_.checks_sent + stats_.retransmissions, pairs_.size(), birthday);
}

}  // namespace quiclab::ice
