#include "p2p/rendezvous_server.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "transport/core/log.hpp"

namespace quiclab::rendezvous {

using namespace quiclab::stun;

namespace {

// Attribute types (comprehension-required ones matter) each method understands.
const std::vector<std::uint16_t> kBindingKnown = {
    attr::kMappedAddress,
    attr::kChangeRequest,
    attr::kUsername,
    attr::kMessageIntegrity,
    attr::kMessageIntegritySha256,
    attr::kPadding,
    attr::kResponsePort,
    attr::kXorMappedAddress,
    attr::kRealm,
    attr::kNonce,
    attr::kErrorCode,
    attr::kUnknownAttributes,
};
const std::vector<std::uint16_t> kRendezvousKnown = {
    attr::kUsername,       attr::kMessageIntegrity, attr::kMessageIntegritySha256, attr::kPeerName,
    attr::kHostCandidate,  attr::kLifetime,         attr::kRegistrationKey,        attr::kIceUfrag,
    attr::kIcePassword,    attr::kTieBreaker,       attr::kCertFingerprint,        attr::kWait,
    attr::kRelayCandidate, attr::kBirthday,
};
constexpr std::size_t kMinKeySize = 16;
constexpr std::size_t kMaxKeySize = 64;
constexpr unsigned kLogLinesPerSecond = 20;
constexpr Timestamp kSourceIdleTimeout = 60 * kNanosPerSecond;

SocketAddress ip_only(const SocketAddress& a) {
  SocketAddress k = a;
  k.set_port(0);
  return k;
}

}  // namespace

bool valid_peer_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == '@';
  });
}

bool Server::TokenBucket::take(double rate, double burst, Timestamp now) {
  if (last == 0) {
    tokens = burst;
  } else if (now > last) {
    tokens = std::min(burst, tokens + rate * static_cast<double>(now - last) / 1e9);
  }
  last = now;
  if (tokens < 1.0) return false;
  tokens -= 1.0;
  return true;
}

Server::Server(ServerConfig config) : config_(std::move(config)) {}

bool Server::log_allowed(Timestamp now) {
  // A flood of bad packets must not turn into a flood of log lines: allow a
  // few per second and count the rest.
  if (now - log_window_ >= kNanosPerSecond || now < log_window_) {
    if (counters_.log_lines_suppressed > 0 && log_lines_in_window_ > kLogLinesPerSecond) {
      log::warn("rendezvous: log lines suppressed so far: {}", counters_.log_lines_suppressed);
    }
    log_window_ = now;
    log_lines_in_window_ = 0;
  }
  if (++log_lines_in_window_ > kLogLinesPerSecond) {
    counters_.log_lines_suppressed++;
    return false;
  }
  return true;
}

Server::Source* Server::source_for(const SocketAddress& from, Timestamp now) {
  auto key = ip_only(from);
  auto it = sources_.find(key);
  if (it == sources_.end()) {
    // The table is bounded; while it is full, unknown sources are refused until
    // handle_expiry() forgets idle ones. Memory stays bounded under a flood.
    if (sources_.size() >= config_.max_tracked_sources) return nullptr;
    it = sources_.emplace(key, Source{}).first;
  }
  it->second.last_seen = now;
  return &it->second;
}

void Server::release_source_registration(const SocketAddress& address) {
  auto it = sources_.find(ip_only(address));
  if (it != sources_.end() && it->second.registrations > 0) it->second.registrations--;
}

void Server::send(int socket, const SocketAddress& to, const Message& m, const EncodeOptions& opts,
                  std::vector<OutgoingDatagram>& out) {
  out.push_back(OutgoingDatagram{socket, to, encode(m, opts)});
  counters_.datagrams_sent++;
}

void Server::send_error(int socket, const SocketAddress& to, const Message& req, int code, std::string_view reason,
                        const Bytes* key, std::vector<OutgoingDatagram>& out) {
  auto resp = make_response(req, MessageClass::ErrorResponse);
  resp.add_error_code(code, reason);
  EncodeOptions opts;
  if (key) opts.integrity_sha256_key = *key;
  opts.fingerprint = !req.is_legacy() && req.find(attr::kFingerprint) != nullptr;
  counters_.error_responses++;
  send(socket, to, resp, opts, out);
}

