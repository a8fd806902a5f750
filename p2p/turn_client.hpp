// A TURN client (RFC 8656, UDP to the server) for the peer's one socket, sans-IO.
//
// Datagrams from the TURN server, application data and a timestamp in;
// datagrams for the server, inner datagrams from peers, events and the next
// deadline out. The owner sends what take_datagrams() returns to the server
// address and calls handle_expiry() at expiry().
//
// What it does:
//   - Allocate (REQUESTED-TRANSPORT UDP) with long-term credentials: the first
//     request goes without them, the 401 brings REALM and NONCE, the retry is
//     signed. MESSAGE-INTEGRITY (HMAC-SHA1, key MD5(user:realm:password)) by
//     default; when the 401 offers PASSWORD-ALGORITHMS with SHA-256 (RFC 8489
//     9.2.4) the requests carry PASSWORD-ALGORITHMS and PASSWORD-ALGORITHM and
//     are signed with MESSAGE-INTEGRITY-SHA256 (key SHA-256(user:realm:password)).
//     438 (stale nonce) takes the new NONCE and repeats, a bounded number of
//     times; every signed request does this, not only Allocate.
//   - Responses are accepted only when their integrity checks with our key
//     (an unsigned 401/438 excepted: that is how the server asks for it).
//   - Refresh before the allocation expires (at 80 % of its lifetime, at most
//     60 s before); release() sends Refresh with LIFETIME 0.
//   - CreatePermission per peer IP (TURN permissions ignore the port), renewed
//     every 240 s (lifetime 300 s); ChannelBind per peer address, renewed every
//     540 s (lifetime 600 s), which renews the IP's permission too.
//   - wrap(): ChannelData once the channel is bound, a Send indication before.
//     unwrap: Data indications and ChannelData become (peer, bytes).
//   - A verdict for every allocation: Allocated, or Failed with the server's
//     reason; Lost when a refresh fails or times out.
//
// The password never leaves this object except as the HMAC key; logs get the
// username at most.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "p2p/stun.hpp"
#include "p2p/stun_transaction.hpp"
#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/random.hpp"
#include "transport/core/result.hpp"

