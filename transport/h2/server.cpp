#include "transport/h2/server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <new>
#include <string_view>

#include "transport/core/log.hpp"
#include "transport/h2/tcp_info.hpp"

namespace quiclab::h2 {

namespace {

using http::Protocol;

// One TLS write per batch: large enough that bulk transfers become few, full
// 16 KB TLS records and few syscalls; small enough to keep memory per busy
// connection modest.
constexpr std::size_t kBatch = 128 * 1024;
// After we decided to close, how long queued bytes (GOAWAY, close_notify) may
// take to leave before the socket is closed regardless.
constexpr std::uint64_t kLingerMs = 2'000;
// Streams we reset whose late frames from the client are still ignored, not errors.
constexpr std::size_t kRecentResets = 64;

// Opaque data of the PING that paces a graceful shutdown (RFC 9113 6.8).
constexpr std::uint8_t kShutdownPing[8] = {'q', 'l', 'g', 'o', 'a', 'w', 'a', 'y'};

std::uint64_t now_ms() { return uv::Loop::hrtime() / 1'000'000; }

const char* frame_type_name(std::uint8_t type) {
  switch (type) {
    case NGHTTP2_DATA:
      return "DATA";
    case NGHTTP2_HEADERS:
      return "HEADERS";
    case NGHTTP2_PRIORITY:
      return "PRIORITY";
    case NGHTTP2_RST_STREAM:
      return "RST_STREAM";
    case NGHTTP2_SETTINGS:
      return "SETTINGS";
    case NGHTTP2_PUSH_PROMISE:
      return "PUSH_PROMISE";
    case NGHTTP2_PING:
      return "PING";
    case NGHTTP2_GOAWAY:
      return "GOAWAY";
    case NGHTTP2_WINDOW_UPDATE:
      return "WINDOW_UPDATE";
    case NGHTTP2_CONTINUATION:
      return "CONTINUATION";
    default:
      return "unknown";
  }
}

// HTTP/2 error code names ("PROTOCOL_ERROR", ...) come from nghttp2_http2_strerror.
// (nghttp2 has no such function for frame types, hence the table above.)
const char* error_code_name(std::uint32_t code) { return nghttp2_http2_strerror(code); }

// Decrypted bytes are handed to nghttp2 at once, so one buffer serves every
// connection on the loop's thread (no per-connection read memory).
MutableByteView read_scratch() {
  static thread_local std::vector<std::uint8_t> buf(64 * 1024);
  return buf;
}

// The outgoing plaintext batch is filled by nghttp2_session_send and encrypted
// before flush() returns, so it too is shared by every connection on the thread:
// an idle connection holds no batch memory.
Bytes& send_batch() {
  static thread_local Bytes batch = [] {
    Bytes b;
    b.reserve(kBatch + 64);
    return b;
  }();
  return batch;
}

}  // namespace

/// One request stream: the request as it arrives (through the shared
/// pipeline), then the response being sent.
struct Stream {
  Stream(std::int32_t stream_id, const http::App& app, const http::StreamPolicy& policy, http::ConnectionBudget& budget,
         const SocketAddress& peer)
      : id(stream_id), pipe(app, policy, &budget, Protocol::h2, peer) {}
  std::int32_t id = 0;
  http::ServerStream pipe;
  bool responded = false;
  bool response_complete = false;  // END_STREAM sent
  bool reset_sent = false;
  http::OutgoingResponse response;
  std::uint64_t queued = 0;  // body bytes promised to nghttp2 (read callback)
  std::uint64_t sent = 0;    // body bytes written into the TLS batch
};

/// One accepted TCP+TLS connection carrying one nghttp2 server session.
class Connection {
 public:
  Connection(Server& server, uv::TcpStream stream);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();
  void start_drain();
  /// Closes the socket at once (queued bytes are dropped) and retires the object.
  void close_now(const char* why);

  // nghttp2 callbacks (static trampolines live in Server::Callbacks).
  int on_begin_frame(const nghttp2_frame_hd& hd);
  int on_begin_headers(const nghttp2_frame* frame);
  int on_header(const nghttp2_frame* frame, std::string_view name, std::string_view value);
  int on_frame_recv(const nghttp2_frame* frame);
  int on_data_chunk(std::int32_t stream_id, ByteView data);
  int on_stream_close(std::int32_t stream_id, std::uint32_t error_code);
  int on_frame_send(const nghttp2_frame* frame);
  int on_invalid_frame(const nghttp2_frame* frame, int lib_error);
  void on_error(std::string_view message);
  ssize_t on_send(ByteView data);
  ssize_t on_data_read(std::int32_t stream_id, std::size_t length, std::uint32_t* flags);
  int on_send_data(nghttp2_frame* frame, const std::uint8_t* framehd, std::size_t length);