void Server::handle_datagram(int socket, const SocketAddress& from, ByteView data, Timestamp now,
                             std::vector<OutgoingDatagram>& out) {
  counters_.datagrams_received++;
  if (!housekeeping_due_) housekeeping_due_ = now + kHousekeepingInterval;
  if (socket < 0 || socket > 3 || config_.local[static_cast<std::size_t>(socket)].empty()) socket = kPrimary;
  auto* source = source_for(from, now);
  if (source == nullptr) {
    counters_.sources_table_full++;
    return;
  }
  // Rate-limit before parsing so a flood costs as little as possible.
  if (!source->requests.take(config_.requests_per_second_per_source, config_.request_burst_per_source, now)) {
    counters_.rate_limited++;
    if (log_allowed(now)) log::info("rendezvous: rate limit: dropping datagram from {}", from.to_string());
    return;
  }
  auto decoded = decode(data, DecodeOptions{true});
  if (!decoded) {
    counters_.malformed++;
    if (log_allowed(now)) {
      log::info("rendezvous: dropping {}-byte datagram from {}: {}", data.size(), from.to_string(),
                decoded.error().message);
    }
    return;
  }
  const Message& req = *decoded;
  if ((req.message_class == MessageClass::SuccessResponse || req.message_class == MessageClass::ErrorResponse) &&
      (req.method == method::kPeerIntroduction || req.method == method::kIntroductionResult) && !req.is_legacy()) {
    handle_peer_answer(from, req, now, out);
    return;
  }
  if (req.message_class != MessageClass::Request || (req.is_legacy() && req.method != method::kBinding)) {
    // Indications (keep-alives) and stray responses get no answer by design.
    if (req.message_class == MessageClass::Indication && req.method == method::kBinding) {
      counters_.binding_indications++;
      return;
    }
    counters_.not_a_request++;
    if (log_allowed(now) && req.message_class != MessageClass::Indication) {
      log::info("rendezvous: dropping {} method 0x{:03x} from {}", to_string(req.message_class), req.method,
                from.to_string());
    }
    return;
  }
  bool binding = req.method == method::kBinding;
  bool rendezvous = req.method >= method::kRegister && req.method <= method::kIntroduce;
  if (!binding && !rendezvous) {
    if (log_allowed(now)) log::info("rendezvous: unknown method 0x{:03x} from {}", req.method, from.to_string());
    send_error(socket, from, req, error_code::kBadRequest, "Unknown method", nullptr, out);
    return;
  }
  auto unknown = unknown_comprehension_required(req, binding ? kBindingKnown : kRendezvousKnown);
  if (!unknown.empty()) {
    counters_.unknown_attribute_errors++;
    if (log_allowed(now)) {
      log::info("rendezvous: 420 to {}: unknown comprehension-required attribute {}", from.to_string(),
                attr::name(unknown.front()));
    }
    auto resp = make_response(req, MessageClass::ErrorResponse);
    resp.add_error_code(error_code::kUnknownAttribute, "Unknown Attribute");
    resp.add_unknown_attributes(unknown);
    counters_.error_responses++;
    send(socket, from, resp, EncodeOptions{std::nullopt, std::nullopt, req.find(attr::kFingerprint) != nullptr}, out);
    return;
  }
  if (binding) {
    handle_binding(socket, from, req, out);
  } else {
    handle_rendezvous(socket, from, req, now, out);
  }
}