namespace quiclab::turn {

namespace method {
inline constexpr std::uint16_t kAllocate = 0x003;
inline constexpr std::uint16_t kRefresh = 0x004;
inline constexpr std::uint16_t kSend = 0x006;
inline constexpr std::uint16_t kData = 0x007;
inline constexpr std::uint16_t kCreatePermission = 0x008;
inline constexpr std::uint16_t kChannelBind = 0x009;
}  // namespace method

namespace attr {
inline constexpr std::uint16_t kChannelNumber = 0x000C;
inline constexpr std::uint16_t kLifetime = 0x000D;
inline constexpr std::uint16_t kXorPeerAddress = 0x0012;
inline constexpr std::uint16_t kData = 0x0013;
inline constexpr std::uint16_t kXorRelayedAddress = 0x0016;
inline constexpr std::uint16_t kRequestedAddressFamily = 0x0017;
inline constexpr std::uint16_t kEvenPort = 0x0018;
inline constexpr std::uint16_t kRequestedTransport = 0x0019;
inline constexpr std::uint16_t kDontFragment = 0x001A;
inline constexpr std::uint16_t kReservationToken = 0x0022;
}  // namespace attr

namespace error_code {
inline constexpr int kStaleNonce = 438;
inline constexpr int kAllocationMismatch = 437;
inline constexpr int kWrongCredentials = 441;
inline constexpr int kUnsupportedTransport = 442;
inline constexpr int kAllocationQuota = 486;
inline constexpr int kInsufficientCapacity = 508;
}  // namespace error_code

/// PASSWORD-ALGORITHM values (RFC 8489 18.5).
enum class PasswordAlgorithm : std::uint16_t { md5 = 0x0001, sha256 = 0x0002 };

struct Credentials {
  std::string username;
  std::string password;
};

/// coturn's `use-auth-secret` credentials (the "TURN REST API"): username
/// "EXPIRY:NAME" (EXPIRY in Unix seconds; just "EXPIRY" when name is empty),
/// password base64(HMAC-SHA1(secret, username)).
Credentials time_limited_credentials(std::string_view secret, std::string_view name, std::int64_t expiry_unix);

/// The long-term key (RFC 8489 9.2.2): MD5 or SHA-256 of "username:realm:password".
Bytes long_term_key(const Credentials& credentials, std::string_view realm, PasswordAlgorithm algorithm);

/// ChannelData (RFC 8656 12.4): 2-byte channel number 0x4000-0x4FFF, 2-byte length, data.
Bytes encode_channel_data(std::uint16_t channel, ByteView data);
struct ChannelData {
  std::uint16_t channel = 0;
  ByteView data;  ///< a view into the datagram
};
/// Errors (ErrorDomain::stun): too short, channel outside 0x4000-0x4FFF, length past the end.
Result<ChannelData> decode_channel_data(ByteView datagram);

struct ClientConfig {
  Credentials credentials;
  std::uint32_t requested_lifetime_s = 600;
  stun::TransactionConfig transaction;
  unsigned max_nonce_retries = 3;  ///< 438s answered per request before giving up
  Timestamp permission_refresh = 240 * kNanosPerSecond;
  Timestamp channel_refresh = 540 * kNanosPerSecond;
  std::size_t max_permissions = 64;  ///< bounds what the check list can make us ask for
  std::string software = "quiclab";
};

// ---- events ----
struct Allocated {
  SocketAddress relayed;
  SocketAddress mapped;  ///< XOR-MAPPED-ADDRESS of the Allocate response (our server-reflexive address)
  std::uint32_t lifetime_s = 0;
  Timestamp rtt = 0;  ///< first Allocate sent to success, including the 401 round
};
struct AllocationFailed {
  int code = 0;  ///< STUN error code, 0 for a timeout or a bad response
  std::string reason;
};
struct AllocationLost {
  std::string reason;
};
struct PermissionResult {
  SocketAddress peer;
  bool ok = false;
  std::string detail;
};
struct ChannelResult {
  SocketAddress peer;
  std::uint16_t channel = 0;
  bool ok = false;
  std::string detail;
};
struct Released {};
using Event = std::variant<Allocated, AllocationFailed, AllocationLost, PermissionResult, ChannelResult, Released>;

/// A datagram a peer sent to our relayed address.
struct Inner {
  SocketAddress peer;
  Bytes data;
  bool channel = false;  ///< came as ChannelData (else as a Data indication)
};

struct ClientStats {
  std::uint64_t requests_sent = 0;  ///< including retransmissions
  std::uint64_t auth_challenges = 0;
  std::uint64_t stale_nonces = 0;
  std::uint64_t refreshes = 0;
  std::uint64_t send_indications = 0;
  std::uint64_t channel_data_sent = 0;
  std::uint64_t data_indications = 0;
  std::uint64_t channel_data_received = 0;
  std::uint64_t bad_messages = 0;         ///< undecodable, unknown channel, unsigned or badly signed response
  std::uint64_t unmatched = 0;            ///< responses to no transaction of ours
  std::uint64_t refused_permissions = 0;  ///< over max_permissions
};

class Client {
 public:
  enum class State : std::uint8_t { idle, allocating, allocated, failed, released };

  /// random must outlive the client (transaction IDs).
  Client(ClientConfig config, Random& random);

  /// Sends the first Allocate.
  void start(Timestamp now);
  /// Permission for `peer`'s IP (idempotent; before the allocation: queued).
  void create_permission(const SocketAddress& peer, Timestamp now);
  /// A channel for `peer` (idempotent; also creates the permission).
  void bind_channel(const SocketAddress& peer, Timestamp now);
  /// Releases the allocation (Refresh, LIFETIME 0); Released when answered or timed out.
  void release(Timestamp now);

