// The HTTP/3 client: ngtcp2 (QUIC, client side) + nghttp3 (HTTP/3) + GnuTLS
// through ngtcp2_crypto_gnutls.
//
// Two layers, as everywhere in quiclab:
//   - ClientConnection is sans-IO: datagrams and a timestamp in, datagrams and
//     the next deadline out. It never touches a socket or the loop, so it can be
//     driven on simulated time.
//   - Client is the libuv adapter that implements http::Client: it runs on a
//     quic::UdpSocket it is given (ClientEndpoint; recvmmsg/GRO in, GSO out,
//     never connect()ed, so the same socket can carry STUN and other peers'
//     traffic) or binds one of its own, and one uv::Timer, and feeds the
//     connection.
//
// Session resumption and 0-RTT: the connection reports the server's session
// ticket together with the server's transport parameters (both are needed for
// 0-RTT) through Config::on_session and resumes a Config::resume session,
// sending the first requests as early data. It touches no file: with
// ClientOptions::session_file set, Client loads the file before connecting
// and saves each reported session to it. ConnectionInfo says whether the server accepted them; when it refuses,
// the requests are sent again after the handshake (nothing is lost).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/random.hpp"
#include "transport/core/result.hpp"
#include "transport/http/client.hpp"
#include "transport/quic/qlog.hpp"
#include "transport/quic/tls_backend.hpp"

struct ngtcp2_conn;
struct nghttp3_conn;

namespace quiclab::uv {
class Loop;
class Timer;
}  // namespace quiclab::uv

#include "transport/quic/udp_socket.hpp"

namespace quiclab::h3 {

/// What 0-RTT needs from an earlier connection: the TLS session (with its
/// ticket) and the transport parameters the server announced then.
struct StoredSession {
  Bytes tls_session;       ///< gnutls_session_get_data2() output.
  Bytes transport_params;  ///< Server's transport parameters (encrypted-extensions encoding).
  Bytes token;             ///< The server's last NEW_TOKEN token (may be empty): skips Retry next time.
};

/// Reads a session file written by save_session() (JSON, see client.cpp).
/// Errors (domain config): missing file (code ENOENT); content that is not our
/// JSON, or lacks or garbles a field (EINVAL, the message says which).
Result<StoredSession> load_session(const std::filesystem::path& file);
/// Writes the session file atomically (temp file + rename), mode 0600.
Status save_session(const std::filesystem::path& file, const StoredSession& session);

/// QUIC knobs beyond http::ClientOptions; defaults favour bulk throughput on
/// fast paths (fewer ACKs, large windows).
struct QuicTuning {
  std::size_t ack_thresh = 8;           ///< ACK-eliciting packets before an immediate ACK (ngtcp2 default: 2).
  std::uint64_t max_ack_delay_ms = 25;  ///< Our max_ack_delay transport parameter.
  std::uint64_t handshake_timeout_ms = 10000;
  /// After this long without receiving anything, send a PING (0: never).
  /// The hole-punching peer sets it: when its NAT rebinds while the server
  /// is sending, the server's packets die at the NAT and only a packet of
  /// ours reveals the new mapping (QUIC then validates the new path).
  std::uint64_t keep_alive_ms = 0;
  std::size_t flush_every = 16;    ///< Received datagrams between two writes (ACKs) within one batch.
  std::filesystem::path qlog_dir;  ///< h3::Client writes <scid>.sqlog here when set (through Config::qlog).
  /// Connection IDs and ngtcp2's draws (greasing ...); null: the system's.
  /// Seeded in tests that need a given draw; must outlive the client.
  Random* random = nullptr;
};

/// One sans-IO HTTP/3 client connection.
///
/// Use: create(), then call write() to get the first flight, read() for each
/// datagram from the server, write() after every batch of reads or submit(),
/// handle_expiry() when expiry() is reached. take_events() returns the
/// finished requests and connection events to report; user callbacks are never
/// run from inside ngtcp2/nghttp3 callbacks (except BodyCallback, see submit()).
class ClientConnection {
 public:
  struct Config {
    http::Url origin;  ///< Host (SNI, certificate name) and :authority.
    http::ClientOptions options;
    QuicTuning tuning;
    SocketAddress local;
    SocketAddress remote;
    /// Shared TLS credentials (CA store); made from options when null.
    std::shared_ptr<quic::tls::ClientContext> tls;
    /// Connection IDs, reset tokens and ngtcp2's draws (greasing, padding);
    /// null: the system's. Seed it to replay a simulation; must outlive the connection.
    Random* random = nullptr;
    /// A session from an earlier connection: resume it and send the first
    /// requests as 0-RTT. The core reads no session file (h3::Client loads
    /// options.session_file with load_session()).
    std::optional<StoredSession> resume;
    /// Receives each new session worth storing (a ticket with the server's
    /// transport parameters, again when a NEW_TOKEN token arrives). Runs
    /// synchronously from inside read() and must not call into this object.
    /// Empty: no session is kept (and tokens are not asked for).
    std::function<void(const StoredSession&)> on_session;
    /// Where the qlog trace goes (named by our hex source CID); empty: none.
    /// h3::Client makes it from tuning.qlog_dir with quic::qlog_to_directory.
    quic::QlogSink qlog;
    /// Added to a Timestamp, gives ns since the Unix epoch (the adapter's
    /// wall clock against its monotonic one); set, the qlog header's
    /// reference_time is the wall-clock ms of the trace's time 0, so the
    /// trace lines up with a packet capture. Unset: reference_time stays 0.
    std::optional<std::int64_t> unix_offset_ns;
    /// Largest UDP payload to a loopback remote (quic::udp_payload_for),
    /// measured by the adapter (quic::probe_loopback_udp_payload); 0: ngtcp2's
    /// default with path MTU discovery. A forced options.max_udp_payload wins.
    std::size_t loopback_udp_payload = 0;
  };