void Server::handle_binding(int socket, const SocketAddress& from, const Message& req,
                            std::vector<OutgoingDatagram>& out) {
  counters_.binding_requests++;
  if (req.is_legacy()) counters_.legacy_binding_requests++;
  auto change = req.change_request();
  auto response_port = req.response_port();
  if (!change || !response_port) {
    log::info("rendezvous: 400 to {}: {}", from.to_string(),
              !change ? change.error().message : response_port.error().message);
    send_error(socket, from, req, error_code::kBadRequest, "Bad Request", nullptr, out);
    return;
  }
  int out_socket = socket;
  if (*change && ((*change)->change_ip || (*change)->change_port)) {
    counters_.change_requests++;
    if (!has_alternate()) {
      // RFC 5780 section 6.1: without an alternate address CHANGE-REQUEST is
      // answered with 420 as if it were not understood.
      counters_.unknown_attribute_errors++;
      auto resp = make_response(req, MessageClass::ErrorResponse);
      resp.add_error_code(error_code::kUnknownAttribute, "Unknown Attribute");
      resp.add_unknown_attributes({attr::kChangeRequest});
      counters_.error_responses++;
      send(socket, from, resp, {}, out);
      return;
    }
    out_socket = socket ^ ((*change)->change_ip ? kAltIp : 0) ^ ((*change)->change_port ? kAltPort : 0);
  }
  SocketAddress to = from;
  if (*response_port) {
    // RFC 5780 RESPONSE-PORT: same IP, the port the client asks for. It cannot
    // redirect to another host, and the per-source budget already applies.
    to.set_port(**response_port);
  }
  auto resp = make_response(req, MessageClass::SuccessResponse);
  const auto& origin = config_.local[static_cast<std::size_t>(out_socket)];
  if (req.is_legacy()) {
    // RFC 3489 clients understand only the plain address attributes.
    resp.add_address(attr::kMappedAddress, from);
    resp.add_address(attr::kSourceAddress, origin);
    if (has_alternate())
      resp.add_address(attr::kChangedAddress, config_.local[static_cast<std::size_t>(socket ^ kAltBoth)]);
    send(out_socket, to, resp, {}, out);
    return;
  }
  resp.add_xor_address(attr::kXorMappedAddress, from);
  if (has_alternate()) {
    resp.add_address(attr::kResponseOrigin, origin);
    resp.add_address(attr::kOtherAddress, config_.local[static_cast<std::size_t>(socket ^ kAltBoth)]);
  }
  const EncodeOptions opts{std::nullopt, std::nullopt, req.find(attr::kFingerprint) != nullptr};
  if (req.find(attr::kPadding) != nullptr) {
    // RFC 5780 section 7.6: PADDING brings a message to the MTU of the
    // outgoing interface, so the fragmentation test sends fragments both ways.
    // Never above the request's own size: a small padded request must not
    // buy a large answer (no amplification).
    const std::size_t headers = to.is_v6() ? 48 : 28;  // IP + UDP
    const std::size_t mtu_payload = config_.padding_mtu > headers ? config_.padding_mtu - headers : 0;
    const std::size_t target = std::min(mtu_payload, req.raw.size()) & ~std::size_t{3};
    const std::size_t plain = encode(resp, opts).size();
    if (target >= plain + 8) {
      resp.add(attr::kPadding, Bytes(target - plain - 4, 0));
      counters_.padded_responses++;
    }
  }
  send(out_socket, to, resp, opts, out);
}

