// STUN (RFC 8489) message codec, sans-IO: bytes in, typed messages out, and back.
//
// The codec covers the header (class, method, magic cookie, transaction ID), the
// attributes of RFC 8489 (MAPPED-ADDRESS, XOR-MAPPED-ADDRESS, USERNAME,
// MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT, ERROR-CODE,
// UNKNOWN-ATTRIBUTES, SOFTWARE, REALM, NONCE) and of RFC 5780 (CHANGE-REQUEST,
// RESPONSE-ORIGIN, OTHER-ADDRESS, RESPONSE-PORT, PADDING), plus the RFC 3489
// SOURCE-ADDRESS and CHANGED-ADDRESS that classic clients still expect.
//
// Decoding never throws: every malformed input gives an Error whose code is a
// DecodeError and whose message says what was wrong and where.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/result.hpp"

namespace quiclab::stun {

inline constexpr std::uint32_t kMagicCookie = 0x2112A442;
inline constexpr std::uint32_t kFingerprintXor = 0x5354554e;
inline constexpr std::size_t kHeaderSize = 20;
/// Largest message the codec accepts or produces (fits one UDP datagram on any path we use).
inline constexpr std::size_t kMaxMessageSize = 8192;

/// The class bits C1 C0 of the message type.
enum class MessageClass : std::uint8_t {
  Request = 0,
  Indication = 1,
  SuccessResponse = 2,
  ErrorResponse = 3,
};
std::string_view to_string(MessageClass c);

/// Methods (12 bits). Binding is RFC 8489's; 0xA01..0xA05 are quiclab's rendezvous
/// methods in the Designated-Expert range (see docs/rendezvous-protocol.md).
namespace method {
inline constexpr std::uint16_t kBinding = 0x001;
inline constexpr std::uint16_t kRegister = 0xA01;
inline constexpr std::uint16_t kRefresh = 0xA02;
inline constexpr std::uint16_t kLookup = 0xA03;
inline constexpr std::uint16_t kIntroduce = 0xA04;
inline constexpr std::uint16_t kPeerIntroduction = 0xA05;
inline constexpr std::uint16_t kIntroductionResult = 0xA06;
}  // namespace method

/// Attribute types. 0x0000-0x7FFF are comprehension-required, 0x8000-0xFFFF optional.
namespace attr {
inline constexpr std::uint16_t kMappedAddress = 0x0001;
inline constexpr std::uint16_t kResponseAddress = 0x0002;  // RFC 3489, obsolete
inline constexpr std::uint16_t kChangeRequest = 0x0003;    // RFC 5780
inline constexpr std::uint16_t kSourceAddress = 0x0004;    // RFC 3489
inline constexpr std::uint16_t kChangedAddress = 0x0005;   // RFC 3489
inline constexpr std::uint16_t kUsername = 0x0006;
inline constexpr std::uint16_t kMessageIntegrity = 0x0008;
inline constexpr std::uint16_t kErrorCode = 0x0009;
inline constexpr std::uint16_t kUnknownAttributes = 0x000A;
inline constexpr std::uint16_t kRealm = 0x0014;
inline constexpr std::uint16_t kNonce = 0x0015;
inline constexpr std::uint16_t kMessageIntegritySha256 = 0x001C;
inline constexpr std::uint16_t kPasswordAlgorithm = 0x001D;
inline constexpr std::uint16_t kUserhash = 0x001E;
inline constexpr std::uint16_t kXorMappedAddress = 0x0020;
inline constexpr std::uint16_t kPriority = 0x0024;      // RFC 8445 (ICE)
inline constexpr std::uint16_t kUseCandidate = 0x0025;  // RFC 8445
inline constexpr std::uint16_t kPadding = 0x0026;       // RFC 5780
inline constexpr std::uint16_t kResponsePort = 0x0027;  // RFC 5780
inline constexpr std::uint16_t kPasswordAlgorithms = 0x8002;
inline constexpr std::uint16_t kAlternateDomain = 0x8003;
inline constexpr std::uint16_t kSoftware = 0x8022;
inline constexpr std::uint16_t kAlternateServer = 0x8023;
inline constexpr std::uint16_t kFingerprint = 0x8028;
inline constexpr std::uint16_t kResponseOrigin = 0x802B;  // RFC 5780
inline constexpr std::uint16_t kOtherAddress = 0x802C;    // RFC 5780
inline constexpr std::uint16_t kIceControlled = 0x8029;   // RFC 8445, u64 tie-breaker
inline constexpr std::uint16_t kIceControlling = 0x802A;  // RFC 8445, u64 tie-breaker

// quiclab rendezvous attributes (Designated-Expert ranges; docs/rendezvous-protocol.md).
inline constexpr std::uint16_t kPeerName = 0x4A01;            ///< UTF-8 name of another peer
inline constexpr std::uint16_t kHostCandidate = 0x4A02;       ///< XOR-encoded address, may repeat
inline constexpr std::uint16_t kLifetime = 0x4A03;            ///< u32 seconds
inline constexpr std::uint16_t kReflexiveCandidate = 0x4A04;  ///< XOR-encoded address
inline constexpr std::uint16_t kRegistrationKey = 0x4A05;     ///< 32-byte key, first Register only
inline constexpr std::uint16_t kIceUfrag = 0x4A06;            ///< ICE username fragment of one side
inline constexpr std::uint16_t kIcePassword = 0x4A07;         ///< ICE password of one side
inline constexpr std::uint16_t kTieBreaker = 0x4A08;          ///< u64, ICE tie-breaker of one side
inline constexpr std::uint16_t kCertFingerprint = 0x4A09;     ///< SHA-256 of one side's certificate (32 bytes)
inline constexpr std::uint16_t kWait = 0x4A0A;                ///< u32 seconds: hold an Introduce for an absent peer
inline constexpr std::uint16_t kIntroductionId = 0x4A0B;      ///< u64, names one introduction end to end
inline constexpr std::uint16_t kRelayCandidate = 0x4A0C;  ///< XOR-encoded TURN relayed address of one side (optional)
inline constexpr std::uint16_t kBirthday = 0x4A0D;        ///< u32, one side's NAT mapping: birthday punching (optional)

/// True for 0x0000-0x7FFF.
constexpr bool is_comprehension_required(std::uint16_t type) { return type < 0x8000; }
/// Name for logs ("XOR-MAPPED-ADDRESS", or "0x4abc" when unknown).
std::string name(std::uint16_t type);
}  // namespace attr

/// Error codes used in ERROR-CODE (RFC 8489 section 14.8 and the rendezvous protocol).
namespace error_code {
inline constexpr int kTryAlternate = 300;
inline constexpr int kBadRequest = 400;
inline constexpr int kUnauthenticated = 401;
inline constexpr int kForbidden = 403;
inline constexpr int kNotFound = 404;
inline constexpr int kUnknownAttribute = 420;
inline constexpr int kQuotaReached = 486;
inline constexpr int kRoleConflict = 487;  ///< RFC 8445 section 7.3.1.1
inline constexpr int kNotDelivered = 408;  ///< rendezvous: the introduction did not reach the peer
inline constexpr int kServerError = 500;
}  // namespace error_code

/// Why decode() refused a datagram; the Error's code holds one of these.
enum class DecodeError : int {
  TooShort = 1,      ///< fewer than 20 bytes
  NotStun,           ///< first two bits not zero
  BadLength,         ///< header length not a multiple of 4, or != datagram size - 20
  TooLarge,          ///< above kMaxMessageSize
  BadMagicCookie,    ///< cookie wrong and legacy (RFC 3489) decoding not allowed
  AttributeOverrun,  ///< an attribute's length runs past the end of the message
  BadFingerprint,    ///< FINGERPRINT present but its CRC does not match
  AttributeAfterFingerprint,
  BadAttributeValue,  ///< a known attribute has a malformed value (for typed getters)
};

using TransactionId = std::array<std::uint8_t, 12>;

struct Attribute {
  std::uint16_t type = 0;
  Bytes value;
  /// Offset of the attribute header inside the decoded datagram (set by decode();
  /// used to check MESSAGE-INTEGRITY, whose HMAC covers everything before it).
  std::size_t offset = 0;
};

/// ERROR-CODE value.
struct ErrorCodeValue {
  int code = 0;  ///< 300..699
  std::string reason;
};

/// A decoded or to-be-encoded STUN message. Attributes stay in wire order;
/// the integrity and fingerprint attributes are added by encode(), not by hand.
struct Message {
  MessageClass message_class = MessageClass::Request;
  std::uint16_t method = method::kBinding;
  /// kMagicCookie for RFC 5389/8489; anything else marks an RFC 3489 message whose
  /// 128-bit transaction ID is this field followed by transaction_id.
  std::uint32_t magic_cookie = kMagicCookie;
  TransactionId transaction_id{};
  std::vector<Attribute> attributes;
  /// The datagram this message was decoded from (empty for built messages).
  Bytes raw;