  /// A burst of packets ready to send: `data` holds packets of `segment_size`
  /// bytes each (the last may be shorter), suitable for one GSO send.
  struct Burst {
    ByteView data;
    std::size_t segment_size = 0;
    std::uint8_t ecn = 0;
    /// The path every packet of the burst is for (ngtcp2's choice: the
    /// current path, or a new one being validated). Valid during the sink call.
    const SocketAddress* local = nullptr;
    const SocketAddress* remote = nullptr;
  };
  /// Returns the number of bytes it took (whole segments); fewer than
  /// data.size() means the socket is blocked: write() stops and keeps the rest.
  using BurstSink = std::function<std::size_t(const Burst&)>;

  /// Builds the connection (TLS session, ngtcp2 and, when resuming, nghttp3 for 0-RTT).
  /// Errors: TLS set-up (bad CA file ...), ngtcp2 failures, the qlog sink's
  /// error. A resume session the TLS layer cannot use means a full handshake.
  static Result<std::unique_ptr<ClientConnection>> create(Config config, Timestamp now);
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  /// Queues a request. on_body runs synchronously from inside read() for each
  /// chunk (the view is valid only during the call) and must not call into this
  /// object; on_complete is reported through take_events().
  void submit(http::ClientRequest request, http::BodyCallback on_body, http::CompleteCallback on_complete);

  /// Feeds one datagram. Errors end the connection (see closed()).
  void read(const SocketAddress& local, const SocketAddress& remote, ByteView datagram, std::uint8_t ecn,
            Timestamp now);
  /// Writes as many packets as congestion control and pacing allow, handing them
  /// to sink in GSO-sized bursts.
  void write(Timestamp now, const BurstSink& sink);
  /// Retries the bytes the sink refused last time; true when nothing is left.
  bool flush_blocked(const BurstSink& sink);
  /// True when no refused bytes wait for the socket.
  bool nothing_blocked() const { return blocked_len_ == 0; }
  /// Next deadline (ns, same clock as now) for handle_expiry(); nullopt once
  /// closed (the TimedCore convention, transport/core/clock.hpp).
  std::optional<Timestamp> expiry() const;
  void handle_expiry(Timestamp now);

  /// Graceful shutdown: fail queued (unsent) requests, let in-flight ones finish,
  /// then GOAWAY and CONNECTION_CLOSE. With abort, close at once.
  void close(bool abort, Timestamp now);
  /// Moves the connection to a new path (RFC 9000 9.2): ngtcp2 validates it
  /// with PATH_CHALLENGE and switches once answered, falling back to the
  /// current path if not. ngtcp2 0.12.1 allows it only after the handshake
  /// is confirmed, with a spare connection ID from the server, and to a path
  /// whose local address differs from the current one. Errors name which.
  Status migrate(const SocketAddress& local, const SocketAddress& remote, Timestamp now);
  /// The path ngtcp2 sends on now (after a validated migration, the new one).
  std::pair<SocketAddress, SocketAddress> current_path() const;
  /// The transport hit a socket error (e.g. ECONNREFUSED from ICMP): end now.
  void fail(Error error);

  struct Completion {
    http::CompleteCallback callback;
    http::ClientResponse response;
  };
  struct Events {
    std::optional<Status> ready;          ///< Handshake completed or failed (once).
    std::vector<Completion> completions;  ///< Finished requests, in completion order.
    struct PathResult {
      SocketAddress local, remote;
      bool ok = false;  ///< validated (the connection moved there), or failed / aborted
    };
    std::vector<PathResult> paths;  ///< Path validations that ended (migrate()).
  };
  /// Takes the events accumulated since the last call.
  Events take_events();