void Server::handle_rendezvous(int socket, const SocketAddress& from, const Message& req, Timestamp now,
                               std::vector<OutgoingDatagram>& out) {
  auto fail = [&](int code, std::string_view reason, const Bytes* key, std::string_view why) {
    if (log_allowed(now)) log::info("rendezvous: {} to {}: {}", code, from.to_string(), why);
    send_error(socket, from, req, code, reason, key, out);
  };
  // Our methods take each attribute at most once (HOST-CANDIDATE excepted), so a
  // duplicate is a malformed request rather than something to guess about.
  for (auto t : kRendezvousKnown) {
    if (t != attr::kHostCandidate && req.count(t) > 1) {
      return fail(error_code::kBadRequest, "Bad Request", nullptr, "duplicate " + attr::name(t));
    }
  }
  auto name = req.string(attr::kUsername);
  if (!name || !valid_peer_name(*name)) {
    return fail(error_code::kBadRequest, "Bad Request", nullptr, "missing or invalid USERNAME");
  }
  const auto* mi = req.find(attr::kMessageIntegritySha256);
  if (!mi) return fail(error_code::kBadRequest, "Bad Request", nullptr, "no MESSAGE-INTEGRITY-SHA256 from " + *name);

  auto it = registrations_.find(*name);
  if (it != registrations_.end() && it->second.expires <= now) {
    // Lazily expire so an expired name can be taken at once.
    release_source_registration(it->second.reflexive);
    registrations_.erase(it);
    counters_.registrations_expired++;
    it = registrations_.end();
  }

  // --- authenticate: the stored key, or for a new name the REGISTRATION-KEY it brings ---
  Bytes key;
  bool creating = false;
  if (it != registrations_.end()) {
    if (check_integrity_sha256(req, it->second.key) != IntegrityCheck::Ok) {
      counters_.auth_failures++;
      if (req.find(attr::kRegistrationKey)) {
        counters_.name_conflicts++;
        return fail(error_code::kForbidden, "Name Taken", nullptr, "name '" + *name + "' belongs to another key");
      }
      return fail(error_code::kUnauthenticated, "Unauthenticated", nullptr, "bad integrity for '" + *name + "'");
    }
    key = it->second.key;
  } else {
    if (req.method != method::kRegister) {
      return fail(error_code::kNotFound, "Not Registered", nullptr, "'" + *name + "' is not registered");
    }
    const auto* k = req.find(attr::kRegistrationKey);
    if (!k || k->value.size() < kMinKeySize || k->value.size() > kMaxKeySize) {
      return fail(error_code::kBadRequest, "Bad Request", nullptr, "Register without a 16..64-byte REGISTRATION-KEY");
    }
    if (check_integrity_sha256(req, k->value) != IntegrityCheck::Ok) {
      counters_.auth_failures++;
      return fail(error_code::kUnauthenticated, "Unauthenticated", nullptr,
                  "bad integrity on Register for '" + *name + "'");
    }
    key = k->value;
    creating = true;
  }
  // From here on the sender has proven the key: error responses carry integrity too.
  auto lifetime_attr = req.u32(attr::kLifetime);
  auto hosts = req.xor_addresses(attr::kHostCandidate);
  if (!lifetime_attr || !hosts) {
    return fail(error_code::kBadRequest, "Bad Request", &key,
                !lifetime_attr ? lifetime_attr.error().message : hosts.error().message);
  }
  if (hosts->size() > config_.max_host_candidates) {
    return fail(error_code::kBadRequest, "Too Many Candidates", &key, "more than the allowed HOST-CANDIDATEs");
  }

  if (creating) {
    auto* src = source_for(from, now);
    if (registrations_.size() >= config_.max_registrations || !src ||
        src->registrations >= config_.max_registrations_per_source) {
      counters_.quota_rejections++;
      return fail(error_code::kQuotaReached, "Quota Reached", &key,
                  fmt::format("registration quota reached for {}", from.ip()));
    }
    src->registrations++;
    Registration r;
    r.key = key;
    r.reflexive = from;
    r.socket = socket;
    it = registrations_.emplace(*name, std::move(r)).first;
    counters_.registrations_created++;
    log::info("rendezvous: registered '{}' at {}", *name, from.to_string());
  } else if (!(it->second.reflexive == from)) {
    // Authenticated traffic from a new address: the peer's NAT mapping moved.
    if (!it->second.reflexive.same_ip(from)) {
      release_source_registration(it->second.reflexive);
      if (auto* src = source_for(from, now)) src->registrations++;
    }
    log::info("rendezvous: '{}' moved from {} to {}", *name, it->second.reflexive.to_string(), from.to_string());
    it->second.reflexive = from;
    it->second.socket = socket;
  }
  Registration& reg = it->second;

  auto resp = make_response(req, MessageClass::SuccessResponse);
  EncodeOptions opts;
  opts.integrity_sha256_key = key;
  opts.fingerprint = true;

  switch (req.method) {
    case method::kRegister:
    case method::kRefresh: {
      std::uint32_t lifetime = lifetime_attr->value_or(config_.default_lifetime_s);
      lifetime = std::min(lifetime, config_.max_lifetime_s);
      if (req.method == method::kRefresh && lifetime == 0) {
        release_source_registration(reg.reflexive);
        registrations_.erase(it);
        counters_.registrations_removed++;
        log::info("rendezvous: '{}' deregistered", *name);
        resp.add_u32(attr::kLifetime, 0);
        send(socket, from, resp, opts, out);
        return;
      }
      if (lifetime == 0) lifetime = config_.default_lifetime_s;
      reg.expires = now + Timestamp{lifetime} * kNanosPerSecond;
      if (req.method == method::kRegister || !hosts->empty()) reg.hosts = *hosts;
      if (!creating) counters_.registrations_refreshed++;
      resp.add_xor_address(attr::kXorMappedAddress, from);
      resp.add_u32(attr::kLifetime, lifetime);
      send(socket, from, resp, opts, out);
      // Introductions that waited for this name go out now.
      release_waiting(*name, now, out);
      return;
    }
    case method::kLookup: {
      counters_.lookups++;
      auto peer = req.string(attr::kPeerName);
      if (!peer || !valid_peer_name(*peer))
        return fail(error_code::kBadRequest, "Bad Request", &key, "Lookup without PEER-NAME");
      auto target = registrations_.find(*peer);
      if (target == registrations_.end() || target->second.expires <= now) {
        return fail(error_code::kNotFound, "Not Registered", &key, "lookup of unknown '" + *peer + "'");
      }
      // A lookup says only that the name is there and for how long: candidates
      // are given out by introductions alone, to both sides at once.
      resp.add_string(attr::kPeerName, *peer);
      resp.add_u32(attr::kLifetime, static_cast<std::uint32_t>((target->second.expires - now) / kNanosPerSecond));
      send(socket, from, resp, opts, out);
      return;
    }
    case method::kIntroduce:
      handle_introduce(socket, from, req, *name, key, now, out);
      return;
    default:
      return fail(error_code::kBadRequest, "Bad Request", &key, "unknown method");
  }
}

