#include "p2p/stun.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace quiclab::stun {

namespace {

std::uint16_t load16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }
std::uint32_t load32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
void store16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
void store32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}
void push16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void push32(Bytes& b, std::uint32_t v) {
  push16(b, static_cast<std::uint16_t>(v >> 16));
  push16(b, static_cast<std::uint16_t>(v));
}
std::size_t padded(std::size_t n) { return (n + 3) & ~std::size_t{3}; }

Error decode_error(DecodeError e, std::string message) {
  return make_error(ErrorDomain::stun, static_cast<int>(e), std::move(message));
}
Error bad_value(std::uint16_t type, std::string_view what) {
  return decode_error(DecodeError::BadAttributeValue, fmt::format("{}: {}", attr::name(type), what));
}

// The 14-bit message type interleaves the method's 12 bits with the 2 class bits
// (RFC 8489 section 5, figure 3).
std::uint16_t message_type(std::uint16_t m, MessageClass c) {
  auto cls = static_cast<std::uint16_t>(c);
  return static_cast<std::uint16_t>(((m & 0xF80) << 2) | ((m & 0x070) << 1) | (m & 0x00F) | ((cls & 2) << 7) |
                                    ((cls & 1) << 4));
}

void append_attribute(Bytes& out, std::uint16_t type, ByteView value) {
  push16(out, type);
  push16(out, static_cast<std::uint16_t>(value.size()));
  append(out, value);
  out.resize(out.size() + padded(value.size()) - value.size(), 0);
}

// Address attributes share one layout; `x` XORs port and address with the
// cookie (and the transaction ID for IPv6) as XOR-MAPPED-ADDRESS does.
Bytes address_value(const SocketAddress& a, const Message* x) {
  Bytes v;
  v.push_back(0);
  std::uint16_t port = a.port();
  if (x) port ^= static_cast<std::uint16_t>(kMagicCookie >> 16);
  if (a.is_v6()) {
    v.push_back(0x02);
    push16(v, port);
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.sa());
    std::uint8_t bytes[16];
    std::memcpy(bytes, &in6->sin6_addr, 16);
    if (x) {
      std::uint8_t mask[16];
      store32(mask, kMagicCookie);
      std::memcpy(mask + 4, x->transaction_id.data(), 12);
      for (int i = 0; i < 16; ++i) bytes[i] ^= mask[i];
    }
    v.insert(v.end(), bytes, bytes + 16);
  } else {
    v.push_back(0x01);
    push16(v, port);
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(a.sa());
    std::uint32_t ip = ntohl(in4->sin_addr.s_addr);
    if (x) ip ^= kMagicCookie;
    push32(v, ip);
  }
  return v;
}

Result<SocketAddress> parse_address(std::uint16_t type, ByteView v, const Message* x) {
  if (v.size() < 4) return bad_value(type, "shorter than 4 bytes");
  std::uint8_t family = v[1];
  std::uint16_t port = load16(&v[2]);
  if (x) port ^= static_cast<std::uint16_t>(kMagicCookie >> 16);
  if (family == 0x01) {
    if (v.size() != 8) return bad_value(type, fmt::format("IPv4 value is {} bytes, not 8", v.size()));
    sockaddr_in in4{};
    in4.sin_family = AF_INET;
    in4.sin_port = htons(port);
    std::uint32_t ip = load32(&v[4]);
    if (x) ip ^= kMagicCookie;
    in4.sin_addr.s_addr = htonl(ip);
    return SocketAddress(reinterpret_cast<const sockaddr*>(&in4));
  }
  if (family == 0x02) {
    if (v.size() != 20) return bad_value(type, fmt::format("IPv6 value is {} bytes, not 20", v.size()));
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    std::uint8_t bytes[16];
    std::memcpy(bytes, &v[4], 16);
    if (x) {
      std::uint8_t mask[16];
      store32(mask, kMagicCookie);
      std::memcpy(mask + 4, x->transaction_id.data(), 12);
      for (int i = 0; i < 16; ++i) bytes[i] ^= mask[i];
    }
    std::memcpy(&in6.sin6_addr, bytes, 16);
    return SocketAddress(reinterpret_cast<const sockaddr*>(&in6));
  }
  return bad_value(type, fmt::format("unknown address family 0x{:02x}", family));
}

