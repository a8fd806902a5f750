// The QUIC server connection core: many ngtcp2 server connections behind one
// UDP socket, demultiplexed by connection ID.
//
// Sans-IO: datagrams and timestamps go in (on_datagram, handle_expiry), packets go
// out through a PacketSink, and expiry() says when to call back. A thin
// libuv adapter (h3::Server) owns the UdpSocket and the timer; unit tests drive
// the core on simulated time with a capturing sink.
//
// What the core does on top of ngtcp2:
//   - Version Negotiation for unknown versions; stateless reset for short
//     packets with unknown connection IDs (rate limited), never for a STUN
//     message (the socket may be shared with STUN: p2p/demux.hpp);
//   - an accept hook (ServerCoreConfig::accept_initial) choosing which
//     remote addresses may open connections;
//   - address validation: Retry (always with ServerCoreConfig::retry, and by
//     itself while more than auto_retry_half_open handshakes are in flight),
//     NEW_TOKEN after the handshake, token checks on new Initials (a forged
//     Retry token gets an INVALID_TOKEN close, a bad regular token is ignored);
//   - a cap on half-open connections and on connections overall;
//   - 0-RTT via the TLS seam (session tickets, anti-replay), key update,
//     migration and NAT rebinding (each packet is fed with its own path;
//     ngtcp2 validates new paths and enforces the 3x amplification limit);
//   - idle timeout, closing and draining periods, graceful shutdown (the
//     application sends GOAWAY, then each connection closes when idle);
//   - GSO batching: a connection's packets of one size go out in one send;
//   - qlog per connection through a QlogSink (the core writes no file).
//
// The application protocol (HTTP/3) plugs in per connection through
// StreamApplication. Callback rules: StreamApplication methods are called from
// inside ngtcp2 callbacks or the core's write loop; they must not call back into
// the core, and may use the ngtcp2_conn they were created with (extend flow
// control, shut streams down, open uni streams).
#pragma once

#include <ngtcp2/ngtcp2.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/connection_record.hpp"
#include "transport/core/random.hpp"
#include "transport/quic/path_mtu.hpp"
#include "transport/quic/qlog.hpp"
#include "transport/quic/tls_backend.hpp"
#include "transport/quic/udp_socket.hpp"

namespace quiclab::quic {

/// A network path as the server sees it.
struct Path {
  SocketAddress local;
  SocketAddress remote;
};

/// Where the core's packets go (a UdpSocket in production, a vector in tests).
class PacketSink {
 public:
  virtual ~PacketSink() = default;
  /// Same contract as UdpSocket::send. On SendStatus::blocked the core keeps
  /// the unsent rest and stops sending until ServerCore::on_writable().
  virtual SendResult send(const Path& path, ByteView data, std::size_t segment_size, Ecn ecn) = 0;
};

/// The application protocol on one connection. Every int-returning method
/// returns 0, or a negative value to close the connection with error_code().
class StreamApplication {
 public:
  virtual ~StreamApplication() = default;
  /// 1-RTT keys are ready (before the handshake completes on a server): open
  /// control streams here. May be called again; must be idempotent.
  virtual int on_ready() = 0;
  virtual int on_handshake_completed() = 0;
  /// Stream data in order; the app extends flow control as it consumes.
  virtual int on_stream_data(std::int64_t stream_id, ByteView data, bool fin) = 0;
  virtual int on_acked_stream_data(std::int64_t stream_id, std::uint64_t datalen) = 0;
  /// app_error_code is set when the peer or we reset the stream.
  virtual int on_stream_close(std::int64_t stream_id, std::optional<std::uint64_t> app_error_code) = 0;
  virtual int on_stream_reset(std::int64_t stream_id, std::uint64_t app_error_code) = 0;
  virtual int on_stream_stop_sending(std::int64_t stream_id, std::uint64_t app_error_code) = 0;
  virtual int on_extend_max_remote_streams_bidi(std::uint64_t max_streams) = 0;
  virtual int on_extend_max_stream_data(std::int64_t stream_id) = 0;

