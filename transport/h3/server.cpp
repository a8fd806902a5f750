#include "transport/h3/server.hpp"

#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>

#include <algorithm>
#include <deque>
#include <unordered_map>

#include "transport/core/deadline_timer.hpp"
#include "transport/core/log.hpp"
#include "transport/core/uv.hpp"

namespace quiclab::h3 {

namespace {

static_assert(sizeof(nghttp3_vec) == sizeof(ngtcp2_vec) && alignof(nghttp3_vec) == alignof(ngtcp2_vec),
              "nghttp3_vec and ngtcp2_vec must share a layout to hand data through without copies");

std::string_view view_of(nghttp3_rcbuf* b) {
  auto v = nghttp3_rcbuf_get_buf(b);
  return {reinterpret_cast<const char*>(v.base), v.len};
}

nghttp3_nv make_nv(std::string_view name, std::string_view value) {
  return nghttp3_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP3_NV_FLAG_NONE};
}

// One request stream: the request through the shared pipeline, then the response.
struct Stream {
  Stream(std::int64_t stream_id, const http::App& app, const http::StreamPolicy& policy, http::ConnectionBudget& budget,
         const SocketAddress& peer)
      : id(stream_id), pipe(app, policy, &budget, http::Protocol::h3, peer) {}
  std::int64_t id = -1;
  http::ServerStream pipe;
  bool responded = false;
  bool read_stopped = false;  // STOP_SENDING sent: the rest of the body is not wanted
  int status = 0;
  std::shared_ptr<http::BodySource> body;
  std::uint64_t size = 0;
  std::uint64_t offset = 0;   // next body byte to hand to nghttp3
  std::uint64_t unacked = 0;  // handed out, not yet acknowledged
  bool zero_copy = false;
  bool blocked_on_ack = false;  // read_data said WOULDBLOCK until acks free room
  // Copy path: chunks handed to nghttp3, freed front to back as acks arrive.
  std::deque<Bytes> chunks;
  std::size_t front_acked = 0;  // acknowledged bytes of chunks.front()
};

// The HTTP/3 application on one QUIC connection.
class H3Connection final : public quic::StreamApplication {
 public:
  H3Connection(ngtcp2_conn* conn, const http::App& app, const ServerConfig& config, const http::StreamPolicy& policy,
               SocketAddress peer)
      : conn_(conn),
        app_(app),
        config_(config),
        policy_(policy),
        peer_(std::move(peer)),
        budget_(app.body_budget(), app.config().max_buffered_body_bytes_per_connection) {
    auto& m = app_.metrics().of(http::Protocol::h3);
    ++m.connections_total;
    ++m.connections_active;
  }
  ~H3Connection() override {
    if (h3_ != nullptr) nghttp3_conn_del(h3_);
    --app_.metrics().of(http::Protocol::h3).connections_active;
  }
  H3Connection(const H3Connection&) = delete;
  H3Connection& operator=(const H3Connection&) = delete;