  bool is_legacy() const { return magic_cookie != kMagicCookie; }

  /// First attribute of this type (RFC 8489: only the first occurrence counts), or null.
  const Attribute* find(std::uint16_t type) const;
  /// How many attributes of this type the message carries.
  std::size_t count(std::uint16_t type) const;

  // ---- builders (append one attribute) ----
  void add(std::uint16_t type, ByteView value);
  void add_string(std::uint16_t type, std::string_view value) { add(type, as_bytes(value)); }
  void add_u32(std::uint16_t type, std::uint32_t value);
  void add_u64(std::uint16_t type, std::uint64_t value);
  /// MAPPED-ADDRESS-style (plain) address attribute.
  void add_address(std::uint16_t type, const SocketAddress& address);
  /// XOR-MAPPED-ADDRESS-style address attribute (XOR with cookie and transaction ID).
  void add_xor_address(std::uint16_t type, const SocketAddress& address);
  void add_error_code(int code, std::string_view reason);
  void add_unknown_attributes(const std::vector<std::uint16_t>& types);
  void add_change_request(bool change_ip, bool change_port);
  void add_response_port(std::uint16_t port);

  // ---- typed getters; an Error (DecodeError::BadAttributeValue) when present but malformed,
  // std::nullopt inside the Result when absent ----
  Result<std::optional<SocketAddress>> address(std::uint16_t type) const;
  Result<std::optional<SocketAddress>> xor_address(std::uint16_t type) const;
  /// Every occurrence of an XOR-encoded address attribute (e.g. HOST-CANDIDATE).
  Result<std::vector<SocketAddress>> xor_addresses(std::uint16_t type) const;
  std::optional<std::string> string(std::uint16_t type) const;
  Result<std::optional<std::uint32_t>> u32(std::uint16_t type) const;
  Result<std::optional<std::uint64_t>> u64(std::uint16_t type) const;
  Result<std::optional<ErrorCodeValue>> error() const;
  Result<std::vector<std::uint16_t>> unknown_attributes() const;
  struct ChangeRequest {
    bool change_ip = false;
    bool change_port = false;
  };
  Result<std::optional<ChangeRequest>> change_request() const;
  Result<std::optional<std::uint16_t>> response_port() const;
};

/// Options for decode().
struct DecodeOptions {
  /// Accept messages without the magic cookie as RFC 3489 messages (a server that
  /// answers classic clients needs this; clients do not).
  bool allow_legacy = false;
};

/// Parses one datagram. Checks the header, walks the attributes (padding to 4
/// bytes), verifies FINGERPRINT when present, and ignores attributes after
/// MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (RFC 8489
/// section 14.5). Does NOT check MESSAGE-INTEGRITY: that needs the key, see
/// check_integrity(). Errors: code = DecodeError, message = what and where.
Result<Message> decode(ByteView datagram, DecodeOptions options = {});

/// What encode() appends after the message's own attributes.
struct EncodeOptions {
  /// Key for MESSAGE-INTEGRITY (HMAC-SHA1); for short-term credentials the password.
  std::optional<Bytes> integrity_key;
  /// Key for MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256, full 32 bytes).
  std::optional<Bytes> integrity_sha256_key;
  bool fingerprint = false;
};

/// Serialises a message. Attribute values are padded to 4 bytes with zeros.
Bytes encode(const Message& message, const EncodeOptions& options = {});

/// Result of checking a message's integrity attributes.
enum class IntegrityCheck {
  Ok,
  Missing,    ///< the requested integrity attribute is absent
  Mismatch,   ///< present but the HMAC does not match the key
  Malformed,  ///< wrong length
};
std::string_view to_string(IntegrityCheck c);

/// Checks MESSAGE-INTEGRITY (HMAC-SHA1) of a decoded message against key.
IntegrityCheck check_integrity(const Message& message, ByteView key);
/// Checks MESSAGE-INTEGRITY-SHA256 (possibly truncated to 16..32 bytes) against key.
IntegrityCheck check_integrity_sha256(const Message& message, ByteView key);

/// CRC-32 of data XOR 0x5354554e, as FINGERPRINT carries it.
std::uint32_t fingerprint(ByteView data);

/// RFC 7983 demultiplexing: true when a datagram's first byte is 0..3 (STUN range).
inline bool looks_like_stun(ByteView datagram) { return datagram.size() >= kHeaderSize && datagram[0] < 4; }

/// Attribute types in `message` that are comprehension-required but not in `known`
/// (for a 420 response's UNKNOWN-ATTRIBUTES), without duplicates.
std::vector<std::uint16_t> unknown_comprehension_required(const Message& message,
                                                          const std::vector<std::uint16_t>& known);

/// A response skeleton to `request`: same method and transaction ID, given class.
Message make_response(const Message& request, MessageClass cls);

/// Fills a transaction ID from OpenSSL's RAND_bytes.
TransactionId random_transaction_id();

}  // namespace quiclab::stun