 private:
  void on_read(ByteView data);
  void on_end(int status);
  void on_drain();
  void on_timer();
  void arm_timer();
  /// Produces frames while the session wants to write and the socket keeps up.
  void flush();
  void write_tls_output();
  bool over_high_water() const { return tcp_.write_queue_size() >= server_.config_.write_high_water; }
  /// The socket's descriptor; -1 when libuv has none.
  int socket_fd() {
    uv_os_fd_t fd = -1;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(tcp_.raw()), &fd) != 0) return -1;
    return fd;
  }
  /// The connection's MSS (TCP_MAXSEG once established); 1220 when the kernel does not say.
  std::size_t tcp_mss() {
    int mss = 0;
    socklen_t len = sizeof mss;
    const int fd = socket_fd();
    if (fd < 0 || ::getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &len) != 0 || mss < 536) return 1220;
    return static_cast<std::size_t>(mss);
  }
  /// The connection's record (ServerConfig::on_connection_end), from TCP_INFO now.
  void report_connection();
  void resume_deferred();
  /// Closes once nghttp2 has nothing more to read or write (after GOAWAY, or EOF).
  void maybe_close();
  /// Sends what is queued (GOAWAY, close_notify), then closes; at most kLingerMs later.
  void close_gracefully();
  /// Submits the pipeline's response once it has one.
  void respond_if_ready(Stream& stream);
  void maybe_stop_upload(Stream& stream);
  Stream* find(std::int32_t id);
  http::Metrics::Counters& counters() { return server_.app_.metrics().of(Protocol::h2); }
  /// rv of an nghttp2 call that should not fail (out of memory, a state we did
  /// not expect): a failure is logged and counted. Returns rv == 0.
  bool lib_ok(int rv, const char* call) {
    if (rv == 0) return true;
    log::warn("h2 {}: {} failed: {}", peer_text_, call, nghttp2_strerror(rv));
    counters().internal_errors++;
    return false;
  }

  Server& server_;
  uv::TcpStream tcp_;
  tls::Session tls_;
  uv::Timer timer_;
  nghttp2_session* session_ = nullptr;
  SocketAddress peer_;
  std::string peer_text_;
  Bytes& plain_ = send_batch();    // outgoing plaintext, encrypted once per flush round
  http::ConnectionBudget budget_;  // request bodies buffered on this connection
  std::unordered_map<std::int32_t, std::unique_ptr<Stream>> streams_;
  std::vector<std::int32_t> deferred_;       // streams whose DATA waits for the write queue to drain
  std::int32_t highest_client_stream_ = 0;   // highest stream id the client opened with HEADERS
  std::deque<std::int32_t> recently_reset_;  // streams we sent RST_STREAM on (last kRecentResets)
  std::uint64_t accepted_at_ = 0;
  std::uint64_t last_activity_ = 0;
  std::uint64_t closing_since_ = 0;
  std::uint64_t records_seen_ = 0, small_records_seen_ = 0;  // tls_'s counts already in the metrics
  std::optional<TcpInfo> info_at_accept_;                    // for the record: the initial window
  std::int64_t accepted_unix_ms_ = unix_ms_now();
  bool paced_ = false;
  bool first_request_seen_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool draining_ = false;
  bool in_flush_ = false;
};

// ---- nghttp2 callbacks --------------------------------------------------

struct Server::Callbacks {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_option* option = nullptr;

  static Connection* conn(void* user_data) { return static_cast<Connection*>(user_data); }