  /// True when the connection is gone (closed, failed, drained): nothing more to send or read.
  bool closed() const { return state_ == State::closed; }
  bool handshake_completed() const { return state_ != State::handshake; }
  /// The packet to send on closing (CONNECTION_CLOSE), if one is due; empty otherwise.
  ByteView close_packet() const { return close_packet_; }
  http::ConnectionInfo info() const;
  /// Requests queued or in flight.
  std::size_t outstanding() const { return pending_.size() + streams_.size(); }

  // Called from the C callbacks (public only for them).
  struct Stream;
  int on_recv_stream_data(std::uint32_t flags, std::int64_t stream_id, const std::uint8_t* data, std::size_t len);
  int on_acked_stream_data(std::int64_t stream_id, std::uint64_t len);
  int on_stream_close(std::uint32_t flags, std::int64_t stream_id, std::uint64_t app_error_code);
  int on_stream_reset(std::int64_t stream_id);
  int on_handshake_completed();
  void on_path_validation(SocketAddress local, SocketAddress remote, bool ok);
  int on_recv_rx_key_application();
  void on_early_data_rejected();
  int on_extend_max_stream_data(std::int64_t stream_id);
  int on_http_recv_data(std::int64_t stream_id, const std::uint8_t* data, std::size_t len);
  void on_http_consume(std::int64_t stream_id, std::size_t n);
  int on_http_begin_headers(std::int64_t stream_id);
  int on_http_header(std::int64_t stream_id, ByteView name, ByteView value);
  int on_http_end_stream(std::int64_t stream_id);
  int on_http_stream_close(std::int64_t stream_id, std::uint64_t app_error_code);
  int on_http_stop_sending(std::int64_t stream_id, std::uint64_t app_error_code);
  int on_http_reset_stream(std::int64_t stream_id, std::uint64_t app_error_code);
  int on_http_goaway(std::int64_t id);
  void on_session_ticket(Bytes tls_session);
  void on_new_token(ByteView token);
  void report_session();  // hands saved_ to Config::on_session once it has a ticket and parameters
  void on_qlog(const void* data, std::size_t len, bool fin);
  std::string refine_qlog_chunk(std::string_view chunk) const;
  ngtcp2_conn* conn() const { return conn_; }
  Random& random() const { return config_.random ? *config_.random : Random::system(); }

 private:
  enum class State { handshake, established, closing, closed };
  explicit ClientConnection(Config config);
  Status init(Timestamp now);
  Status setup_http();
  void start_requests();
  bool open_stream(std::unique_ptr<Stream>& stream);
  void finish(Stream& stream, std::optional<Error> error);
  void fail_all(const Error& error);
  void enter_closed(std::optional<Error> error);
  void write_connection_close(Timestamp now, std::uint64_t app_error);
  void handle_liberr(int rv, const char* where, Timestamp now);
  bool wrote_stream_data(std::int64_t stream_id, std::ptrdiff_t ndatalen, bool fin_sent);
  std::size_t unfinished() const;