// ---- introductions (docs/rendezvous-protocol.md, section 3.4) ----

void Server::handle_introduce(int socket, const SocketAddress& from, const Message& req, const std::string& name,
                              const Bytes& key, Timestamp now, std::vector<OutgoingDatagram>& out) {
  auto fail = [&](int code, std::string_view reason, std::string_view why) {
    if (log_allowed(now)) log::info("rendezvous: {} to {}: {}", code, from.to_string(), why);
    send_error(socket, from, req, code, reason, &key, out);
  };
  auto peer = req.string(attr::kPeerName);
  if (!peer || !valid_peer_name(*peer))
    return fail(error_code::kBadRequest, "Bad Request", "Introduce without PEER-NAME");
  if (*peer == name) return fail(error_code::kBadRequest, "Bad Request", "Introduce to itself");
  auto offer = read_offer(req);
  if (!offer) return fail(error_code::kBadRequest, "Bad Request", offer.error().message);
  auto wait = req.u32(attr::kWait);
  if (!wait) return fail(error_code::kBadRequest, "Bad Request", wait.error().message);
  const std::uint32_t wait_s = std::min(wait->value_or(0), config_.max_wait_s);
  auto target = registrations_.find(*peer);
  const bool present = target != registrations_.end() && target->second.expires > now;
  if (!present && wait_s == 0)
    return fail(error_code::kNotFound, "Not Registered", "introduce to unknown '" + *peer + "'");
  Registration& reg = registrations_.at(name);
  if (!reg.introductions.take(config_.introductions_per_second, config_.introduction_burst, now)) {
    counters_.quota_rejections++;
    return fail(error_code::kQuotaReached, "Introduction Rate", "introduction rate for '" + name + "'");
  }
  if (introductions_.size() >= config_.max_introductions) {
    counters_.introduction_limit++;
    return fail(error_code::kQuotaReached, "Too Many Introductions", "introduction table full");
  }
  if (!present) {
    std::size_t mine = 0;
    for (const auto& [id, in] : introductions_)
      mine += in.asker == name && in.phase == Introduction::Phase::waiting ? 1 : 0;
    if (mine >= config_.max_waiting_per_asker) {
      counters_.introduction_limit++;
      return fail(error_code::kQuotaReached, "Too Many Waiting", "'" + name + "' already waits for enough peers");
    }
  }
  if (next_introduction_id_ == 0) {
    auto r = random_transaction_id();
    for (int i = 0; i < 8; ++i) next_introduction_id_ = next_introduction_id_ << 8 | r[static_cast<std::size_t>(i)];
    next_introduction_id_ |= 1;
  }
  Introduction in;
  in.id = next_introduction_id_++;
  in.asker = name;
  in.target = *peer;
  in.asker_offer = std::move(*offer);
  auto resp = make_response(req, MessageClass::SuccessResponse);
  resp.add_string(attr::kPeerName, *peer);
  resp.add_u64(attr::kIntroductionId, in.id);
  if (!present) {
    in.phase = Introduction::Phase::waiting;
    in.wait_s = wait_s;
    in.wait_until = now + Timestamp{wait_s} * kNanosPerSecond;
    resp.add_u32(attr::kWait, wait_s);
    counters_.introductions_waiting++;
    log::info("rendezvous: '{}' waits up to {} s for '{}' to register", name, wait_s, *peer);
  }
  EncodeOptions opts;
  opts.integrity_sha256_key = key;
  opts.fingerprint = true;
  send(socket, from, resp, opts, out);
  auto& stored = introductions_.emplace(in.id, std::move(in)).first->second;
  if (present) start_delivery(stored, now, out);
}