  int on_ready() override {
    if (h3_ != nullptr) return 0;
    nghttp3_callbacks cb{};
    cb.acked_stream_data = &H3Connection::cb_acked_stream_data;
    cb.stream_close = &H3Connection::cb_stream_close;
    cb.recv_data = &H3Connection::cb_recv_data;
    cb.deferred_consume = &H3Connection::cb_deferred_consume;
    cb.begin_headers = &H3Connection::cb_begin_headers;
    cb.recv_header = &H3Connection::cb_recv_header;
    cb.end_headers = &H3Connection::cb_end_headers;
    cb.recv_trailer = &H3Connection::cb_recv_trailer;
    cb.end_stream = &H3Connection::cb_end_stream;
    cb.stop_sending = &H3Connection::cb_stop_sending;
    cb.reset_stream = &H3Connection::cb_reset_stream;
    nghttp3_settings settings;
    nghttp3_settings_default(&settings);
    settings.qpack_max_dtable_capacity = 4096;
    settings.qpack_blocked_streams = 100;
    // The same header section limit as HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE,
    // announced to the client (RFC 9114 7.2.4.1); the pipeline enforces it.
    settings.max_field_section_size = policy_.max_header_list_size;
    if (int rv = nghttp3_conn_server_new(&h3_, &cb, &settings, nghttp3_mem_default(), this); rv != 0) {
      log::warn("h3: nghttp3_conn_server_new: {}", nghttp3_strerror(rv));
      return fail(rv);
    }
    const auto* params = ngtcp2_conn_get_local_transport_params(conn_);
    nghttp3_conn_set_max_client_streams_bidi(h3_, params->initial_max_streams_bidi);
    // nghttp3 bounds the QPACK decoder stream's unsent bytes by 20 x this
    // (never below 100 streams: 2000 bytes) and fails the connection with
    // ERR_QPACK_FATAL past it. A client with 1000 streams open can deliver
    // ~1000 requests in one receive batch, each adding a Section
    // Acknowledgement before we write again: that overflowed at the ~990th
    // request (gtlsclient -n 2000). Size the bound for the streams we allow.
    nghttp3_conn_set_max_concurrent_streams(h3_, static_cast<std::size_t>(params->initial_max_streams_bidi));
    std::int64_t ctrl = -1, qenc = -1, qdec = -1;
    if (ngtcp2_conn_open_uni_stream(conn_, &ctrl, nullptr) != 0 ||
        ngtcp2_conn_open_uni_stream(conn_, &qenc, nullptr) != 0 ||
        ngtcp2_conn_open_uni_stream(conn_, &qdec, nullptr) != 0) {
      log::info("h3: the client allows too few unidirectional streams for HTTP/3");
      error_code_ = NGHTTP3_H3_GENERAL_PROTOCOL_ERROR;
      return -1;
    }
    if (int rv = nghttp3_conn_bind_control_stream(h3_, ctrl); rv != 0) return fail(rv);
    if (int rv = nghttp3_conn_bind_qpack_streams(h3_, qenc, qdec); rv != 0) return fail(rv);
    return 0;
  }

  int on_handshake_completed() override { return 0; }

  int on_stream_data(std::int64_t stream_id, ByteView data, bool fin) override {
    if (h3_ == nullptr && on_ready() != 0) return -1;
    auto n = nghttp3_conn_read_stream(h3_, stream_id, data.data(), data.size(), fin ? 1 : 0);
    if ((n == NGHTTP3_ERR_MALFORMED_HTTP_MESSAGING || n == NGHTTP3_ERR_MALFORMED_HTTP_HEADER) &&
        ngtcp2_is_bidi_stream(stream_id)) {
      // A malformed request (e.g. a body that does not match its content-length)
      // is a stream error, H3_MESSAGE_ERROR (RFC 9114 4.1.2), as on HTTP/2: the
      // other requests of the connection go on.
      log::info("h3 {}: stream {}: malformed request ({}); resetting the stream", peer_.to_string(), stream_id,
                nghttp3_strerror(static_cast<int>(n)));
      ++app_.metrics().of(http::Protocol::h3).protocol_errors;
      stop_reading_.clear();
      nghttp3_conn_shutdown_stream_read(h3_, stream_id);
      ngtcp2_conn_shutdown_stream(conn_, stream_id, NGHTTP3_H3_MESSAGE_ERROR);
      return 0;
    }
    if (n < 0) {
      log::info("h3: bad data on stream {}: {}", stream_id, nghttp3_strerror(static_cast<int>(n)));
      ++app_.metrics().of(http::Protocol::h3).protocol_errors;
      return fail(static_cast<int>(n));
    }
    consume(stream_id, static_cast<std::size_t>(n));
    stop_reading_now();
    return 0;
  }

  int on_acked_stream_data(std::int64_t stream_id, std::uint64_t datalen) override {
    if (h3_ == nullptr) return 0;
    if (int rv = nghttp3_conn_add_ack_offset(h3_, stream_id, datalen); rv != 0) return fail(rv);
    return 0;
  }

  int on_stream_close(std::int64_t stream_id, std::optional<std::uint64_t> code) override {
    if (h3_ == nullptr) return 0;
    int rv = nghttp3_conn_close_stream(h3_, stream_id, code.value_or(NGHTTP3_H3_NO_ERROR));
    if (rv != 0 && rv != NGHTTP3_ERR_STREAM_NOT_FOUND) return fail(rv);
    // Client request streams: let the client open one more (RFC 9000 4.6).
    if (ngtcp2_is_bidi_stream(stream_id) && !ngtcp2_conn_is_local_stream(conn_, stream_id))
      ngtcp2_conn_extend_max_streams_bidi(conn_, 1);  // (void: cannot fail)
    return 0;
  }