  Config config_;
  State state_ = State::handshake;
  ngtcp2_conn* conn_ = nullptr;
  nghttp3_conn* http_ = nullptr;
  ngtcp2_crypto_conn_ref conn_ref_{};
  std::unique_ptr<quic::tls::Session> tls_;
  bool early_data_attempted_ = false;
  bool early_data_accepted_ = false;
  bool handshake_reported_ = false;
  bool closing_requested_ = false;
  bool goaway_received_ = false;
  Timestamp start_ = 0;
  Timestamp now_ = 0;  // Time of the current entry point (read/write/timer).
  Timestamp first_packet_sent_ = 0;
  Timestamp handshake_done_ = 0;
  std::deque<std::unique_ptr<Stream>> pending_;
  std::unordered_map<std::int64_t, std::unique_ptr<Stream>> streams_;
  Events events_;
  std::optional<Error> connection_error_;
  StoredSession saved_;  // what the session file holds (ticket, parameters, token)
  Bytes close_packet_;
  // Outgoing packets: room for one full GSO burst; blocked_ keeps what the socket refused.
  Bytes tx_buf_;
  std::size_t blocked_off_ = 0, blocked_len_ = 0, blocked_seg_ = 0;
  std::uint8_t blocked_ecn_ = 0;
  SocketAddress blocked_local_, blocked_remote_;
  std::unique_ptr<quic::QlogWriter> qlog_;
  Timestamp qlog_origin_ = 0;  // ngtcp2's initial_ts: time 0 of the qlog trace
};

/// The socket an h3::Client runs on.
struct ClientEndpoint {
  /// A bound socket of the remote's family. Null: connect() binds one of its
  /// own, on the source address the route to the remote uses, any port.
  std::shared_ptr<quic::UdpSocket> socket;
  /// exclusive: the client reads the socket itself (and stops reading when the
  /// connection is gone); shared: the owner routes the remote's QUIC
  /// datagrams to the client's DatagramHandler methods.
  quic::Attach attach = quic::Attach::exclusive;
  /// The first path's local end when it is not the socket's own address: a
  /// TURN relayed address the socket diverts (quic::UdpSocket::divert_source),
  /// whose datagrams the owner hands in with this address as their `local`.
  std::optional<SocketAddress> local;
};

/// The libuv adapter: http::Client over one UDP socket and one timer.
///
/// The socket is not connected: datagrams from any address but the remote
/// are ignored (counted in ignored_datagrams()), and ICMP errors arrive
/// through IP_RECVERR with their destination, so "port unreachable" from the
/// remote still ends a handshake at once (Happy Eyeballs needs that).
class Client final : public http::Client, public quic::DatagramHandler {
 public:
  /// Nothing happens until connect(); errors surface through on_ready.
  Client(uv::Loop& loop, http::Url origin, http::ClientOptions options, QuicTuning tuning = {},
         ClientEndpoint endpoint = {});
  ~Client() override;

  void connect(std::function<void(Status)> on_ready) override;
  void submit(http::ClientRequest request, http::BodyCallback on_body, http::CompleteCallback on_complete) override;
  void close(std::function<void()> on_closed, bool abort = false) override;
  http::ConnectionInfo info() const override;

  void handle_datagram(const quic::ReceivedDatagram& d) override;
  void handle_batch_end() override;
  void handle_socket_error(int err, const SocketAddress& to) override;
  /// Datagrams that came from an address other than the remote's, dropped.
  std::uint64_t ignored_datagrams() const { return ignored_datagrams_; }

  /// Moves the connection to the path local -> remote (ClientConnection::migrate);
  /// diverted: local is a relayed address the socket diverts (see
  /// ClientEndpoint::local). The old path keeps being read until ngtcp2
  /// retires it; on_path_validated reports the outcome.
  Status migrate(const SocketAddress& local, const SocketAddress& remote, bool diverted = false);
  /// Called when a migration's path validation ended (ok: the connection moved).
  void on_path_validated(std::function<void(const SocketAddress& local, const SocketAddress& remote, bool ok)> fn) {
    on_path_ = std::move(fn);
  }
  /// The path the connection sends on now.
  std::pair<SocketAddress, SocketAddress> current_path() const;

 private:
  void after_core_call();
  void flush();
  void note_refused();
  bool deliver_events();
  void arm_timer();
  void finish_close();
  void release_socket();
  std::size_t send_burst(const ClientConnection::Burst& burst);
  struct KnownPath {
    SocketAddress local, remote;
    bool diverted = false;
  };
  const SocketAddress* path_local(const quic::ReceivedDatagram& d) const;

  uv::Loop& loop_;
  http::Url origin_;
  http::ClientOptions options_;
  QuicTuning tuning_;
  std::shared_ptr<quic::UdpSocket> socket_;
  quic::Attach attach_ = quic::Attach::exclusive;
  bool own_socket_ = false;  // bound by connect(): closed with the client
  std::uint64_t ignored_datagrams_ = 0;
  std::unique_ptr<uv::Timer> timer_;
  std::unique_ptr<ClientConnection> conn_;
  SocketAddress remote_;
  SocketAddress local_;
  std::optional<SocketAddress> endpoint_local_;
  std::vector<KnownPath> paths_;  // the first path and every migration's (failed ones removed)
  std::function<void(const SocketAddress&, const SocketAddress&, bool)> on_path_;
  std::function<void(Status)> on_ready_;
  std::function<void()> on_closed_;
  std::vector<std::tuple<http::ClientRequest, http::BodyCallback, http::CompleteCallback>> early_submits_;
  std::vector<ClientConnection::Completion> failed_submits_;
  std::optional<Error> setup_error_;
  std::optional<Error> socket_error_;
  bool waiting_writable_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool closed_reported_ = false;
  bool in_delivery_ = false;
  bool rerun_ = false;
  std::size_t reads_since_flush_ = 0;
  std::size_t flush_every_ = 16;
  std::shared_ptr<bool> alive_;
};

}  // namespace quiclab::h3
