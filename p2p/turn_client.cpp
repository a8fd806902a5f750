#include "p2p/turn_client.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

namespace quiclab::turn {

namespace {

constexpr std::uint8_t kTransportUdp = 17;
constexpr std::uint16_t kFirstChannel = 0x4000;
constexpr std::uint16_t kLastChannel = 0x4FFF;

std::string describe(const stun::Message& m) {
  auto e = m.error();
  if (!e || !*e) return "error response without ERROR-CODE";
  return fmt::format("{} {}", (*e)->code, (*e)->reason);
}

}  // namespace

Credentials time_limited_credentials(std::string_view secret, std::string_view name, std::int64_t expiry_unix) {
  Credentials c;
  c.username = name.empty() ? std::to_string(expiry_unix) : fmt::format("{}:{}", expiry_unix, name);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(c.username.data()), c.username.size(), mac, &mac_len);
  std::string b64(4 * ((mac_len + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()), mac, static_cast<int>(mac_len));
  b64.resize(static_cast<std::size_t>(n));
  c.password = std::move(b64);
  return c;
}

Bytes long_term_key(const Credentials& credentials, std::string_view realm, PasswordAlgorithm algorithm) {
  const std::string input = fmt::format("{}:{}:{}", credentials.username, realm, credentials.password);
  const EVP_MD* md = algorithm == PasswordAlgorithm::sha256 ? EVP_sha256() : EVP_md5();
  Bytes key(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), key.data(), &len, md, nullptr);
  key.resize(len);
  return key;
}

Bytes encode_channel_data(std::uint16_t channel, ByteView data) {
  Bytes out(4 + data.size());
  out[0] = static_cast<std::uint8_t>(channel >> 8);
  out[1] = static_cast<std::uint8_t>(channel);
  out[2] = static_cast<std::uint8_t>(data.size() >> 8);
  out[3] = static_cast<std::uint8_t>(data.size());
  std::copy(data.begin(), data.end(), out.begin() + 4);
  return out;
}

Result<ChannelData> decode_channel_data(ByteView d) {
  if (d.size() < 4) return make_error(ErrorDomain::stun, -1, fmt::format("ChannelData: {} bytes, need 4", d.size()));
  const std::uint16_t channel = static_cast<std::uint16_t>((d[0] << 8) | d[1]);
  const std::size_t length = (std::size_t{d[2]} << 8) | d[3];
  if (channel < kFirstChannel || channel > kLastChannel)
    return make_error(ErrorDomain::stun, -1,
                      fmt::format("ChannelData: channel 0x{:04x} outside 0x4000-0x4fff", channel));
  if (length + 4 > d.size())
    return make_error(ErrorDomain::stun, -1,
                      fmt::format("ChannelData: length {} runs past the datagram ({} bytes)", length, d.size()));
  return ChannelData{channel, d.subspan(4, length)};
}

std::string_view to_string(Client::State s) {
  switch (s) {
    case Client::State::idle:
      return "idle";
    case Client::State::allocating:
      return "allocating";
    case Client::State::allocated:
      return "allocated";
    case Client::State::failed:
      return "failed";
    case Client::State::released:
      return "released";
  }
  return "?";
}

Client::Client(ClientConfig config, Random& random) : config_(std::move(config)), random_(random) {}

SocketAddress Client::ip_only(const SocketAddress& a) {
  SocketAddress ip = a;
  ip.set_port(0);
  return ip;
}

stun::Message Client::request(std::uint16_t m) const {
  stun::Message r;
  r.message_class = stun::MessageClass::Request;
  r.method = m;
  r.transaction_id = new_id();
  return r;
}

stun::TransactionId Client::new_id() const {
  stun::TransactionId id;
  random_.fill(id.data(), id.size());
  return id;
}