// HMAC over the message prefix [0, end) with the header length rewritten to
// `length_field`, as RFC 8489 section 14.5/14.6 require.
Bytes hmac_prefix(const EVP_MD* md, ByteView key, ByteView message, std::size_t end, std::size_t length_field) {
  Bytes prefix(message.begin(), message.begin() + static_cast<std::ptrdiff_t>(end));
  store16(&prefix[2], static_cast<std::uint16_t>(length_field));
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int out_len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()), prefix.data(), prefix.size(), out.data(), &out_len);
  out.resize(out_len);
  return out;
}

}  // namespace

std::string_view to_string(MessageClass c) {
  switch (c) {
    case MessageClass::Request:
      return "request";
    case MessageClass::Indication:
      return "indication";
    case MessageClass::SuccessResponse:
      return "success response";
    case MessageClass::ErrorResponse:
      return "error response";
  }
  return "?";
}

std::string_view to_string(IntegrityCheck c) {
  switch (c) {
    case IntegrityCheck::Ok:
      return "ok";
    case IntegrityCheck::Missing:
      return "missing";
    case IntegrityCheck::Mismatch:
      return "mismatch";
    case IntegrityCheck::Malformed:
      return "malformed";
  }
  return "?";
}

std::string attr::name(std::uint16_t type) {
  switch (type) {
    case kMappedAddress:
      return "MAPPED-ADDRESS";
    case kResponseAddress:
      return "RESPONSE-ADDRESS";
    case kChangeRequest:
      return "CHANGE-REQUEST";
    case kSourceAddress:
      return "SOURCE-ADDRESS";
    case kChangedAddress:
      return "CHANGED-ADDRESS";
    case kUsername:
      return "USERNAME";
    case kMessageIntegrity:
      return "MESSAGE-INTEGRITY";
    case kErrorCode:
      return "ERROR-CODE";
    case kUnknownAttributes:
      return "UNKNOWN-ATTRIBUTES";
    case kRealm:
      return "REALM";
    case kNonce:
      return "NONCE";
    case kMessageIntegritySha256:
      return "MESSAGE-INTEGRITY-SHA256";
    case kPasswordAlgorithm:
      return "PASSWORD-ALGORITHM";
    case kUserhash:
      return "USERHASH";
    case kXorMappedAddress:
      return "XOR-MAPPED-ADDRESS";
    // TURN (RFC 8656); the constants live in p2p/turn_client.hpp.
    case 0x000C:
      return "CHANNEL-NUMBER";
    case 0x000D:
      return "LIFETIME";
    case 0x0012:
      return "XOR-PEER-ADDRESS";
    case 0x0013:
      return "DATA";
    case 0x0016:
      return "XOR-RELAYED-ADDRESS";
    case 0x0017:
      return "REQUESTED-ADDRESS-FAMILY";
    case 0x0018:
      return "EVEN-PORT";
    case 0x0019:
      return "REQUESTED-TRANSPORT";
    case 0x001A:
      return "DONT-FRAGMENT";
    case 0x0022:
      return "RESERVATION-TOKEN";
    case kPriority:
      return "PRIORITY";
    case kUseCandidate:
      return "USE-CANDIDATE";
    case kIceControlled:
      return "ICE-CONTROLLED";
    case kIceControlling:
      return "ICE-CONTROLLING";
    case kPadding:
      return "PADDING";
    case kResponsePort:
      return "RESPONSE-PORT";
    case kPasswordAlgorithms:
      return "PASSWORD-ALGORITHMS";
    case kAlternateDomain:
      return "ALTERNATE-DOMAIN";
    case kSoftware:
      return "SOFTWARE";
    case kAlternateServer:
      return "ALTERNATE-SERVER";
    case kFingerprint:
      return "FINGERPRINT";
    case kResponseOrigin:
      return "RESPONSE-ORIGIN";
    case kOtherAddress:
      return "OTHER-ADDRESS";
    case kPeerName:
      return "PEER-NAME";
    case kHostCandidate:
      return "HOST-CANDIDATE";
    case kLifetime:
      return "LIFETIME";
    case kReflexiveCandidate:
      return "REFLEXIVE-CANDIDATE";
    case kRegistrationKey:
      return "REGISTRATION-KEY";
    case kIceUfrag:
      return "ICE-UFRAG";
    case kIcePassword:
      return "ICE-PASSWORD";
    case kTieBreaker:
      return "TIE-BREAKER";
    case kCertFingerprint:
      return "CERT-FINGERPRINT";
    case kWait:
      return "WAIT";
    case kRelayCandidate:
      return "RELAY-CANDIDATE";
    case kBirthday:
      return "BIRTHDAY";
    case kIntroductionId:
      return "INTRODUCTION-ID";
    default:
      return fmt::format("0x{:04x}", type);
  }
}