  Callbacks(const ServerConfig& config) {
    // Both only fail when out of memory: treated like operator new.
    if (nghttp2_session_callbacks_new(&callbacks) != 0) throw std::bad_alloc();
    nghttp2_session_callbacks_set_send_callback(
        callbacks, [](nghttp2_session*, const uint8_t* data, size_t length, int, void* u) -> ssize_t {
          return conn(u)->on_send(ByteView(data, length));
        });
    nghttp2_session_callbacks_set_send_data_callback(
        callbacks, [](nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                      nghttp2_data_source*, void* u) { return conn(u)->on_send_data(frame, framehd, length); });
    nghttp2_session_callbacks_set_on_begin_frame_callback(
        callbacks, [](nghttp2_session*, const nghttp2_frame_hd* hd, void* u) { return conn(u)->on_begin_frame(*hd); });
    nghttp2_session_callbacks_set_on_begin_headers_callback(
        callbacks,
        [](nghttp2_session*, const nghttp2_frame* frame, void* u) { return conn(u)->on_begin_headers(frame); });
    nghttp2_session_callbacks_set_on_header_callback(
        callbacks, [](nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* u) {
          return conn(u)->on_header(frame, std::string_view(reinterpret_cast<const char*>(name), namelen),
                                    std::string_view(reinterpret_cast<const char*>(value), valuelen));
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        callbacks, [](nghttp2_session*, const nghttp2_frame* frame, void* u) { return conn(u)->on_frame_recv(frame); });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        callbacks, [](nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* u) {
          return conn(u)->on_data_chunk(stream_id, ByteView(data, len));
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        callbacks, [](nghttp2_session*, int32_t stream_id, uint32_t error_code, void* u) {
          return conn(u)->on_stream_close(stream_id, error_code);
        });
    nghttp2_session_callbacks_set_on_frame_send_callback(
        callbacks, [](nghttp2_session*, const nghttp2_frame* frame, void* u) { return conn(u)->on_frame_send(frame); });
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(
        callbacks, [](nghttp2_session*, const nghttp2_frame* frame, int lib_error, void* u) {
          return conn(u)->on_invalid_frame(frame, lib_error);
        });
    nghttp2_session_callbacks_set_error_callback2(callbacks,
                                                  [](nghttp2_session*, int, const char* msg, size_t len, void* u) {
                                                    conn(u)->on_error(std::string_view(msg, len));
                                                    return 0;
                                                  });

    if (nghttp2_option_new(&option) != 0) throw std::bad_alloc();
    // We advertise SETTINGS_MAX_HEADER_LIST_SIZE and answer oversize requests
    // ourselves (431); the HPACK decoder still has to see every field to keep
    // its table in sync, which nghttp2 does.
    (void)config;
  }
  ~Callbacks() {
    nghttp2_session_callbacks_del(callbacks);
    nghttp2_option_del(option);
  }
};

// ---- Connection ---------------------------------------------------------

Connection::Connection(Server& server, uv::TcpStream stream)
    : server_(server),
      tcp_(std::move(stream)),
      tls_(*server.tls_),
      timer_(server.loop_),
      budget_(server.app_.body_budget(), server.app_.config().max_buffered_body_bytes_per_connection) {
  peer_ = tcp_.peer_address();
  peer_text_ = peer_.to_string();
  accepted_at_ = last_activity_ = now_ms();
}

Connection::~Connection() {
  if (session_) nghttp2_session_del(session_);
}

void Connection::start() {
  auto& c = counters();
  c.connections_total++;
  c.connections_active++;
  tcp_.set_nodelay(true);
  if (server_.config_.tcp_pacing) {
    paced_ = enable_tcp_pacing(socket_fd());
    if (!paced_) log::warn("h2 {}: cannot switch TCP pacing on: {}", peer_text_, std::strerror(errno));
  }
  // Before the first byte of the response: the initial window, as the record shows it.
  if (server_.config_.on_connection_end) info_at_accept_ = read_tcp_info(socket_fd());
  if (!lib_ok(nghttp2_session_server_new2(&session_, server_.callbacks_->callbacks, this, server_.callbacks_->option),
              "nghttp2_session_server_new2")) {
    session_ = nullptr;
    close_now("no HTTP/2 session");
    return;
  }
  const auto& cfg = server_.config_;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg.stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg.max_header_list_size},
  };
  // The server preface (RFC 9113 3.4): our SETTINGS, sent right after the handshake.
  // (Server::start checked the values, so only memory can make these fail.)
  bool ok = lib_ok(nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings)),
                   "nghttp2_submit_settings");
  if (ok && cfg.connection_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
    ok = lib_ok(nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                                      static_cast<std::int32_t>(cfg.connection_window)),
                "nghttp2_session_set_local_window_size");
  }
  if (!ok) {
    close_now("cannot queue the server preface");
    return;
  }
  auto st = tcp_.read_start([this](ByteView data) { on_read(data); }, [this](int status) { on_end(status); });
  if (!st) {
    log::warn("h2 {}: {}", peer_text_, st.error().message);
    close_now("read_start failed");
    return;
  }
  tcp_.on_drain([this] { on_drain(); });
  arm_timer();
  log::debug("h2 {}: accepted", peer_text_);
}