  /// Next stream data to send: sets stream_id (-1: none), fin, and fills vecs;
  /// returns the count of vecs used, or negative on a fatal error.
  virtual std::int64_t next_stream_data(std::int64_t& stream_id, bool& fin, std::span<ngtcp2_vec> vecs) = 0;
  /// ngtcp2 could not take data of stream_id (flow control): wait for on_extend_max_stream_data.
  virtual int stream_blocked(std::int64_t stream_id) = 0;
  virtual int stream_shut_wr(std::int64_t stream_id) = 0;
  /// n bytes of stream_id's data went into packets.
  virtual int add_write_offset(std::int64_t stream_id, std::size_t n) = 0;

  /// Graceful shutdown started: stop accepting requests (GOAWAY).
  virtual void begin_shutdown() = 0;
  /// No request in flight: the connection can be closed without losing work.
  virtual bool idle() const = 0;
  /// Application error code for CONNECTION_CLOSE after a failed call, and for
  /// the graceful close (NO_ERROR of the application protocol).
  virtual std::uint64_t error_code() const = 0;
  virtual std::uint64_t no_error_code() const = 0;
};

/// Facts about a new connection, for the application factory.
struct ConnectionInfo {
  std::string id;  ///< Hex of the server's first connection ID (also the qlog file name).
  SocketAddress remote;
};

using ApplicationFactory = std::function<std::unique_ptr<StreamApplication>(ngtcp2_conn* conn, const ConnectionInfo&)>;

/// ngtcp2's congestion controllers by the names the command line uses.
inline constexpr std::pair<std::string_view, ngtcp2_cc_algo> kCcAlgos[] = {{"cubic", NGTCP2_CC_ALGO_CUBIC},
                                                                           {"reno", NGTCP2_CC_ALGO_RENO},
                                                                           {"bbr", NGTCP2_CC_ALGO_BBR},
                                                                           {"bbr2", NGTCP2_CC_ALGO_BBR2}};
/// The algorithm named `name`, if there is one.
inline std::optional<ngtcp2_cc_algo> cc_algo_from_name(std::string_view name) {
  for (const auto& [n, a] : kCcAlgos)
    if (n == name) return a;
  return std::nullopt;
}
inline std::string_view cc_algo_name(ngtcp2_cc_algo algo) {
  for (const auto& [n, a] : kCcAlgos)
    if (a == algo) return n;
  return "unknown";
}

struct ServerCoreConfig {
  bool retry = false;                      ///< Validate every new client address with Retry.
  std::size_t max_half_open = 2000;        ///< Handshakes in flight; further Initials are dropped.
  std::size_t auto_retry_half_open = 256;  ///< Past this many half-open connections, Retry is required.
  std::size_t max_connections = 20000;
  Timestamp idle_timeout = 30 * kNanosPerSecond;
  Timestamp handshake_timeout = 10 * kNanosPerSecond;
  /// RTT assumed before the first sample (RFC 9002 6.2.2: 333 ms); sets the
  /// first PTO. Tests on loopback with heavy loss lower it so that PTO
  /// backoff leaves room for more retransmissions within their timeouts.
  Timestamp initial_rtt = NGTCP2_DEFAULT_INITIAL_RTT;
  Timestamp shutdown_timeout = 5 * kNanosPerSecond;  ///< Graceful shutdown closes everything after this.
  /// One qlog trace per connection, named by ConnectionInfo::id; empty: none.
  /// The core opens no file: h3::Server makes this from its qlog_dir with
  /// qlog_to_directory (qlog.hpp).
  QlogSink qlog;
  std::uint64_t max_data = 64ULL * 1024 * 1024;         ///< Connection receive window (initial and max).
  std::uint64_t max_stream_data = 16ULL * 1024 * 1024;  ///< Stream receive window.
  std::uint64_t max_streams_bidi = 1000;                ///< Concurrent request streams per connection.
  ngtcp2_cc_algo cc_algo = NGTCP2_CC_ALGO_CUBIC;
  /// ngtcp2's pacing after the handshake (1.25 x cwnd / smoothed RTT in
  /// 0.12.1, slow start included); false: packets leave as fast as the
  /// congestion window allows, as Linux Cubic sends without fq.
  bool pacing = true;
  /// Called once per connection when it ends (closing, draining, timed out
  /// or dropped) with what its transport did; empty: nothing is recorded.
  ConnectionRecordSink on_connection_end;
  bool new_token = true;  ///< Send NEW_TOKEN after the handshake.
  std::size_t stateless_resets_per_second = 200;
  UdpPayloadPolicy udp_payload;  ///< Datagram size (path_mtu.hpp).
  /// Datagram size for loopback peers under the automatic policy, measured by
  /// the adapter (probe_loopback_udp_payload); 0: ngtcp2's default with PMTUD.
  std::size_t loopback_udp_payload = 0;
  /// Who may start a connection: called with the remote address of a
  /// datagram that would open one (an Initial, or a packet that would get
  /// Version Negotiation); false drops it silently. Empty: anyone. The
  /// punching peer accepts QUIC only from the nominated peer this way.
  std::function<bool(const SocketAddress& remote)> accept_initial;
};

struct ServerCoreStats {
  std::uint64_t datagrams_in = 0, bytes_in = 0;
  std::uint64_t datagrams_out = 0, bytes_out = 0;
  std::uint64_t max_datagram_in = 0, max_datagram_out = 0;  ///< Largest UDP payloads seen (path_mtu.hpp).
  std::uint64_t max_batch_datagrams = 0;                    ///< Most datagrams handed to one GSO send.
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_closed = 0;
  std::uint64_t handshakes_completed = 0;
  std::uint64_t version_negotiations_sent = 0;
  std::uint64_t retries_sent = 0;
  std::uint64_t stateless_resets_sent = 0;
  std::uint64_t invalid_token_closes = 0;  ///< Initials with forged/expired Retry tokens.
  std::uint64_t tokens_accepted = 0;       ///< Valid NEW_TOKEN or Retry tokens.
  std::uint64_t dropped_unknown = 0;       ///< Unparsable or unexpected datagrams.
  std::uint64_t dropped_half_open_cap = 0;
  std::uint64_t dropped_stun = 0;          ///< Well-formed STUN messages: never answered, never reset.
  std::uint64_t dropped_not_accepted = 0;  ///< New connections refused by accept_initial.
  std::uint64_t early_data_accepted = 0;   ///< Handshakes where 0-RTT was accepted.
  std::uint64_t resumed = 0;               ///< TLS resumptions.
  std::uint64_t key_updates = 0;           ///< Peer-initiated key updates seen.
  std::uint64_t path_validations = 0;      ///< Successful path validations (migration / rebinding).
  std::uint64_t idle_timeouts = 0;
  std::uint64_t send_blocked = 0;
  /// Amplification check (RFC 9000 8.1): largest sent/received ratio of any
  /// connection while its client address was unvalidated, and the count of
  /// connections that went over 3.
  double max_unvalidated_ratio = 0;
  std::uint64_t amplification_violations = 0;
};

class ServerCore {
 public:
  /// tls, sink and random must outlive the core. `random` gives connection
  /// IDs, the stateless-reset and token secret and ngtcp2's own draws
  /// (greasing, padding): seed it (SeededRandom) to replay a simulation.
  ServerCore(ServerCoreConfig config, tls::ServerContext& tls, PacketSink& sink, ApplicationFactory factory,
             Random& random = Random::system());
  ~ServerCore();
  ServerCore(const ServerCore&) = delete;
  ServerCore& operator=(const ServerCore&) = delete;