const Attribute* Message::find(std::uint16_t type) const {
  for (const auto& a : attributes) {
    if (a.type == type) return &a;
  }
  return nullptr;
}

std::size_t Message::count(std::uint16_t type) const {
  return static_cast<std::size_t>(
      std::count_if(attributes.begin(), attributes.end(), [&](const Attribute& a) { return a.type == type; }));
}

void Message::add(std::uint16_t type, ByteView value) {
  attributes.push_back(Attribute{type, Bytes(value.begin(), value.end()), 0});
}

void Message::add_u32(std::uint16_t type, std::uint32_t value) {
  Bytes v;
  push32(v, value);
  add(type, v);
}

void Message::add_u64(std::uint16_t type, std::uint64_t value) {
  Bytes v;
  push32(v, static_cast<std::uint32_t>(value >> 32));
  push32(v, static_cast<std::uint32_t>(value));
  add(type, v);
}

void Message::add_address(std::uint16_t type, const SocketAddress& address) {
  add(type, address_value(address, nullptr));
}
void Message::add_xor_address(std::uint16_t type, const SocketAddress& address) {
  add(type, address_value(address, this));
}

void Message::add_error_code(int code, std::string_view reason) {
  Bytes v{0, 0, static_cast<std::uint8_t>(code / 100), static_cast<std::uint8_t>(code % 100)};
  append(v, as_bytes(reason));
  add(attr::kErrorCode, v);
}

void Message::add_unknown_attributes(const std::vector<std::uint16_t>& types) {
  Bytes v;
  for (auto t : types) push16(v, t);
  add(attr::kUnknownAttributes, v);
}

void Message::add_change_request(bool change_ip, bool change_port) {
  add_u32(attr::kChangeRequest, (change_ip ? 0x4u : 0u) | (change_port ? 0x2u : 0u));
}

void Message::add_response_port(std::uint16_t port) { add_u32(attr::kResponsePort, std::uint32_t{port} << 16); }

Result<std::optional<SocketAddress>> Message::address(std::uint16_t type) const {
  const auto* a = find(type);
  if (!a) return std::optional<SocketAddress>{};
  auto r = parse_address(type, a->value, nullptr);
  if (!r) return r.error();
  return std::optional<SocketAddress>{*r};
}

Result<std::optional<SocketAddress>> Message::xor_address(std::uint16_t type) const {
  const auto* a = find(type);
  if (!a) return std::optional<SocketAddress>{};
  auto r = parse_address(type, a->value, this);
  if (!r) return r.error();
  return std::optional<SocketAddress>{*r};
}

Result<std::vector<SocketAddress>> Message::xor_addresses(std::uint16_t type) const {
  std::vector<SocketAddress> out;
  for (const auto& a : attributes) {
    if (a.type != type) continue;
    auto r = parse_address(type, a.value, this);
    if (!r) return r.error();
    out.push_back(*r);
  }
  return out;
}

std::optional<std::string> Message::string(std::uint16_t type) const {
  const auto* a = find(type);
  if (!a) return std::nullopt;
  return std::string(as_string(a->value));
}

Result<std::optional<std::uint32_t>> Message::u32(std::uint16_t type) const {
  const auto* a = find(type);
  if (!a) return std::optional<std::uint32_t>{};
  if (a->value.size() != 4) return bad_value(type, fmt::format("{} bytes, not 4", a->value.size()));
  return std::optional<std::uint32_t>{load32(a->value.data())};
}

Result<std::optional<std::uint64_t>> Message::u64(std::uint16_t type) const {
  const auto* a = find(type);
  if (!a) return std::optional<std::uint64_t>{};
  if (a->value.size() != 8) return bad_value(type, fmt::format("{} bytes, not 8", a->value.size()));
  return std::optional<std::uint64_t>{(std::uint64_t{load32(a->value.data())} << 32) | load32(a->value.data() + 4)};
}

Result<std::optional<ErrorCodeValue>> Message::error() const {
  const auto* a = find(attr::kErrorCode);
  if (!a) return std::optional<ErrorCodeValue>{};
  if (a->value.size() < 4) return bad_value(attr::kErrorCode, "shorter than 4 bytes");
  int cls = a->value[2] & 0x07;
  int number = a->value[3];
  if (cls < 3 || cls > 6 || number > 99) {
    return bad_value(attr::kErrorCode, fmt::format("class {} number {} out of range", cls, number));
  }
  return std::optional<ErrorCodeValue>{
      ErrorCodeValue{cls * 100 + number, std::string(as_string(ByteView(a->value).subspan(4)))}};
}