void Connection::on_read(ByteView data) {
  if (closed_) return;
  last_activity_ = now_ms();
  tls_.feed(data);
  if (!tls_.established()) {
    auto hs = tls_.handshake();
    if (!hs) {
      log::warn("h2 {}: {}", peer_text_, hs.error().message);
      counters().protocol_errors++;
      counters().tls_failure(http::TlsFailure::handshake)++;
      write_tls_output();  // the alert, if OpenSSL produced one
      close_gracefully();
      return;
    }
    if (!*hs) {
      write_tls_output();
      return;
    }
    // ALPN: the context refuses a client offering only other protocols; a
    // client offering none is taken as HTTP/2 with prior knowledge.
    auto alpn = tls_.alpn();
    if (!alpn.empty() && alpn != "h2") {
      log::warn("h2 {}: ALPN negotiated '{}', not h2; closing", peer_text_, alpn);
      close_gracefully();
      return;
    }
    log::debug("h2 {}: TLS {} {} established", peer_text_, tls_.version(), tls_.cipher());
    if (server_.config_.dynamic_records) {
      tls::RecordSizing rs;
      rs.small_bytes = tls::one_segment_record(tcp_mss(), tls_.version() == "TLSv1.3");
      rs.full_after = server_.config_.records_full_after;
      // A segment that holds a full record (loopback's 64 KiB MSS) needs no small phase.
      if (rs.small_bytes < 16384) tls_.set_record_sizing(rs);
    }
  }
  auto buf = read_scratch();
  while (!closed_) {
    auto n = tls_.read(buf);
    if (!n) {
      if (n.error().is_clean_close()) {
        log::debug("h2 {}: peer sent close_notify", peer_text_);
        close_now("TLS closed");
      } else {
        auto reason = tls_.peer_alert() ? http::TlsFailure::peer_alert : http::TlsFailure::record;
        log::warn("h2 {}: TLS failure ({}): {}", peer_text_, http::to_string(reason), n.error().message);
        counters().protocol_errors++;
        counters().tls_failure(reason)++;
        // The alert OpenSSL queued for a record it refused (none after the
        // peer's own fatal alert) goes out before the connection closes.
        write_tls_output();
        close_gracefully();
      }
      return;
    }
    if (*n == 0) break;
    auto rv = nghttp2_session_mem_recv(session_, buf.data(), *n);
    if (rv < 0) {
      // Fatal for the session: nghttp2 did not queue a GOAWAY itself for these
      // (bad client magic, flooding, callback failure), so we send one.
      auto code = rv == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR;
      log::warn("h2 {}: {}; sending GOAWAY {}", peer_text_, nghttp2_strerror(static_cast<int>(rv)),
                error_code_name(code));
      (void)lib_ok(nghttp2_session_terminate_session(session_, code), "nghttp2_session_terminate_session");
      break;
    }
  }
  flush();
  maybe_close();
}

void Connection::on_end(int status) {
  if (closed_) return;
  if (status == UV_EOF) {
    log::debug("h2 {}: peer closed the connection", peer_text_);
  } else {
    log::info("h2 {}: read error: {}", peer_text_, uv::error_text(status));
  }
  close_now("peer closed");
}

void Connection::on_drain() {
  if (closed_) return;
  last_activity_ = now_ms();
  if (over_high_water()) return;
  resume_deferred();
  flush();
  maybe_close();
}

void Connection::resume_deferred() {
  if (deferred_.empty()) return;
  // NGHTTP2_ERR_INVALID_ARGUMENT here only means the stream was closed (reset)
  // while it waited: there is nothing to resume, so the result is ignored.
  for (auto id : deferred_) (void)nghttp2_session_resume_data(session_, id);
  deferred_.clear();
}

void Connection::flush() {
  if (closed_ || in_flush_ || !tls_.established()) {
    if (!closed_) write_tls_output();
    return;
  }
  in_flush_ = true;
  plain_.clear();
  while (!closed_ && !over_high_water() && nghttp2_session_want_write(session_)) {
    int rv = nghttp2_session_send(session_);
    if (rv != 0) {
      log::warn("h2 {}: nghttp2_session_send: {}", peer_text_, nghttp2_strerror(rv));
      in_flush_ = false;
      close_now("send failed");
      return;
    }
    if (plain_.empty()) break;
    auto st = tls_.write(plain_);
    plain_.clear();
    {
      auto& c = counters();
      c.tls_records_small += tls_.small_records() - small_records_seen_;
      c.tls_records_full += (tls_.records() - tls_.small_records()) - (records_seen_ - small_records_seen_);
      records_seen_ = tls_.records();
      small_records_seen_ = tls_.small_records();
    }
    if (!st) {
      log::warn("h2 {}: {}", peer_text_, st.error().message);
      in_flush_ = false;
      close_now("TLS write failed");
      return;
    }
    write_tls_output();
  }
  in_flush_ = false;
  write_tls_output();
}

void Connection::write_tls_output() {
  if (closed_ || tls_.pending_output() == 0) return;
  auto st = tcp_.write(tls_.take_output());
  if (!st) {
    log::debug("h2 {}: {}", peer_text_, st.error().message);
    close_now("write failed");
  }
}

void Connection::maybe_close() {
  if (closed_ || closing_) return;
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) close_gracefully();
}

void Connection::close_gracefully() {
  if (closed_ || closing_) return;
  closing_ = true;
  closing_since_ = now_ms();
  if (tls_.established()) {
    tls_.shutdown();  // close_notify
    write_tls_output();
  }
  if (closed_) return;
  tcp_.read_stop();
  // uv_shutdown completes once every queued write went out; a peer that never
  // reads is cut off by the linger timer instead.
  tcp_.shutdown([this] { close_now("closed"); });
  arm_timer();
}

void Connection::close_now(const char* why) {
  if (closed_) return;
  closed_ = true;
  log::debug("h2 {}: connection closed ({})", peer_text_, why);
  counters().connections_active--;
  if (server_.config_.on_connection_end) report_connection();
  tcp_.close();
  timer_.close();
  server_.retire(this);
}