  /// One received datagram. Never throws; bad input is counted and logged at debug.
  void on_datagram(const Path& path, ByteView data, Ecn ecn, Timestamp now);
  /// Sends what the connections touched since the last flush have to send.
  /// Call after a batch of datagrams (UdpSocket's batch-end callback).
  void flush(Timestamp now);
  /// The sink can take packets again (after SendStatus::blocked).
  void on_writable(Timestamp now);
  /// Earliest time handle_expiry() must run; nullopt when nothing is scheduled.
  std::optional<Timestamp> expiry() const;
  /// Runs the timers that are due (loss recovery, idle, draining, pacing) and flushes.
  void handle_expiry(Timestamp now);
  /// Graceful shutdown: no new connections; GOAWAY on each, close each when
  /// idle, everything closed after shutdown_timeout.
  void shutdown(Timestamp now);
  /// Starts shutdown() if needed and closes every connection at once.
  void close_all(Timestamp now);
  /// True once shutdown() ran and no connection is left.
  bool finished() const;
  bool blocked() const { return blocked_; }

  std::size_t connection_count() const;
  std::size_t half_open_count() const;
  const ServerCoreStats& stats() const { return stats_; }

  struct Connection;  // internal

 private:
  friend struct Connection;
  friend struct CoreAccess;
  struct CidKey {
    std::uint8_t len = 0;
    std::array<std::uint8_t, NGTCP2_MAX_CIDLEN> data{};
    bool operator==(const CidKey& o) const { return len == o.len && data == o.data; }
  };
  struct CidHash {
    std::size_t operator()(const CidKey& k) const noexcept;
  };
  static CidKey key_of(const std::uint8_t* data, std::size_t len);
  static CidKey key_of(const ngtcp2_cid& cid) { return key_of(cid.data, cid.datalen); }