Bytes Client::sign(const stun::Message& m) const {
  stun::Message signed_m = m;
  stun::EncodeOptions options;
  options.fingerprint = true;
  if (!realm_.empty()) {
    signed_m.add_string(stun::attr::kUsername, config_.credentials.username);
    signed_m.add_string(stun::attr::kRealm, realm_);
    signed_m.add_string(stun::attr::kNonce, nonce_);
    if (offer_algorithms_) {
      signed_m.add(stun::attr::kPasswordAlgorithms, algorithms_value_);
      const std::uint8_t chosen[4] = {0, static_cast<std::uint8_t>(algorithm_), 0, 0};
      signed_m.add(stun::attr::kPasswordAlgorithm, ByteView(chosen, 4));
    }
    if (algorithm_ == PasswordAlgorithm::sha256)
      options.integrity_sha256_key = key_;
    else
      options.integrity_key = key_;
  }
  return stun::encode(signed_m, options);
}

void Client::send(Kind kind, stun::Message m, Timestamp now, SocketAddress peer, std::uint32_t lifetime) {
  launch(Pending{kind, stun::ClientTransaction({}, m.transaction_id, now, config_.transaction), std::move(m), peer,
                 lifetime},
         now);
}

void Client::launch(Pending p, Timestamp now) {
  p.transaction = stun::ClientTransaction(sign(p.request), p.request.transaction_id, now, config_.transaction);
  p.signed_request = !realm_.empty();
  if (auto bytes = p.transaction.poll_transmit(now)) {
    out_.push_back(std::move(*bytes));
    ++stats_.requests_sent;
  }
  const auto id = p.request.transaction_id;
  pending_.insert_or_assign(id, std::move(p));
}

void Client::start(Timestamp now) {
  if (state_ != State::idle) return;
  state_ = State::allocating;
  started_ = now;
  auto m = request(method::kAllocate);
  const std::uint8_t transport[4] = {kTransportUdp, 0, 0, 0};
  m.add(attr::kRequestedTransport, ByteView(transport, 4));
  m.add_u32(attr::kLifetime, config_.requested_lifetime_s);
  m.add(attr::kDontFragment, {});
  send(Kind::allocate, std::move(m), now);
}

void Client::create_permission(const SocketAddress& peer, Timestamp now) {
  const auto ip = ip_only(peer);
  auto it = permissions_.find(ip);
  if (it == permissions_.end()) {
    if (permissions_.size() >= config_.max_permissions) {
      ++stats_.refused_permissions;
      return;
    }
    it = permissions_.emplace(ip, Permission{}).first;
  }
  if (state_ == State::allocated && !it->second.installed && !it->second.pending && !it->second.forbidden)
    send_permission(ip, now);
}

void Client::send_permission(const SocketAddress& ip, Timestamp now) {
  auto& perm = permissions_[ip];
  perm.pending = true;
  auto m = request(method::kCreatePermission);
  m.add_xor_address(attr::kXorPeerAddress, ip);
  send(Kind::permission, std::move(m), now, ip);
}

void Client::bind_channel(const SocketAddress& peer, Timestamp now) {
  auto it = channels_.find(peer);
  if (it == channels_.end()) {
    if (next_channel_ > kLastChannel || channels_.size() >= config_.max_permissions) {
      ++stats_.refused_permissions;
      return;
    }
    Channel c;
    c.number = next_channel_++;
    channel_peers_[c.number] = peer;
    it = channels_.emplace(peer, c).first;
  }
  create_permission(peer, now);
  if (state_ == State::allocated && !it->second.bound && !it->second.pending) send_channel_bind(peer, now);
}

void Client::send_channel_bind(const SocketAddress& peer, Timestamp now) {
  auto& c = channels_[peer];
  c.pending = true;
  auto m = request(method::kChannelBind);
  m.add_u32(attr::kChannelNumber, std::uint32_t{c.number} << 16);
  m.add_xor_address(attr::kXorPeerAddress, peer);
  send(Kind::channel_bind, std::move(m), now, peer);
}

void Client::release(Timestamp now) {
  if (state_ != State::allocated) {
    if (state_ == State::allocating || state_ == State::idle) state_ = State::released;
    pending_.clear();
    return;
  }
  state_ = State::released;
  // Only the release is left to answer.
  pending_.clear();
  refresh_at_.reset();
  auto m = request(method::kRefresh);
  m.add_u32(attr::kLifetime, 0);
  send(Kind::refresh, std::move(m), now, {}, 0);
}