bool Server::send_request(Introduction& in, const std::string& to_name, Message m, Timestamp now,
                          std::vector<OutgoingDatagram>& out) {
  auto reg = registrations_.find(to_name);
  if (reg == registrations_.end() || reg->second.expires <= now) return false;
  m.message_class = MessageClass::Request;
  m.transaction_id = random_transaction_id();
  m.add_u64(attr::kIntroductionId, in.id);
  EncodeOptions opts;
  opts.integrity_sha256_key = reg->second.key;
  opts.fingerprint = true;
  introduction_by_tx_.erase(in.tx);
  in.tx = m.transaction_id;
  in.request = encode(m, opts);
  in.rto = config_.introduction_rto;
  in.next_at = now + in.rto;
  in.give_up_at = now + config_.introduction_timeout;
  in.sent = 1;
  introduction_by_tx_[in.tx] = in.id;
  // Only ever to the registered, authenticated address, from the socket it registered through.
  out.push_back(OutgoingDatagram{reg->second.socket, reg->second.reflexive, in.request});
  counters_.datagrams_sent++;
  return true;
}

void Server::start_delivery(Introduction& in, Timestamp now, std::vector<OutgoingDatagram>& out) {
  in.phase = Introduction::Phase::delivering;
  const Registration& asker = registrations_.at(in.asker);
  Message m;
  m.method = method::kPeerIntroduction;
  m.add_string(attr::kPeerName, in.asker);
  m.add_xor_address(attr::kReflexiveCandidate, asker.reflexive);
  for (const auto& h : asker.hosts) m.add_xor_address(attr::kHostCandidate, h);
  add_offer(m, in.asker_offer);
  counters_.introductions++;
  if (!send_request(in, in.target, std::move(m), now, out)) {
    start_report(in, now, "'" + in.target + "' is no longer registered", out);
    return;
  }
  log::info("rendezvous: introducing '{}' ({}) to '{}'", in.asker, asker.reflexive.to_string(), in.target);
}

void Server::start_report(Introduction& in, Timestamp now, std::optional<std::string> failure,
                          std::vector<OutgoingDatagram>& out) {
  in.phase = Introduction::Phase::reporting;
  Message m;
  m.method = method::kIntroductionResult;
  m.add_string(attr::kPeerName, in.target);
  if (failure) {
    counters_.introductions_failed++;
    log::info("rendezvous: introduction of '{}' to '{}' failed: {}", in.asker, in.target, *failure);
    m.add_error_code(error_code::kNotDelivered, *failure);
  }
  if (!send_request(in, in.asker, std::move(m), now, out)) finish(in.id);  // the asker is gone too
}