  /// The datagram for the server that carries `data` to `peer` from our
  /// relayed address: ChannelData when its channel is bound, else a Send
  /// indication. Empty when there is no allocation.
  std::optional<Bytes> wrap(const SocketAddress& peer, ByteView data);

  /// A datagram from the TURN server. Responses are consumed; Data
  /// indications and ChannelData come back as Inner.
  std::optional<Inner> handle_datagram(ByteView data, Timestamp now);

  std::optional<Timestamp> expiry() const;
  void handle_expiry(Timestamp now);

  std::vector<Bytes> take_datagrams() { return std::exchange(out_, {}); }
  std::vector<Event> take_events() { return std::exchange(events_, {}); }

  State state() const { return state_; }
  const std::optional<SocketAddress>& relayed() const { return relayed_; }
  const std::optional<SocketAddress>& mapped() const { return mapped_; }
  bool has_permission(const SocketAddress& peer) const;
  std::optional<std::uint16_t> channel(const SocketAddress& peer) const;
  const ClientStats& stats() const { return stats_; }
  /// The algorithm the server asked for (md5 until a 401 offered SHA-256).
  PasswordAlgorithm algorithm() const { return algorithm_; }

 private:
  enum class Kind : std::uint8_t { allocate, refresh, permission, channel_bind };
  struct Pending {
    Kind kind = Kind::allocate;
    stun::ClientTransaction transaction;
    stun::Message request;       // unsigned form, re-signed on 401/438
    SocketAddress peer;          // permission / channel
    std::uint32_t lifetime = 0;  // refresh
    unsigned nonce_retries = 0;
    bool signed_request = false;
  };
  struct Permission {
    bool installed = false;
    bool pending = false;
    bool forbidden = false;  // the server answered 403: asking again gets the same answer
    Timestamp refresh_at = 0;
  };
  struct Channel {
    std::uint16_t number = 0;
    bool bound = false;
    bool pending = false;
    Timestamp refresh_at = 0;
  };

  stun::Message request(std::uint16_t method) const;
  stun::TransactionId new_id() const;
  void send(Kind kind, stun::Message m, Timestamp now, SocketAddress peer = {}, std::uint32_t lifetime = 0);
  Bytes sign(const stun::Message& m) const;
  /// Signs p.request with what we know now, starts its transaction and sends the first transmission.
  void launch(Pending p, Timestamp now);
  void handle_response(const stun::Message& m, Timestamp now);
  void finished(Pending& p, const stun::Message& m, Timestamp now);
  void failed(Pending& p, int code, std::string reason);
  bool response_authentic(const stun::Message& m) const;
  void send_permission(const SocketAddress& ip, Timestamp now);
  void send_channel_bind(const SocketAddress& peer, Timestamp now);
  static SocketAddress ip_only(const SocketAddress& a);

  ClientConfig config_;
  Random& random_;
  State state_ = State::idle;
  std::string realm_;
  std::string nonce_;
  PasswordAlgorithm algorithm_ = PasswordAlgorithm::md5;
  bool offer_algorithms_ = false;  // the server sent PASSWORD-ALGORITHMS: echo them
  Bytes algorithms_value_;
  Bytes key_;
  std::map<stun::TransactionId, Pending> pending_;
  std::optional<SocketAddress> relayed_, mapped_;
  std::uint32_t lifetime_s_ = 0;
  Timestamp started_ = 0;
  std::optional<Timestamp> refresh_at_;
  std::unordered_map<SocketAddress, Permission> permissions_;  // key: IP with port 0
  std::unordered_map<SocketAddress, Channel> channels_;        // key: peer address
  std::map<std::uint16_t, SocketAddress> channel_peers_;
  std::uint16_t next_channel_ = 0x4000;
  std::vector<Bytes> out_;
  std::vector<Event> events_;
  ClientStats stats_;
};

std::string_view to_string(Client::State s);

}  // namespace quiclab::turn