std::optional<Bytes> Client::wrap(const SocketAddress& peer, ByteView data) {
  if (state_ != State::allocated) return std::nullopt;
  if (auto it = channels_.find(peer); it != channels_.end() && it->second.bound) {
    ++stats_.channel_data_sent;
    return encode_channel_data(it->second.number, data);
  }
  stun::Message m;
  m.message_class = stun::MessageClass::Indication;
  m.method = method::kSend;
  m.transaction_id = new_id();
  m.add_xor_address(attr::kXorPeerAddress, peer);
  m.add(attr::kData, data);
  ++stats_.send_indications;
  return stun::encode(m);
}

bool Client::has_permission(const SocketAddress& peer) const {
  auto it = permissions_.find(ip_only(peer));
  return it != permissions_.end() && it->second.installed;
}

std::optional<std::uint16_t> Client::channel(const SocketAddress& peer) const {
  auto it = channels_.find(peer);
  if (it == channels_.end() || !it->second.bound) return std::nullopt;
  return it->second.number;
}

std::optional<Inner> Client::handle_datagram(ByteView data, Timestamp now) {
  if (!data.empty() && data[0] >= 0x40 && data[0] <= 0x4F) {
    auto cd = decode_channel_data(data);
    if (!cd) {
      ++stats_.bad_messages;
      return std::nullopt;
    }
    auto it = channel_peers_.find(cd->channel);
    if (it == channel_peers_.end() || state_ != State::allocated) {
      ++stats_.bad_messages;
      return std::nullopt;
    }
    ++stats_.channel_data_received;
    return Inner{it->second, Bytes(cd->data.begin(), cd->data.end()), true};
  }
  auto m = stun::decode(data);
  if (!m) {
    ++stats_.bad_messages;
    return std::nullopt;
  }
  if (m->message_class == stun::MessageClass::Indication) {
    if (m->method != method::kData || state_ != State::allocated) {
      ++stats_.bad_messages;
      return std::nullopt;
    }
    auto peer = m->xor_address(attr::kXorPeerAddress);
    const auto* payload = m->find(attr::kData);
    if (!peer || !*peer || !payload) {
      ++stats_.bad_messages;
      return std::nullopt;
    }
    ++stats_.data_indications;
    return Inner{**peer, payload->value, false};
  }
  if (m->message_class == stun::MessageClass::Request) {
    ++stats_.bad_messages;
    return std::nullopt;
  }
  handle_response(*m, now);
  return std::nullopt;
}

bool Client::response_authentic(const stun::Message& m) const {
  if (key_.empty()) return false;
  if (m.find(stun::attr::kMessageIntegritySha256))
    return stun::check_integrity_sha256(m, key_) == stun::IntegrityCheck::Ok;
  return stun::check_integrity(m, key_) == stun::IntegrityCheck::Ok;
}