void Connection::report_connection() {
  const int fd = socket_fd();
  auto info = fd >= 0 ? read_tcp_info(fd) : std::nullopt;
  if (!info) return;  // no socket left to ask: nothing true to report
  ConnectionRecord r;
  r.protocol = "h2";
  r.peer = peer_text_;
  r.duration_ms = static_cast<double>(now_ms() - accepted_at_);
  r.start_unix_ms = accepted_unix_ms_;
  r.congestion_control = tcp_congestion(fd);
  r.segment_bytes = info->snd_mss;
  const auto& first = info_at_accept_ ? *info_at_accept_ : *info;
  r.initial_cwnd_packets = first.snd_cwnd;
  r.initial_cwnd_bytes = std::uint64_t{first.snd_cwnd} * first.snd_mss;
  // BBR paces by itself; Cubic and Reno only when asked (or under fq).
  r.paced = paced_ || r.congestion_control == "bbr";
  if (r.paced) {
    r.pacing_ss_pct = tcp_pacing_ratio("ss");
    r.pacing_ca_pct = tcp_pacing_ratio("ca");
  }
  r.bytes_sent = info->bytes_sent;
  r.packets_sent = info->segs_out;
  r.retransmitted_packets = info->total_retrans;
  r.retransmitted_bytes = info->bytes_retrans;
  r.timeouts = info->total_rto;
  r.min_rtt_ms = info->min_rtt_us / 1000.0;
  r.smoothed_rtt_ms = info->rtt_us / 1000.0;
  r.timer_ms = info->rto_us / 1000.0;
  r.final_cwnd_bytes = std::uint64_t{info->snd_cwnd} * info->snd_mss;
  r.tls_records_small = tls_.small_records();
  r.tls_records_full = tls_.records() - tls_.small_records();
  r.resumed = tls_.established() && tls_.resumed();
  r.early_data = false;  // HTTP/2 takes no TLS early data
  server_.config_.on_connection_end(r);
}

void Connection::start_drain() {
  if (closed_ || closing_ || draining_) return;
  draining_ = true;
  if (!tls_.established()) {
    close_now("shutdown before the handshake completed");
    return;
  }
  // Two-step GOAWAY (RFC 9113 6.8): a notice with 2^31-1 now, the final GOAWAY
  // with the last stream we processed once the PING comes back, so requests
  // already in flight towards us are not lost.
  bool queued = lib_ok(nghttp2_submit_shutdown_notice(session_), "nghttp2_submit_shutdown_notice") &&
                lib_ok(nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, kShutdownPing), "nghttp2_submit_ping");
  // Without the PING there is no second step: end with GOAWAY NO_ERROR now.
  if (!queued)
    (void)lib_ok(nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR), "nghttp2_session_terminate_session");
  flush();
  maybe_close();
}

void Connection::arm_timer() {
  if (closed_) return;
  const auto& cfg = server_.config_;
  std::uint64_t now = now_ms();
  std::uint64_t deadline;
  if (closing_)
    deadline = closing_since_ + kLingerMs;
  else if (!first_request_seen_)
    deadline = std::min(accepted_at_ + cfg.header_timeout_ms, last_activity_ + cfg.idle_timeout_ms);
  else
    deadline = last_activity_ + cfg.idle_timeout_ms;
  timer_.start(deadline > now ? deadline - now : 0, 0, [this] { on_timer(); });
}

void Connection::on_timer() {
  if (closed_) return;
  const auto& cfg = server_.config_;
  std::uint64_t now = now_ms();
  if (closing_) {
    if (now >= closing_since_ + kLingerMs) {
      close_now("linger timeout");
      return;
    }
  } else if (!first_request_seen_ && now >= accepted_at_ + cfg.header_timeout_ms) {
    log::warn("h2 {}: header-read timeout: no complete request headers {} ms after accept ({}); closing", peer_text_,
              cfg.header_timeout_ms, tls_.established() ? "TLS done" : "TLS handshake incomplete");
    counters().protocol_errors++;
    close_now("header-read timeout");
    return;
  } else if (now >= last_activity_ + cfg.idle_timeout_ms) {
    log::info("h2 {}: idle for {} ms with {} open streams; closing", peer_text_, now - last_activity_, streams_.size());
    if (tls_.established()) {
      (void)lib_ok(nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR), "nghttp2_session_terminate_session");
      flush();
      close_gracefully();
    } else {
      close_now("idle timeout");
    }
    return;
  }
  arm_timer();
}

Stream* Connection::find(std::int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

int Connection::on_begin_frame(const nghttp2_frame_hd& hd) {
  // RFC 9113 5.1.1: a new stream's id must be greater than every id the client
  // opened before; anything else is a connection error PROTOCOL_ERROR.
  // libnghttp2 1.52 silently ignores a HEADERS frame whose id is not above the
  // last one it received, so the check is ours. Even ids are nghttp2's to refuse.
  if (hd.type != NGHTTP2_HEADERS || (hd.stream_id & 1) == 0 || closing_) return 0;
  if (hd.stream_id > highest_client_stream_) {
    highest_client_stream_ = hd.stream_id;
    return 0;
  }
  // Trailers on a stream still open are fine, and so is a HEADERS that was
  // already in flight when we reset the stream (RFC 9113 5.1, "closed": ignored).
  if (nghttp2_session_find_stream(session_, hd.stream_id) != nullptr) return 0;
  if (std::find(recently_reset_.begin(), recently_reset_.end(), hd.stream_id) != recently_reset_.end()) return 0;
  log::warn(
      "h2 {}: HEADERS on stream {} after the client opened stream {} (RFC 9113 5.1.1); sending GOAWAY "
      "PROTOCOL_ERROR",
      peer_text_, hd.stream_id, highest_client_stream_);
  (void)lib_ok(nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR),
               "nghttp2_session_terminate_session");
  return 0;
}