Result<std::vector<std::uint16_t>> Message::unknown_attributes() const {
  std::vector<std::uint16_t> out;
  const auto* a = find(attr::kUnknownAttributes);
  if (!a) return out;
  if (a->value.size() % 2 != 0) return bad_value(attr::kUnknownAttributes, "odd length");
  for (std::size_t i = 0; i < a->value.size(); i += 2) out.push_back(load16(&a->value[i]));
  return out;
}

Result<std::optional<Message::ChangeRequest>> Message::change_request() const {
  auto v = u32(attr::kChangeRequest);
  if (!v) return v.error();
  if (!*v) return std::optional<ChangeRequest>{};
  return std::optional<ChangeRequest>{ChangeRequest{(**v & 0x4) != 0, (**v & 0x2) != 0}};
}

Result<std::optional<std::uint16_t>> Message::response_port() const {
  auto v = u32(attr::kResponsePort);
  if (!v) return v.error();
  if (!*v) return std::optional<std::uint16_t>{};
  return std::optional<std::uint16_t>{static_cast<std::uint16_t>(**v >> 16)};
}

Result<Message> decode(ByteView d, DecodeOptions options) {
  if (d.size() < kHeaderSize) {
    return decode_error(DecodeError::TooShort, fmt::format("{} bytes is shorter than the 20-byte header", d.size()));
  }
  if ((d[0] & 0xC0) != 0) {
    return decode_error(DecodeError::NotStun, fmt::format("first byte 0x{:02x} has its top two bits set", d[0]));
  }
  if (d.size() > kMaxMessageSize) {
    return decode_error(DecodeError::TooLarge,
                        fmt::format("{} bytes exceeds the {}-byte limit", d.size(), kMaxMessageSize));
  }
  std::size_t length = load16(&d[2]);
  if (length % 4 != 0 || length + kHeaderSize != d.size()) {
    return decode_error(DecodeError::BadLength,
                        fmt::format("header length {} does not match the {}-byte body (or is not a multiple of 4)",
                                    length, d.size() - kHeaderSize));
  }
  Message m;
  std::uint16_t type = load16(&d[0]);
  m.method = static_cast<std::uint16_t>(((type >> 2) & 0xF80) | ((type >> 1) & 0x070) | (type & 0x00F));
  m.message_class = static_cast<MessageClass>(((type >> 7) & 2) | ((type >> 4) & 1));
  m.magic_cookie = load32(&d[4]);
  if (m.magic_cookie != kMagicCookie && !options.allow_legacy) {
    return decode_error(DecodeError::BadMagicCookie,
                        fmt::format("magic cookie 0x{:08x} is not 0x2112a442", m.magic_cookie));
  }
  std::memcpy(m.transaction_id.data(), &d[8], 12);

  bool after_integrity = false;
  bool after_integrity_sha256 = false;
  bool seen_fingerprint = false;
  std::size_t pos = kHeaderSize;
  while (pos < d.size()) {
    if (d.size() - pos < 4) {
      return decode_error(DecodeError::AttributeOverrun,
                          fmt::format("attribute header at offset {} is truncated", pos));
    }
    std::uint16_t at = load16(&d[pos]);
    std::size_t alen = load16(&d[pos + 2]);
    if (padded(alen) > d.size() - pos - 4) {
      return decode_error(
          DecodeError::AttributeOverrun,
          fmt::format("{} at offset {} has length {}, past the end of the message", attr::name(at), pos, alen));
    }
    if (seen_fingerprint) {
      return decode_error(DecodeError::AttributeAfterFingerprint,
                          fmt::format("{} at offset {} follows FINGERPRINT", attr::name(at), pos));
    }
    ByteView value = d.subspan(pos + 4, alen);
    if (at == attr::kFingerprint) {
      seen_fingerprint = true;
      if (alen != 4)
        return decode_error(DecodeError::BadFingerprint, fmt::format("FINGERPRINT is {} bytes, not 4", alen));
      std::uint32_t expected = fingerprint(d.first(pos));
      std::uint32_t got = load32(value.data());
      if (got != expected) {
        return decode_error(DecodeError::BadFingerprint,
                            fmt::format("FINGERPRINT 0x{:08x} does not match the computed 0x{:08x}", got, expected));
      }
    }
    // RFC 8489 14.5/14.6: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and
    // FINGERPRINT count; after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT.
    bool ignored = (after_integrity_sha256 && at != attr::kFingerprint) ||
                   (after_integrity && at != attr::kFingerprint && at != attr::kMessageIntegritySha256);
    if (!ignored) m.attributes.push_back(Attribute{at, Bytes(value.begin(), value.end()), pos});
    if (at == attr::kMessageIntegrity) after_integrity = true;
    if (at == attr::kMessageIntegritySha256) after_integrity_sha256 = true;
    pos += 4 + padded(alen);
  }
  m.raw.assign(d.begin(), d.end());
  return m;
}