void Client::handle_response(const stun::Message& m, Timestamp now) {
  auto it = pending_.find(m.transaction_id);
  if (it == pending_.end()) {
    ++stats_.unmatched;
    return;
  }
  Pending& p = it->second;
  if (m.method != p.request.method) {
    ++stats_.bad_messages;
    return;
  }
  auto err = m.error();
  const int code = (m.message_class == stun::MessageClass::ErrorResponse && err && *err) ? (*err)->code : 0;

  // The challenges come unsigned: 401 before we know the realm, 438 when the nonce aged.
  if (code == stun::error_code::kUnauthenticated || code == error_code::kStaleNonce) {
    auto realm = m.string(stun::attr::kRealm);
    auto nonce = m.string(stun::attr::kNonce);
    if (!nonce || (code == stun::error_code::kUnauthenticated && !realm)) {
      ++stats_.bad_messages;
      return;  // the transaction keeps retransmitting; a forged challenge does not end it
    }
    const bool already_signed = p.signed_request;
    if (code == stun::error_code::kUnauthenticated && already_signed && realm && *realm == realm_ && *nonce == nonce_) {
      // Signed with what the server asked for and still refused: wrong credentials.
      Pending done = std::move(p);
      pending_.erase(it);
      failed(done, code, describe(m) + " (credentials refused)");
      return;
    }
    if (code == error_code::kStaleNonce) {
      ++stats_.stale_nonces;
      if (p.nonce_retries >= config_.max_nonce_retries) {
        Pending done = std::move(p);
        pending_.erase(it);
        failed(done, code, describe(m) + " (repeated stale nonce)");
        return;
      }
    } else {
      ++stats_.auth_challenges;
    }
    nonce_ = *nonce;
    if (realm) realm_ = *realm;
    // RFC 8489 9.2.4: PASSWORD-ALGORITHMS offered (with the nonce cookie) selects SHA-256 if listed.
    if (const auto* algs = m.find(stun::attr::kPasswordAlgorithms)) {
      offer_algorithms_ = true;
      algorithms_value_ = algs->value;
      algorithm_ = PasswordAlgorithm::md5;
      for (std::size_t off = 0; off + 4 <= algs->value.size();) {
        const auto a = static_cast<std::uint16_t>((algs->value[off] << 8) | algs->value[off + 1]);
        const std::size_t plen = (std::size_t{algs->value[off + 2]} << 8) | algs->value[off + 3];
        if (a == static_cast<std::uint16_t>(PasswordAlgorithm::sha256)) algorithm_ = PasswordAlgorithm::sha256;
        off += 4 + ((plen + 3) & ~std::size_t{3});
      }
    }
    key_ = long_term_key(config_.credentials, realm_, algorithm_);
    // A new transaction (new ID) for the same request, signed with what we know now.
    Pending again = std::move(p);
    pending_.erase(it);
    if (code == error_code::kStaleNonce) ++again.nonce_retries;
    again.request.transaction_id = new_id();
    launch(std::move(again), now);
    return;
  }

  if (!response_authentic(m)) {
    // Unsigned or forged: ignore it; the real answer may still come.
    ++stats_.bad_messages;
    return;
  }
  if (!p.transaction.handle_response(m)) {
    ++stats_.bad_messages;
    return;
  }
  Pending done = std::move(p);
  pending_.erase(it);
  if (code != 0)
    failed(done, code, describe(m));
  else
    finished(done, m, now);
}

void Client::finished(Pending& p, const stun::Message& m, Timestamp now) {
  switch (p.kind) {
    case Kind::allocate: {
      auto relayed = m.xor_address(attr::kXorRelayedAddress);
      auto mapped = m.xor_address(stun::attr::kXorMappedAddress);
      auto lifetime = m.u32(attr::kLifetime);
      if (!relayed || !*relayed) {
        state_ = State::failed;
        events_.push_back(AllocationFailed{0, "Allocate success without XOR-RELAYED-ADDRESS"});
        return;
      }
      relayed_ = **relayed;
      if (mapped && *mapped) mapped_ = **mapped;
      lifetime_s_ = (lifetime && *lifetime) ? **lifetime : config_.requested_lifetime_s;
      state_ = State::allocated;
      break;
    }
    case Kind::refresh:
      if (p.lifetime == 0) {
        events_.push_back(Released{});
        return;
      }
      if (auto lifetime = m.u32(attr::kLifetime); lifetime && *lifetime) lifetime_s_ = **lifetime;
      ++stats_.refreshes;
      break;
    case Kind::permission: {
      auto& perm = permissions_[p.peer];
      perm.pending = false;
      perm.installed = true;
      perm.refresh_at = now + config_.permission_refresh;
      events_.push_back(PermissionResult{p.peer, true, {}});
      return;
    }
    case Kind::channel_bind: {
      auto& c = channels_[p.peer];
      c.pending = false;
      c.bound = true;
      c.refresh_at = now + config_.channel_refresh;
      // A ChannelBind renews the IP's permission as well (RFC 8656 12.2).
      auto& perm = permissions_[ip_only(p.peer)];
      perm.installed = true;
      perm.refresh_at = std::max(perm.refresh_at, now + config_.permission_refresh);
      events_.push_back(ChannelResult{p.peer, c.number, true, {}});
      return;
    }
  }
  // Allocation made or refreshed: next refresh at 80 % of the lifetime, at most 60 s before it ends.
  const Timestamp life = Timestamp{lifetime_s_} * kNanosPerSecond;
  refresh_at_ = now + std::max(life * 4 / 5, life > 60 * kNanosPerSecond ? life - 60 * kNanosPerSecond : 0);
  if (p.kind == Kind::allocate) {
    events_.push_back(Allocated{*relayed_, mapped_.value_or(SocketAddress{}), lifetime_s_, now - started_});
    // What was asked for before the allocation existed.
    for (auto& [ip, perm] : permissions_)
      if (!perm.installed && !perm.pending && !perm.forbidden) send_permission(ip, now);
    for (auto& [peer, c] : channels_)
      if (!c.bound && !c.pending) send_channel_bind(peer, now);
  }
}