  int on_stream_reset(std::int64_t stream_id, std::uint64_t) override {
    if (h3_ == nullptr) return 0;
    if (int rv = nghttp3_conn_shutdown_stream_read(h3_, stream_id); rv != 0) return fail(rv);
    return 0;
  }
  int on_stream_stop_sending(std::int64_t stream_id, std::uint64_t) override {
    if (h3_ == nullptr) return 0;
    if (int rv = nghttp3_conn_shutdown_stream_read(h3_, stream_id); rv != 0) return fail(rv);
    return 0;
  }
  int on_extend_max_remote_streams_bidi(std::uint64_t max_streams) override {
    if (h3_ != nullptr) nghttp3_conn_set_max_client_streams_bidi(h3_, max_streams);
    return 0;
  }
  int on_extend_max_stream_data(std::int64_t stream_id) override {
    if (h3_ == nullptr) return 0;
    if (int rv = nghttp3_conn_unblock_stream(h3_, stream_id); rv != 0) return fail(rv);
    return 0;
  }

  std::int64_t next_stream_data(std::int64_t& stream_id, bool& fin, std::span<ngtcp2_vec> vecs) override {
    if (h3_ == nullptr) return 0;
    int f = 0;
    auto n = nghttp3_conn_writev_stream(h3_, &stream_id, &f, reinterpret_cast<nghttp3_vec*>(vecs.data()), vecs.size());
    if (n < 0) {
      log::info("h3: nghttp3_conn_writev_stream: {}", nghttp3_strerror(static_cast<int>(n)));
      fail(static_cast<int>(n));
      return -1;
    }
    fin = f != 0;
    return n;
  }
  int stream_blocked(std::int64_t stream_id) override {
    nghttp3_conn_block_stream(h3_, stream_id);
    return 0;
  }
  int stream_shut_wr(std::int64_t stream_id) override {
    nghttp3_conn_shutdown_stream_write(h3_, stream_id);
    return 0;
  }
  int add_write_offset(std::int64_t stream_id, std::size_t n) override {
    if (h3_ == nullptr || stream_id < 0) return 0;
    if (int rv = nghttp3_conn_add_write_offset(h3_, stream_id, n); rv != 0) return fail(rv);
    return 0;
  }

  void begin_shutdown() override {
    // The final GOAWAY: requests already received complete, later ones are refused.
    if (h3_ != nullptr) (void)lib_ok(nghttp3_conn_shutdown(h3_), "nghttp3_conn_shutdown");
  }
  bool idle() const override { return streams_.empty(); }
  std::uint64_t error_code() const override { return error_code_; }
  std::uint64_t no_error_code() const override { return NGHTTP3_H3_NO_ERROR; }

 private:
  static H3Connection* self(void* p) { return static_cast<H3Connection*>(p); }

  /// rv of a library call that should not fail (out of memory, a state we did
  /// not expect): logged and counted. Returns rv == 0.
  bool lib_ok(int rv, const char* call) {
    if (rv == 0) return true;
    log::warn("h3 {}: {} failed: {}", peer_.to_string(), call, rv);
    ++app_.metrics().of(http::Protocol::h3).internal_errors;
    return false;
  }

  int fail(int nghttp3_rv) {
    error_code_ = nghttp3_err_infer_quic_app_error_code(nghttp3_rv);
    return -1;
  }

  // Bytes the HTTP/3 layer is done with return to the peer as flow-control credit.
  void consume(std::int64_t stream_id, std::size_t n) {
    if (n == 0) return;
    // Fails only when out of memory; the peer then sees less credit, not an error.
    (void)lib_ok(ngtcp2_conn_extend_max_stream_offset(conn_, stream_id, n), "ngtcp2_conn_extend_max_stream_offset");
    ngtcp2_conn_extend_max_offset(conn_, n);
  }

  static int cb_begin_headers(nghttp3_conn* h3, std::int64_t stream_id, void* ud, void*) {
    auto* c = self(ud);
    auto s = std::make_unique<Stream>(stream_id, c->app_, c->policy_, c->budget_, c->peer_);
    // nghttp3 calls us for a stream it just created, so it knows the stream.
    if (int rv = nghttp3_conn_set_stream_user_data(h3, stream_id, s.get());
        !c->lib_ok(rv, "nghttp3_conn_set_stream_user_data")) {
      return NGHTTP3_ERR_CALLBACK_FAILURE;
    }
    c->streams_[stream_id] = std::move(s);
    ++c->app_.metrics().of(http::Protocol::h3).streams_total;
    return 0;
  }