Bytes encode(const Message& m, const EncodeOptions& options) {
  Bytes out;
  out.reserve(kHeaderSize + 64);
  push16(out, message_type(m.method, m.message_class));
  push16(out, 0);
  push32(out, m.magic_cookie);
  out.insert(out.end(), m.transaction_id.begin(), m.transaction_id.end());
  for (const auto& a : m.attributes) append_attribute(out, a.type, a.value);
  if (options.integrity_key) {
    auto mac = hmac_prefix(EVP_sha1(), *options.integrity_key, out, out.size(), out.size() - kHeaderSize + 24);
    append_attribute(out, attr::kMessageIntegrity, mac);
  }
  if (options.integrity_sha256_key) {
    auto mac = hmac_prefix(EVP_sha256(), *options.integrity_sha256_key, out, out.size(), out.size() - kHeaderSize + 36);
    append_attribute(out, attr::kMessageIntegritySha256, mac);
  }
  if (options.fingerprint) {
    // The CRC covers the header with a length that already counts FINGERPRINT.
    store16(&out[2], static_cast<std::uint16_t>(out.size() - kHeaderSize + 8));
    std::uint32_t crc = fingerprint(out);
    Bytes v(4);
    store32(v.data(), crc);
    append_attribute(out, attr::kFingerprint, v);
  }
  store16(&out[2], static_cast<std::uint16_t>(out.size() - kHeaderSize));
  return out;
}

IntegrityCheck check_integrity(const Message& m, ByteView key) {
  const auto* a = m.find(attr::kMessageIntegrity);
  if (!a || m.raw.empty()) return IntegrityCheck::Missing;
  if (a->value.size() != 20) return IntegrityCheck::Malformed;
  auto mac = hmac_prefix(EVP_sha1(), key, m.raw, a->offset, a->offset - kHeaderSize + 24);
  return CRYPTO_memcmp(mac.data(), a->value.data(), 20) == 0 ? IntegrityCheck::Ok : IntegrityCheck::Mismatch;
}

IntegrityCheck check_integrity_sha256(const Message& m, ByteView key) {
  const auto* a = m.find(attr::kMessageIntegritySha256);
  if (!a || m.raw.empty()) return IntegrityCheck::Missing;
  std::size_t n = a->value.size();
  if (n < 16 || n > 32 || n % 4 != 0) return IntegrityCheck::Malformed;
  auto mac = hmac_prefix(EVP_sha256(), key, m.raw, a->offset, a->offset - kHeaderSize + 4 + n);
  return CRYPTO_memcmp(mac.data(), a->value.data(), n) == 0 ? IntegrityCheck::Ok : IntegrityCheck::Mismatch;
}

std::uint32_t fingerprint(ByteView data) {
  auto crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, data.data(), static_cast<uInt>(data.size()));
  return static_cast<std::uint32_t>(crc) ^ kFingerprintXor;
}

std::vector<std::uint16_t> unknown_comprehension_required(const Message& m, const std::vector<std::uint16_t>& known) {
  std::vector<std::uint16_t> out;
  for (const auto& a : m.attributes) {
    if (!attr::is_comprehension_required(a.type)) continue;
    if (std::find(known.begin(), known.end(), a.type) != known.end()) continue;
    if (std::find(out.begin(), out.end(), a.type) == out.end()) out.push_back(a.type);
  }
  return out;
}

Message make_response(const Message& request, MessageClass cls) {
  Message r;
  r.message_class = cls;
  r.method = request.method;
  r.magic_cookie = request.magic_cookie;
  r.transaction_id = request.transaction_id;
  return r;
}

TransactionId random_transaction_id() {
  TransactionId id{};
  if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1) {
    // RAND_bytes fails only when the OS entropy source is broken; a predictable
    // ID would let off-path attackers forge responses, so refuse to continue.
    std::abort();
  }
  return id;
}

}  // namespace quiclab::stun