void Client::failed(Pending& p, int code, std::string reason) {
  switch (p.kind) {
    case Kind::allocate:
      state_ = State::failed;
      events_.push_back(AllocationFailed{code, std::move(reason)});
      return;
    case Kind::refresh:
      if (p.lifetime == 0) {
        events_.push_back(Released{});
        return;
      }
      state_ = State::failed;
      refresh_at_.reset();
      events_.push_back(AllocationLost{"refresh failed: " + reason});
      return;
    case Kind::permission: {
      auto& perm = permissions_[p.peer];
      perm.pending = false;
      perm.installed = false;
      // 403 (Forbidden IP: coturn's denied-peer-ip, e.g. a peer's private
      // host address) is the server's policy, not a loss: not asked again.
      perm.forbidden = code == 403;
      events_.push_back(PermissionResult{p.peer, false, std::move(reason)});
      return;
    }
    case Kind::channel_bind: {
      auto& c = channels_[p.peer];
      c.pending = false;
      c.bound = false;
      events_.push_back(ChannelResult{p.peer, c.number, false, std::move(reason)});
      return;
    }
  }
}

std::optional<Timestamp> Client::expiry() const {
  std::optional<Timestamp> e;
  auto take = [&e](Timestamp t) { e = e ? std::min(*e, t) : t; };
  for (const auto& [id, p] : pending_)
    if (auto t = p.transaction.expiry()) take(*t);
  if (state_ == State::allocated) {
    if (refresh_at_) take(*refresh_at_);
    for (const auto& [ip, perm] : permissions_)
      if (perm.installed && !perm.pending) take(perm.refresh_at);
    for (const auto& [peer, c] : channels_)
      if (c.bound && !c.pending) take(c.refresh_at);
  }
  return e;
}

void Client::handle_expiry(Timestamp now) {
  std::vector<stun::TransactionId> timed_out;
  for (auto& [id, p] : pending_) {
    p.transaction.handle_expiry(now);
    if (auto bytes = p.transaction.poll_transmit(now)) {
      out_.push_back(std::move(*bytes));
      ++stats_.requests_sent;
    }
    if (p.transaction.state() == stun::ClientTransaction::State::TimedOut) timed_out.push_back(id);
  }
  for (const auto& id : timed_out) {
    auto node = pending_.extract(id);
    failed(node.mapped(), 0,
           fmt::format("no answer after {} transmissions", node.mapped().transaction.transmissions()));
  }
  if (state_ != State::allocated) return;
  if (refresh_at_ && now >= *refresh_at_) {
    refresh_at_.reset();
    auto m = request(method::kRefresh);
    m.add_u32(attr::kLifetime, config_.requested_lifetime_s);
    send(Kind::refresh, std::move(m), now, {}, config_.requested_lifetime_s);
  }
  for (auto& [ip, perm] : permissions_)
    if (perm.installed && !perm.pending && now >= perm.refresh_at) send_permission(ip, now);
  for (auto& [peer, c] : channels_)
    if (c.bound && !c.pending && now >= c.refresh_at) send_channel_bind(peer, now);
}

}  // namespace quiclab::turn