  static int cb_recv_header(nghttp3_conn*, std::int64_t, std::int32_t, nghttp3_rcbuf* name, nghttp3_rcbuf* value,
                            std::uint8_t, void*, void* sud) {
    auto* s = static_cast<Stream*>(sud);
    if (s != nullptr) s->pipe.header(view_of(name), view_of(value));
    return 0;
  }

  static int cb_recv_trailer(nghttp3_conn*, std::int64_t, std::int32_t, nghttp3_rcbuf* name, nghttp3_rcbuf* value,
                             std::uint8_t, void*, void* sud) {
    auto* s = static_cast<Stream*>(sud);
    if (s != nullptr) s->pipe.trailer(view_of(name), view_of(value));
    return 0;
  }

  static int cb_end_headers(nghttp3_conn*, std::int64_t, int fin, void* ud, void* sud) {
    auto* s = static_cast<Stream*>(sud);
    if (s == nullptr) return 0;
    // fin: end_stream follows and completes the request.
    (void)fin;
    s->pipe.headers_done(false);
    return self(ud)->respond_if_ready(*s);
  }

  static int cb_recv_data(nghttp3_conn*, std::int64_t stream_id, const std::uint8_t* data, std::size_t datalen,
                          void* ud, void* sud) {
    auto* c = self(ud);
    auto* s = static_cast<Stream*>(sud);
    c->consume(stream_id, datalen);
    if (s == nullptr) return 0;
    s->pipe.data(ByteView(data, datalen));
    return c->respond_if_ready(*s);
  }

  static int cb_deferred_consume(nghttp3_conn*, std::int64_t stream_id, std::size_t consumed, void* ud, void*) {
    self(ud)->consume(stream_id, consumed);
    return 0;
  }

  static int cb_end_stream(nghttp3_conn*, std::int64_t, void* ud, void* sud) {
    auto* s = static_cast<Stream*>(sud);
    if (s == nullptr) return 0;
    s->pipe.end_stream();
    return self(ud)->respond_if_ready(*s);
  }

  static int cb_stop_sending(nghttp3_conn*, std::int64_t stream_id, std::uint64_t code, void* ud, void*) {
    auto* c = self(ud);
    (void)c->lib_ok(ngtcp2_conn_shutdown_stream_read(c->conn_, stream_id, code), "ngtcp2_conn_shutdown_stream_read");
    return 0;
  }
  static int cb_reset_stream(nghttp3_conn*, std::int64_t stream_id, std::uint64_t code, void* ud, void*) {
    auto* c = self(ud);
    (void)c->lib_ok(ngtcp2_conn_shutdown_stream_write(c->conn_, stream_id, code), "ngtcp2_conn_shutdown_stream_write");
    return 0;
  }

  static int cb_stream_close(nghttp3_conn*, std::int64_t stream_id, std::uint64_t, void* ud, void*) {
    self(ud)->streams_.erase(stream_id);
    return 0;
  }

  static int cb_acked_stream_data(nghttp3_conn* h3, std::int64_t stream_id, std::uint64_t datalen, void* ud,
                                  void* sud) {
    auto* s = static_cast<Stream*>(sud);
    if (s == nullptr) return 0;
    s->unacked -= std::min(s->unacked, datalen);
    if (!s->zero_copy) {
      // Free fully acknowledged chunks (acks arrive in stream order here).
      std::uint64_t left = datalen;
      while (left > 0 && !s->chunks.empty()) {
        auto room = s->chunks.front().size() - s->front_acked;
        auto take = std::min<std::uint64_t>(room, left);
        s->front_acked += take;
        left -= take;
        if (s->front_acked == s->chunks.front().size()) {
          s->chunks.pop_front();
          s->front_acked = 0;
        }
      }
    }
    if (s->blocked_on_ack) {
      s->blocked_on_ack = false;
      if (int rv = nghttp3_conn_resume_stream(h3, stream_id); !self(ud)->lib_ok(rv, "nghttp3_conn_resume_stream")) {
        return NGHTTP3_ERR_CALLBACK_FAILURE;
      }
    }
    return 0;
  }