int Connection::on_begin_headers(const nghttp2_frame* frame) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  streams_[frame->hd.stream_id] =
      std::make_unique<Stream>(frame->hd.stream_id, server_.app_, server_.policy_, budget_, peer_);
  counters().streams_total++;
  return 0;
}

int Connection::on_header(const nghttp2_frame* frame, std::string_view name, std::string_view value) {
  auto* s = find(frame->hd.stream_id);
  if (!s) return 0;
  // nghttp2 keeps decoding (the HPACK table must stay in sync); the pipeline
  // counts the section against our SETTINGS_MAX_HEADER_LIST_SIZE.
  if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
    s->pipe.header(name, value);
  else
    s->pipe.trailer(name, value);
  return 0;
}

int Connection::on_frame_recv(const nghttp2_frame* frame) {
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      auto* s = find(frame->hd.stream_id);
      if (!s) return 0;
      bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        first_request_seen_ = true;
        s->pipe.headers_done(end);
      } else if (end) {
        s->pipe.end_stream();
      }
      respond_if_ready(*s);
      break;
    }
    case NGHTTP2_DATA: {
      if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) break;
      auto* s = find(frame->hd.stream_id);
      if (!s) return 0;
      s->pipe.end_stream();
      respond_if_ready(*s);
      break;
    }
    case NGHTTP2_PING:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && draining_ &&
          std::memcmp(frame->ping.opaque_data, kShutdownPing, 8) == 0) {
        auto last = nghttp2_session_get_last_proc_stream_id(session_);
        (void)lib_ok(nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, nullptr, 0),
                     "nghttp2_submit_goaway");
      }
      break;
    case NGHTTP2_GOAWAY:
      log::debug("h2 {}: peer sent GOAWAY {} last-stream-id {}", peer_text_, error_code_name(frame->goaway.error_code),
                 frame->goaway.last_stream_id);
      break;
    default:
      break;
  }
  return 0;
}

int Connection::on_data_chunk(std::int32_t stream_id, ByteView data) {
  auto* s = find(stream_id);
  if (!s) return 0;
  s->pipe.data(data);
  respond_if_ready(*s);
  if (s->pipe.body_unwanted()) maybe_stop_upload(*s);
  return 0;
}

void Connection::maybe_stop_upload(Stream& s) {
  // The response is complete but the request body keeps coming (413, 503). RFC
  // 9113 8.1 lets us ask the client to stop with RST_STREAM(NO_ERROR), but curl
  // 7.88 then reports the (complete) response as failed; so the client may
  // finish an upload up to max_request_body more bytes (discarded), and only
  // beyond that is the stream reset.
  if (s.reset_sent || !s.response_complete || !s.pipe.body_unwanted()) return;
  if (s.pipe.discarded() <= server_.app_.config().max_request_body) return;
  s.reset_sent = true;
  (void)lib_ok(nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_NO_ERROR),
               "nghttp2_submit_rst_stream");
}

void Connection::respond_if_ready(Stream& s) {
  if (s.responded || !s.pipe.response_ready()) return;
  s.responded = true;
  if (!s.pipe.refusal().empty()) {
    log::info("h2 {}: stream {}: {}", peer_text_, s.id, s.pipe.refusal());
  }
  s.response = s.pipe.take_response();
  auto& r = s.response;
  char status[4];
  auto sres = std::to_chars(status, status + sizeof status, r.status);
  std::vector<nghttp2_nv> nva;
  nva.reserve(r.fields.size() + 1);
  auto add = [&](std::string_view n, std::string_view v) {
    nva.push_back({const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(n.data())),
                   const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(v.data())), n.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  };
  add(":status", std::string_view(status, static_cast<std::size_t>(sres.ptr - status)));
  for (const auto& h : r.fields) add(h.name, h.value);
  nghttp2_data_provider provider{};
  provider.source.ptr = &s;
  provider.read_callback = [](nghttp2_session*, int32_t stream_id, uint8_t*, size_t max, uint32_t* flags,
                              nghttp2_data_source*, void* u) -> ssize_t {
    return static_cast<Connection*>(u)->on_data_read(stream_id, max, flags);
  };
  int rv = nghttp2_submit_response(session_, s.id, nva.data(), nva.size(), r.body ? &provider : nullptr);
  if (rv != 0) {
    log::warn("h2 {}: stream {}: cannot submit response: {}", peer_text_, s.id, nghttp2_strerror(rv));
    counters().internal_errors++;
  }
}