void Server::handle_peer_answer(const SocketAddress& from, const Message& m, Timestamp now,
                                std::vector<OutgoingDatagram>& out) {
  auto t = introduction_by_tx_.find(m.transaction_id);
  if (t == introduction_by_tx_.end()) {
    counters_.not_a_request++;  // late, duplicate or forged: nothing to match
    return;
  }
  auto it = introductions_.find(t->second);
  if (it == introductions_.end()) return;
  Introduction& in = it->second;
  const bool from_target = in.phase == Introduction::Phase::delivering;
  if (m.method != (from_target ? method::kPeerIntroduction : method::kIntroductionResult)) return;
  const std::string& who = from_target ? in.target : in.asker;
  auto reg = registrations_.find(who);
  if (reg == registrations_.end() || check_integrity_sha256(m, reg->second.key) != IntegrityCheck::Ok) {
    counters_.auth_failures++;
    if (log_allowed(now)) log::info("rendezvous: unauthenticated introduction answer from {}", from.to_string());
    return;
  }
  if (!(reg->second.reflexive == from)) {
    // Authenticated: the peer's mapping moved (as for any authenticated request).
    reg->second.reflexive = from;
  }
  if (!from_target) {
    finish(in.id);  // the asker has its result
    return;
  }
  if (m.message_class == MessageClass::ErrorResponse) {
    auto e = m.error();
    start_report(in, now, "'" + in.target + "' refused: " + (e && *e ? (*e)->reason : std::string("error")), out);
    return;
  }
  auto offer = read_offer(m);
  auto hosts = m.xor_addresses(attr::kHostCandidate);
  if (!offer || !hosts) {
    start_report(in, now, "'" + in.target + "' answered without a valid offer", out);
    return;
  }
  if (!hosts->empty() && hosts->size() <= config_.max_host_candidates) reg->second.hosts = *hosts;
  counters_.introductions_delivered++;
  Message r;
  r.method = method::kIntroductionResult;
  r.add_string(attr::kPeerName, in.target);
  r.add_xor_address(attr::kReflexiveCandidate, reg->second.reflexive);
  for (const auto& h : reg->second.hosts) r.add_xor_address(attr::kHostCandidate, h);
  add_offer(r, *offer);
  in.phase = Introduction::Phase::reporting;
  log::info("rendezvous: '{}' acknowledged the introduction of '{}'", in.target, in.asker);
  if (!send_request(in, in.asker, std::move(r), now, out)) finish(in.id);
}

void Server::release_waiting(const std::string& target, Timestamp now, std::vector<OutgoingDatagram>& out) {
  std::vector<std::uint64_t> ids;
  for (auto& [id, in] : introductions_)
    if (in.phase == Introduction::Phase::waiting && in.target == target) ids.push_back(id);
  for (auto id : ids) {
    auto it = introductions_.find(id);
    if (it == introductions_.end()) continue;
    if (registrations_.count(it->second.asker) == 0) {
      finish(id);  // the asker left while waiting
      continue;
    }
    start_delivery(it->second, now, out);
  }
}

void Server::finish(std::uint64_t id) {
  auto it = introductions_.find(id);
  if (it == introductions_.end()) return;
  introduction_by_tx_.erase(it->second.tx);
  introductions_.erase(it);
}

std::optional<Timestamp> Server::expiry() const {
  std::optional<Timestamp> e = housekeeping_due_;
  for (const auto& [id, in] : introductions_) {
    const Timestamp t = in.phase == Introduction::Phase::waiting ? in.wait_until : in.next_at;
    if (!e || t < *e) e = t;
  }
  return e;
}

void Server::handle_expiry(Timestamp now) {
  std::vector<std::uint64_t> ids;
  for (const auto& [id, in] : introductions_) ids.push_back(id);
  for (auto id : ids) {
    auto it = introductions_.find(id);
    if (it == introductions_.end()) continue;
    Introduction& in = it->second;
    if (in.phase == Introduction::Phase::waiting) {
      if (now >= in.wait_until)
        start_report(in, now, fmt::format("'{}' did not register within {} s", in.target, in.wait_s), timer_out_);
      continue;
    }
    if (now < in.next_at) continue;
    if (in.sent >= config_.introduction_transmissions || now >= in.give_up_at) {
      if (in.phase == Introduction::Phase::delivering) {
        start_report(in, now, fmt::format("no answer from '{}' after {} transmissions", in.target, in.sent),
                     timer_out_);
      } else {
        counters_.introduction_reports_lost++;
        log::info("rendezvous: '{}' never acknowledged the result of its introduction to '{}'", in.asker, in.target);
        finish(id);
      }
      continue;
    }
    auto reg = registrations_.find(in.phase == Introduction::Phase::delivering ? in.target : in.asker);
    if (reg == registrations_.end()) {
      if (in.phase == Introduction::Phase::delivering)
        start_report(in, now, "'" + in.target + "' left", timer_out_);
      else
        finish(id);
      continue;
    }
    in.rto *= 2;
    in.next_at = std::min(now + in.rto, in.give_up_at);
    ++in.sent;
    timer_out_.push_back(OutgoingDatagram{reg->second.socket, reg->second.reflexive, in.request});
    counters_.datagrams_sent++;
  }
  if (!housekeeping_due_ || now < *housekeeping_due_) return;
  for (auto it = registrations_.begin(); it != registrations_.end();) {
    if (it->second.expires <= now) {
      log::info("rendezvous: registration of '{}' expired", it->first);
      release_source_registration(it->second.reflexive);
      it = registrations_.erase(it);
      counters_.registrations_expired++;
    } else {
      ++it;
    }
  }
  for (auto it = sources_.begin(); it != sources_.end();) {
    if (it->second.registrations == 0 && now - it->second.last_seen > kSourceIdleTimeout) {
      it = sources_.erase(it);
    } else {
      ++it;
    }
  }
  housekeeping_due_.reset();
  if (!registrations_.empty() || !sources_.empty()) housekeeping_due_ = now + kHousekeepingInterval;
}