  static nghttp3_ssize cb_read_data(nghttp3_conn*, std::int64_t stream_id, nghttp3_vec* vec, std::size_t veccnt,
                                    std::uint32_t* pflags, void* ud, void* sud) {
    auto* c = self(ud);
    auto* s = static_cast<Stream*>(sud);
    if (s == nullptr || !s->body) {
      *pflags |= NGHTTP3_DATA_FLAG_EOF;
      return 0;
    }
    std::size_t n = 0;
    if (s->zero_copy) {
      // Hand out views into the source itself: no copy, valid while the stream lives.
      while (n < veccnt && s->offset < s->size && s->unacked < c->config_.max_unacked_per_stream) {
        auto max = std::min<std::uint64_t>(s->size - s->offset, c->config_.max_unacked_per_stream - s->unacked);
        auto view = s->body->stable_view(s->offset, static_cast<std::size_t>(max));
        if (view.empty()) break;
        vec[n++] = nghttp3_vec{const_cast<std::uint8_t*>(view.data()), view.size()};
        s->offset += view.size();
        s->unacked += view.size();
      }
    } else {
      // Copy path: one bounded chunk per call.
      if (s->offset < s->size && s->unacked < c->config_.max_buffered_per_stream && veccnt > 0) {
        auto want =
            std::min<std::uint64_t>({s->size - s->offset, 64 * 1024, c->config_.max_buffered_per_stream - s->unacked});
        Bytes chunk(static_cast<std::size_t>(want));
        auto got = s->body->read(s->offset, chunk);
        if (got <= 0) {
          log::warn("h3: stream {}: body read failed at offset {} ({}); resetting", stream_id, s->offset, got);
          (void)c->lib_ok(ngtcp2_conn_shutdown_stream(c->conn_, stream_id, NGHTTP3_H3_INTERNAL_ERROR),
                          "ngtcp2_conn_shutdown_stream");
          return NGHTTP3_ERR_WOULDBLOCK;
        }
        chunk.resize(static_cast<std::size_t>(got));
        s->chunks.push_back(std::move(chunk));
        auto& b = s->chunks.back();
        vec[n++] = nghttp3_vec{b.data(), b.size()};
        s->offset += b.size();
        s->unacked += b.size();
      }
    }
    std::uint64_t handed = 0;
    for (std::size_t i = 0; i < n; ++i) handed += vec[i].len;
    c->app_.metrics().of(http::Protocol::h3).response_body_bytes += handed;
    if (s->offset >= s->size) {
      *pflags |= NGHTTP3_DATA_FLAG_EOF;
      return static_cast<nghttp3_ssize>(n);
    }
    if (n == 0) {
      s->blocked_on_ack = true;
      return NGHTTP3_ERR_WOULDBLOCK;
    }
    return static_cast<nghttp3_ssize>(n);
  }

  int respond_if_ready(Stream& s) {
    if (s.responded || !s.pipe.response_ready()) return 0;
    s.responded = true;
    if (!s.pipe.refusal().empty()) log::info("h3 {}: stream {}: {}", peer_.to_string(), s.id, s.pipe.refusal());
    auto resp = s.pipe.take_response();
    s.status = resp.status;
    s.body = std::move(resp.body);
    s.size = s.body ? resp.body_size : 0;
    if (s.body) {
      // A source that offers a stable view of its first bytes offers it throughout.
      s.zero_copy = !s.body->stable_view(0, 1).empty();
    }
    const std::string status = std::to_string(resp.status);
    std::vector<nghttp3_nv> nva;
    nva.reserve(resp.fields.size() + 1);
    nva.push_back(make_nv(":status", status));
    for (const auto& h : resp.fields) nva.push_back(make_nv(h.name, h.value));
    nghttp3_data_reader reader{&H3Connection::cb_read_data};
    int rv = nghttp3_conn_submit_response(h3_, s.id, nva.data(), nva.size(), s.body ? &reader : nullptr);
    if (rv != 0) {
      log::info("h3: cannot submit the response on stream {}: {}", s.id, nghttp3_strerror(rv));
      return fail(rv);
    }
    stop_upload_if_unwanted(s);
    return 0;
  }