ssize_t Connection::on_data_read(std::int32_t stream_id, std::size_t length, std::uint32_t* flags) {
  auto* s = find(stream_id);
  if (!s || !s->response.body) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  // Back-pressure: frames wait in the body source, not in memory, while the
  // socket is behind; on_drain resumes them.
  if (over_high_water()) {
    deferred_.push_back(stream_id);
    return NGHTTP2_ERR_DEFERRED;
  }
  auto size = s->response.body_size;
  auto n = static_cast<std::size_t>(std::min<std::uint64_t>(length, size - s->queued));
  s->queued += n;
  *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (s->queued == size) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int Connection::on_send_data(nghttp2_frame* frame, const std::uint8_t* framehd, std::size_t length) {
  auto* s = find(frame->hd.stream_id);
  if (!s || !s->response.body) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  std::size_t padlen = frame->data.padlen;
  if (!plain_.empty() && plain_.size() + 9 + padlen + length > kBatch) return NGHTTP2_ERR_WOULDBLOCK;
  auto start = plain_.size();
  plain_.insert(plain_.end(), framehd, framehd + 9);
  if (padlen > 0) plain_.push_back(static_cast<std::uint8_t>(padlen - 1));
  // The payload goes straight from the body source into the TLS batch.
  auto& body = *s->response.body;
  std::size_t done = 0;
  while (done < length) {
    auto view = body.stable_view(s->sent + done, length - done);
    if (!view.empty()) {
      plain_.insert(plain_.end(), view.begin(), view.end());
      done += view.size();
      continue;
    }
    auto at = plain_.size();
    plain_.resize(at + (length - done));
    auto n = body.read(s->sent + done, MutableByteView(plain_.data() + at, length - done));
    if (n <= 0) {
      log::warn("h2 {}: stream {}: response body read failed at offset {} ({}); resetting stream", peer_text_, s->id,
                s->sent + done, n < 0 ? std::strerror(static_cast<int>(-n)) : "unexpected end");
      plain_.resize(start);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    plain_.resize(at + static_cast<std::size_t>(n));
    done += static_cast<std::size_t>(n);
  }
  if (padlen > 1) plain_.insert(plain_.end(), padlen - 1, 0);
  s->sent += length;
  counters().response_body_bytes += length;
  if (plain_.size() >= kBatch) return NGHTTP2_ERR_PAUSE;
  return 0;
}

ssize_t Connection::on_send(ByteView data) {
  if (plain_.size() >= kBatch) return NGHTTP2_ERR_WOULDBLOCK;
  plain_.insert(plain_.end(), data.begin(), data.end());
  return static_cast<ssize_t>(data.size());
}

int Connection::on_stream_close(std::int32_t stream_id, std::uint32_t error_code) {
  if (error_code != NGHTTP2_NO_ERROR) {
    log::debug("h2 {}: stream {} closed with {}", peer_text_, stream_id, error_code_name(error_code));
  }
  streams_.erase(stream_id);
  return 0;
}

int Connection::on_frame_send(const nghttp2_frame* frame) {
  switch (frame->hd.type) {
    case NGHTTP2_GOAWAY:
      if (frame->goaway.error_code != NGHTTP2_NO_ERROR) {
        counters().protocol_errors++;
        log::warn(
            "h2 {}: sent GOAWAY {} last-stream-id {}{}{}", peer_text_, error_code_name(frame->goaway.error_code),
            frame->goaway.last_stream_id, frame->goaway.opaque_data_len ? ": " : "",
            std::string_view(reinterpret_cast<const char*>(frame->goaway.opaque_data), frame->goaway.opaque_data_len));
      } else {
        log::info("h2 {}: sent GOAWAY NO_ERROR last-stream-id {}", peer_text_, frame->goaway.last_stream_id);
      }
      break;
    case NGHTTP2_RST_STREAM:
      recently_reset_.push_back(frame->hd.stream_id);
      if (recently_reset_.size() > kRecentResets) recently_reset_.pop_front();
      if (frame->rst_stream.error_code != NGHTTP2_NO_ERROR) {
        counters().protocol_errors++;
        log::warn("h2 {}: sent RST_STREAM {} on stream {}", peer_text_, error_code_name(frame->rst_stream.error_code),
                  frame->hd.stream_id);
      }
      break;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        if (auto* s = find(frame->hd.stream_id)) {
          s->response_complete = true;
          maybe_stop_upload(*s);
        }
      }
      break;
    default:
      break;
  }
  return 0;
}

int Connection::on_invalid_frame(const nghttp2_frame* frame, int lib_error) {
  log::warn("h2 {}: invalid {} frame on stream {}: {}", peer_text_, frame_type_name(frame->hd.type),
            frame->hd.stream_id, nghttp2_strerror(lib_error));
  return 0;
}

void Connection::on_error(std::string_view message) { log::warn("h2 {}: {}", peer_text_, message); }

// ---- Server -------------------------------------------------------------

Server::Server(uv::Loop& loop, const http::App& app, ServerConfig config)
    : loop_(loop),
      app_(app),
      config_(std::move(config)),
      policy_{config_.max_header_list_size, config_.alt_svc},
      listener_(loop),
      reaper_(loop),
      drain_timer_(loop),
      callbacks_(std::make_unique<Callbacks>(config_)) {}

Server::~Server() {
  // Connections first: their handles close (and their sessions go) while the
  // callbacks they use still exist.
  connections_.clear();
  retired_.clear();
}

Status Server::start() {
  // SETTINGS values nghttp2 would refuse per connection are refused once, here.
  if (config_.stream_window > NGHTTP2_MAX_WINDOW_SIZE || config_.connection_window > NGHTTP2_MAX_WINDOW_SIZE) {
    return make_error(ErrorDomain::config, EINVAL,
                      "h2: stream and connection windows must be at most 2^31-1 bytes (RFC 9113 6.9.1)");
  }
  auto ctx = tls::Context::server({config_.cert, config_.key, {"h2"}, config_.tls_cipher, config_.tls_group});
  if (!ctx) return ctx.error();
  tls_ = std::move(*ctx);
  auto st = listener_.listen(config_.listen, config_.backlog, [this](uv::TcpStream s) { on_accept(std::move(s)); });
  if (!st) return st;
  if (config_.tcp_mss > 0) {
    // Accepted sockets inherit the listener's TCP_MAXSEG: our segments carry at
    // most this much (the peer's advertised MSS may lower it further).
    const int mss = static_cast<int>(config_.tcp_mss);
    if (::setsockopt(listener_.fd(), IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss) != 0) {
      int err = errno;
      listener_.close();
      return make_error(ErrorDomain::os, err, fmt::format("cannot set TCP_MAXSEG {}: {}", mss, std::strerror(err)));
    }
    log::info("h2: TCP MSS at most {}", mss);
  }
  if (config_.tcp_congestion.empty()) return st;
  // Accepted sockets inherit a congestion control set on the listener. Root
  // may pick any algorithm the kernel has; others only the allowed ones.
  const auto& cc = config_.tcp_congestion;
  if (::setsockopt(listener_.fd(), IPPROTO_TCP, TCP_CONGESTION, cc.data(), static_cast<socklen_t>(cc.size())) != 0) {
    int err = errno;
    listener_.close();
    return make_error(ErrorDomain::os, err,
                      "cannot use TCP congestion control '" + cc + "': " + std::strerror(err) +
                          " (available: see /proc/sys/net/ipv4/tcp_available_congestion_control)");
  }
  log::info("h2: TCP congestion control {}", cc);
  return {};
}

SocketAddress Server::local_address() const { return listener_.local_address(); }

void Server::on_accept(uv::TcpStream stream) {
  if (draining_) return;  // the stream closes as it goes out of scope
  auto conn = std::make_unique<Connection>(*this, std::move(stream));
  auto* raw = conn.get();
  connections_.emplace(raw, std::move(conn));
  raw->start();
}

void Server::retire(Connection* c) {
  auto it = connections_.find(c);
  if (it == connections_.end()) return;
  // Deleted on a later loop turn: we may be deep inside this connection's own
  // callbacks (nghttp2, libuv) right now.
  retired_.push_back(std::move(it->second));
  connections_.erase(it);
  if (!reaper_.active()) reaper_.start(0, 0, [this] { reap(); });
}

void Server::reap() {
  retired_.clear();
  if (draining_ && connections_.empty() && on_shutdown_done_) {
    drain_timer_.stop();
    auto done = std::move(on_shutdown_done_);
    on_shutdown_done_ = nullptr;
    done();
  }
}

void Server::shutdown(std::function<void()> on_done) {
  on_shutdown_done_ = std::move(on_done);
  if (!draining_) {
    draining_ = true;
    listener_.close();
    log::info("h2: shutting down: GOAWAY to {} connections, draining for up to {} ms", connections_.size(),
              config_.drain_timeout_ms);
    std::vector<Connection*> all;
    for (auto& [raw, c] : connections_) all.push_back(raw);
    for (auto* c : all) c->start_drain();
    drain_timer_.start(config_.drain_timeout_ms, 0, [this] {
      log::warn("h2: drain timeout: closing {} connections still open", connections_.size());
      close_now();
    });
  }
  // Completion is always reported from a loop callback.
  if (!reaper_.active()) reaper_.start(0, 0, [this] { reap(); });
}

void Server::close_now() {
  draining_ = true;
  listener_.close();
  std::vector<Connection*> all;
  for (auto& [raw, c] : connections_) all.push_back(raw);
  for (auto* c : all) c->close_now("server closing");
  if (!reaper_.active()) reaper_.start(0, 0, [this] { reap(); });
}

}  // namespace quiclab::h2