std::string Server::metrics_text() const {
  std::string s;
  auto counter = [&](std::string_view name, std::uint64_t v, std::string_view help) {
    s += fmt::format(
        "# HELP quiclab_rendezvous_{0} {2}\n# TYPE quiclab_rendezvous_{0} counter\nquiclab_rendezvous_{0} {1}\n", name,
        v, help);
  };
  auto gauge = [&](std::string_view name, std::uint64_t v, std::string_view help) {
    s += fmt::format(
        "# HELP quiclab_rendezvous_{0} {2}\n# TYPE quiclab_rendezvous_{0} gauge\nquiclab_rendezvous_{0} {1}\n", name, v,
        help);
  };
  const auto& c = counters_;
  counter("datagrams_received_total", c.datagrams_received, "Datagrams received on any socket.");
  counter("datagrams_sent_total", c.datagrams_sent, "Datagrams sent.");
  counter("malformed_total", c.malformed, "Datagrams dropped because they did not decode as STUN.");
  counter("not_a_request_total", c.not_a_request, "Responses and indications dropped.");
  counter("rate_limited_total", c.rate_limited, "Datagrams dropped by the per-source rate limit.");
  counter("sources_table_full_total", c.sources_table_full, "Datagrams dropped because the source table was full.");
  counter("binding_requests_total", c.binding_requests, "Binding requests answered.");
  counter("legacy_binding_requests_total", c.legacy_binding_requests, "RFC 3489 Binding requests.");
  counter("change_requests_total", c.change_requests, "Binding requests with CHANGE-REQUEST.");
  counter("padded_responses_total", c.padded_responses, "Binding responses padded to the MTU (RFC 5780 PADDING).");
  counter("binding_indications_total", c.binding_indications, "Binding indications (keepalives) received.");
  counter("error_responses_total", c.error_responses, "Error responses sent.");
  counter("unknown_attribute_errors_total", c.unknown_attribute_errors, "420 responses sent.");
  counter("auth_failures_total", c.auth_failures, "Requests whose MESSAGE-INTEGRITY-SHA256 did not verify.");
  counter("registrations_created_total", c.registrations_created, "New registrations.");
  counter("registrations_refreshed_total", c.registrations_refreshed, "Refreshed registrations.");
  counter("registrations_expired_total", c.registrations_expired, "Registrations that expired.");
  counter("registrations_removed_total", c.registrations_removed, "Registrations removed with LIFETIME 0.");
  counter("name_conflicts_total", c.name_conflicts, "Register attempts on a name owned by another key.");
  counter("quota_rejections_total", c.quota_rejections, "Requests refused by a quota.");
  counter("lookups_total", c.lookups, "Lookup requests.");
  counter("introductions_total", c.introductions, "Introductions sent to their target.");
  counter("introductions_delivered_total", c.introductions_delivered, "Introductions the target acknowledged.");
  counter("introductions_failed_total", c.introductions_failed, "Introductions not delivered (reported to the asker).");
  counter("introductions_waiting_total", c.introductions_waiting, "Introductions held for a peer not yet registered.");
  counter("introduction_reports_lost_total", c.introduction_reports_lost, "Results the asker never acknowledged.");
  counter("introduction_limit_total", c.introduction_limit, "Introductions refused: too many waiting or in flight.");
  counter("log_lines_suppressed_total", c.log_lines_suppressed, "Log lines dropped by the log rate limit.");
  gauge("registrations", registrations_.size(), "Current registrations.");
  gauge("tracked_sources", sources_.size(), "Source IPs in the rate-limit table.");
  gauge("introductions_in_flight", introductions_.size(), "Introductions being delivered, reported or waiting.");
  return s;
}

}  // namespace quiclab::rendezvous