  // A response decided before the request ended (413, 503, 431): ask the client
  // to stop uploading (RFC 9114 4.1: STOP_SENDING with H3_NO_ERROR); what is
  // still in flight is discarded by QUIC, and its flow-control credit returned.
  void stop_upload_if_unwanted(Stream& s) {
    if (s.read_stopped || !s.pipe.body_unwanted()) return;
    s.read_stopped = true;
    // Not from inside nghttp3_conn_read_stream (our callers): on_stream_data does it after.
    stop_reading_.push_back(s.id);
  }

  void stop_reading_now() {
    for (auto id : stop_reading_) {
      if (streams_.count(id) == 0) continue;
      nghttp3_conn_shutdown_stream_read(h3_, id);
      ngtcp2_conn_shutdown_stream_read(conn_, id, NGHTTP3_H3_NO_ERROR);
    }
    stop_reading_.clear();
  }

  ngtcp2_conn* conn_;
  const http::App& app_;
  const ServerConfig& config_;
  const http::StreamPolicy& policy_;
  SocketAddress peer_;
  http::ConnectionBudget budget_;  // request bodies buffered on this connection
  nghttp3_conn* h3_ = nullptr;
  std::unordered_map<std::int64_t, std::unique_ptr<Stream>> streams_;
  std::vector<std::int64_t> stop_reading_;  // streams whose upload we stop after this read
  std::uint64_t error_code_ = NGHTTP3_H3_INTERNAL_ERROR;
};

}  // namespace

quic::ApplicationFactory application_factory(const http::App& app, const ServerConfig& config,
                                             const http::StreamPolicy& policy) {
  return [&app, &config, &policy](ngtcp2_conn* conn,
                                  const quic::ConnectionInfo& info) -> std::unique_ptr<quic::StreamApplication> {
    return std::make_unique<H3Connection>(conn, app, config, policy, info.remote);
  };
}

quic::ApplicationFactory application_factory(const http::App& app, const ServerConfig& config) {
  // The request policy from the config, alive as long as the factory (and so the core).
  auto policy =
      std::make_shared<const http::StreamPolicy>(http::StreamPolicy{config.max_header_list_size, config.alt_svc});
  auto inner = application_factory(app, config, *policy);
  return [policy, inner](ngtcp2_conn* conn, const quic::ConnectionInfo& info) { return inner(conn, info); };
}

struct Server::Impl final : quic::PacketSink {
  Impl(uv::Loop& l, const http::App& a, const ServerConfig& c, quic::UdpSocket& endpoint)
      : loop(l), app(a), config(c), policy{c.max_header_list_size, c.alt_svc}, socket(endpoint), timer(l) {}

  uv::Loop& loop;
  const http::App& app;
  ServerConfig config;
  http::StreamPolicy policy;
  std::unique_ptr<quic::tls::ServerContext> tls;
  quic::UdpSocket& socket;  // not ours: the owner closes it
  uv::DeadlineTimer timer;  // for the core's deadlines
  std::unique_ptr<quic::ServerCore> core;
  uv::DeadlineTimer::Id core_timer = 0;
  std::function<void()> on_shutdown_done;
  bool waiting_writable = false;
  bool stopped = false;
  bool exclusive = true;

  static Timestamp now() { return uv::Loop::hrtime(); }

  quic::SendResult send(const quic::Path& path, ByteView data, std::size_t segment_size, quic::Ecn ecn) override {
    auto r = socket.send(path.remote, data, segment_size, ecn, &path.local);
    if (r.status == quic::SendStatus::blocked && !waiting_writable) {
      waiting_writable = true;
      socket.wait_writable([this] {
        waiting_writable = false;
        core->on_writable(now());
        after_work();
      });
    }
    return r;
  }

  void stop_serving() {
    stopped = true;
    if (core_timer != 0) timer.remove(core_timer);
    timer.rearm();  // nothing registered: stops it
    if (exclusive) socket.stop();
  }

  // After every burst of work: re-arm the timer for the core's next deadline,
  // and finish a graceful shutdown once the last connection is gone.
  void after_work() {
    if (stopped) return;
    if (core->finished()) {
      stop_serving();
      if (on_shutdown_done) {
        auto done = std::move(on_shutdown_done);
        on_shutdown_done = nullptr;
        done();
      }
      return;
    }
    // Sub-millisecond deadlines (pacing) run on the next loop turn; others
    // are rounded up so the timer never fires before ngtcp2's deadline.
    timer.rearm();
  }
};