  bool may_open(const Path& path);
  void accept(const Path& path, ByteView data, Ecn ecn, Timestamp now);
  void send_version_negotiation(const Path& path, const ngtcp2_version_cid& vc);
  void send_retry(const Path& path, const ngtcp2_pkt_hd& hd, std::size_t received, Timestamp now);
  void send_invalid_token_close(const Path& path, const ngtcp2_pkt_hd& hd);
  void maybe_send_stateless_reset(const Path& path, ByteView data, const std::uint8_t* dcid, std::size_t dcidlen,
                                  Timestamp now);
  void send_raw(const Path& path, ByteView packet);
  void on_datagram_for_new(Connection& c, const Path& path, ByteView data, Ecn ecn, Timestamp now);
  void close_connection(Connection& c, Timestamp now);
  void write_connection(Connection& c, Timestamp now);
  void schedule(Connection& c);
  void retire(Connection& c);
  /// Hands the connection's record to config_.on_connection_end, once.
  void report(Connection& c);
  void reap();
  void mark_dirty(Connection& c);

  ServerCoreConfig config_;
  tls::ServerContext& tls_;
  PacketSink& sink_;
  ApplicationFactory factory_;
  Random& random_;
  std::array<std::uint8_t, 32> static_secret_{};
  std::unordered_map<CidKey, Connection*, CidHash> by_cid_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  std::set<std::pair<Timestamp, Connection*>> timers_;
  std::vector<Connection*> dirty_;
  std::vector<Connection*> dead_;
  std::vector<Connection*> blocked_conns_;
  std::vector<std::uint8_t> tx_buffer_;
  std::size_t half_open_ = 0;
  bool blocked_ = false;
  bool shutting_down_ = false;
  Timestamp shutdown_deadline_ = 0;
  Timestamp now_hint_ = 0;  // latest time seen, for callbacks that need a timestamp
  Timestamp reset_window_start_ = 0;
  std::size_t resets_in_window_ = 0;
  ServerCoreStats stats_;
};

}  // namespace quiclab::quic