Server::Server(uv::Loop& loop, const http::App& app, const ServerConfig& config, quic::UdpSocket& endpoint)
    : impl_(std::make_unique<Impl>(loop, app, config, endpoint)) {}

Server::~Server() = default;

Status Server::start(quic::Attach attach) {
  auto& s = *impl_;
  if (s.socket.fd() < 0) return make_error(ErrorDomain::os, EBADF, "h3: the server's socket is not bound");
  quic::tls::ServerConfig tc;
  tc.cert_file = s.config.cert_file;
  tc.key_file = s.config.key_file;
  tc.keylog_file = s.config.keylog_file;
  tc.pinned_client_sha256 = s.config.pinned_client_sha256;
  tc.cipher = s.config.tls_cipher;
  tc.group = s.config.tls_group;
  auto tls = quic::tls::make_server_context(tc);
  if (!tls) return tls.error();
  s.tls = std::move(*tls);
  quic::ServerCoreConfig core_config = s.config.quic;
  if (!s.config.qlog_dir.empty() && !core_config.qlog) {
    std::error_code ec;
    std::filesystem::create_directories(s.config.qlog_dir, ec);
    if (ec)
      return make_error(ErrorDomain::os, ec.value(),
                        "h3: cannot create qlog dir " + s.config.qlog_dir.string() + ": " + ec.message());
    core_config.qlog = quic::qlog_to_directory(s.config.qlog_dir);
  }
  // The core asks the kernel nothing: the loopback MTU is measured here.
  if (core_config.udp_payload.forced == 0)
    core_config.loopback_udp_payload = quic::probe_loopback_udp_payload(s.socket.local_address());
  // Through s.policy, which set_alt_svc() may change after start().
  if (core_config.on_connection_end) {
    core_config.on_connection_end = [sink = core_config.on_connection_end](const ConnectionRecord& r) {
      ConnectionRecord named = r;
      named.protocol = "h3";
      sink(named);
    };
  }
  s.core = std::make_unique<quic::ServerCore>(core_config, *s.tls, s, application_factory(s.app, s.config, s.policy),
                                              s.config.random ? *s.config.random : Random::system());
  s.core_timer = s.timer.add(*s.core, [&s] { s.after_work(); });
  s.exclusive = attach == quic::Attach::exclusive;
  if (s.exclusive) {
    if (auto started = quic::attach(s.socket, *this); !started) return started;
  }
  log::info("h3: listening on udp {} (gso {}, gro {}, congestion control {})", s.socket.local_address().to_string(),
            s.socket.stats().gso_enabled, s.socket.stats().gro_enabled, quic::cc_algo_name(s.config.quic.cc_algo));
  return {};
}

SocketAddress Server::local_address() const { return impl_->socket.local_address(); }

void Server::handle_datagram(const quic::ReceivedDatagram& d) {
  auto& s = *impl_;
  if (!s.core || s.stopped) return;
  s.core->on_datagram(quic::Path{d.local, d.peer}, d.data, static_cast<quic::Ecn>(d.ecn), Impl::now());
}

void Server::handle_batch_end() {
  auto& s = *impl_;
  if (!s.core || s.stopped) return;
  s.core->flush(Impl::now());
  s.after_work();
}

void Server::set_alt_svc(std::string value) { impl_->policy.alt_svc = std::move(value); }

void Server::shutdown(std::function<void()> done) {
  auto& s = *impl_;
  if (!s.core || s.stopped) {
    s.stop_serving();
    if (done) done();
    return;
  }
  s.on_shutdown_done = std::move(done);
  s.core->shutdown(Impl::now());
  s.after_work();
}

void Server::close_now() {
  auto& s = *impl_;
  if (!s.core || s.stopped) return;
  s.core->close_all(Impl::now());
  s.after_work();
}

const quic::ServerCoreStats& Server::quic_stats() const {
  static const quic::ServerCoreStats empty{};
  return impl_->core ? impl_->core->stats() : empty;
}
const quic::UdpSocketStats& Server::udp_stats() const { return impl_->socket.stats(); }
std::size_t Server::connection_count() const { return impl_->core ? impl_->core->connection_count() : 0; }

}  // namespace quiclab::h3
