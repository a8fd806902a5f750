#include "transport/h2/client.hpp"

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <unordered_map>
#include <vector>

#include "transport/core/log.hpp"
#include "transport/http/session_file.hpp"
#include "transport/tls/tls.hpp"

namespace quiclab::h2 {

namespace {

// Stop pulling frames from nghttp2 while this much ciphertext waits in libuv's
// write queue; resume when a write completes. Keeps request uploads bounded.
constexpr std::size_t kWriteHighWater = 1024 * 1024;
// Plaintext gathered from nghttp2 before one SSL_write, so small frames share records.
constexpr std::size_t kPlaintextBatch = 64 * 1024;

enum class State { idle, connecting, handshaking, open, closing, closed };

struct Stream {
  std::int32_t id = -1;
  http::ClientResponse response;
  http::BodyCallback on_body;
  http::CompleteCallback on_complete;
  http::ClientRequest request;             // kept to retry a REFUSED_STREAM
  std::shared_ptr<http::BodySource> body;  // request body, or null
  std::uint64_t body_offset = 0;
  int attempts = 1;
};

// REFUSED_STREAM promises the server did not process the request (RFC 9113
// 8.7), so it is retried on the same connection a few times.
constexpr int kMaxAttempts = 3;
// ClientOptions::session_file (transport/http/session_file.hpp): {"format":
// "quiclab-h2-session", "version": 1, "tls": HEX of i2d_SSL_SESSION}.
constexpr std::string_view kSessionFormat = "quiclab-h2-session";
constexpr int kSessionVersion = 1;

struct Pending {
  http::ClientRequest request;
  http::BodyCallback on_body;
  http::CompleteCallback on_complete;
  int attempts = 1;
};

// Where to connect: the address given (a RacingClient attempt), or the URL's
// host when it is numeric. Names are resolved on the loop by RacingClient,
// never here with a blocking getaddrinfo.
Result<SocketAddress> target_address(const http::Url& url, const http::ClientOptions& options) {
  if (options.remote) return *options.remote;
  auto numeric = SocketAddress::from_ip(url.host, url.port);
  if (!numeric) {
    return make_error(ErrorDomain::config, EINVAL,
                      "cannot connect to " + url.host + ": a host name needs http::RacingClient to resolve it");
  }
  return numeric;
}

}  // namespace

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
  Impl(uv::Loop& l, http::Url o, http::ClientOptions opts)
      : loop(l), origin(std::move(o)), options(std::move(opts)), tcp(l), timer(l), kick_timer(l) {}
  ~Impl() {
    if (session) nghttp2_session_del(session);
  }

  uv::Loop& loop;
  http::Url origin;
  http::ClientOptions options;
  std::optional<tls::Context> tls_ctx;
  std::unique_ptr<tls::Session> tls;
  uv::TcpStream tcp;
  uv::Timer timer;       // idle timeout
  uv::Timer kick_timer;  // runs settle() after calls from the user API
  nghttp2_session* session = nullptr;
  State state = State::idle;
  bool closing_requested = false;
  bool goaway_received = false;
  bool detached = false;  // the Client was destroyed: call nothing back

  Timestamp start = 0, connected = 0, handshake_done = 0, last_activity = 0;
  std::function<void(Status)> on_ready;
  std::function<void()> on_closed;
  std::deque<Pending> queue;
  std::unordered_map<std::int32_t, std::unique_ptr<Stream>> streams;
  // User callbacks, run by settle() outside nghttp2: either `fn`, or
  // `complete` with its response (kept apart to save an allocation per request).
  struct Deferred {
    std::function<void()> fn;
    http::CompleteCallback complete;
    http::ClientResponse response;
  };
  std::vector<Deferred> deferred;
  std::vector<Deferred> delivering;
  bool in_settle = false;
  int depth = 0;  // > 0 while inside nghttp2
  Bytes plaintext;
  std::vector<std::uint8_t> read_buf = std::vector<std::uint8_t>(64 * 1024);
  std::string ssl_version;

  static Timestamp now() { return uv::Loop::hrtime(); }

  // ---- entry points from the user API -----------------------------------

  void connect(std::function<void(Status)> cb) {
    on_ready = std::move(cb);
    if (state != State::idle) {
      defer_ready(make_error(ErrorDomain::generic, EALREADY, "connect() called twice"));
      kick();
      return;
    }
    state = State::connecting;
    tls::ClientOptions topts;
    topts.alpn = {"h2"};
    topts.insecure = options.insecure;
    topts.ca_file = options.ca_file;
    topts.cipher = options.tls_cipher;
    topts.group = options.tls_group;
    auto ctx = tls::Context::client(topts);
    if (!ctx) {
      start = now();
      return fail_soon(ctx.error());
    }
    tls_ctx = std::move(*ctx);
    auto addr = target_address(origin, options);
    if (!addr) start = now();
    if (!addr) return fail_soon(addr.error());
    // The clock starts at the TCP connect (a raced connection's at its first
    // attempt: ClientOptions::clock_start): name resolution and loading the CA
    // store are local set-up, not part of the connection being measured.
    start = options.clock_start ? *options.clock_start : now();
    last_activity = now();
    std::weak_ptr<Impl> weak = weak_from_this();
    auto st = tcp.connect(*addr, [weak, target = addr->to_string()](Status s) {
      if (auto self = weak.lock()) self->on_connected(s, target);
    });
    if (!st) return fail_soon(st.error());
    arm_timeout();
  }

  void submit(http::ClientRequest req, http::BodyCallback on_body, http::CompleteCallback on_complete) {
    queue.push_back(Pending{std::move(req), std::move(on_body), std::move(on_complete)});
    kick();
  }

  void close(std::function<void()> cb, bool abort) {
    on_closed = std::move(cb);
    closing_requested = true;
    if (state == State::closed) {
      // Already gone (failed, or closed by the server): only report it.
      defer_closed();
    } else if (abort || state == State::idle || state == State::connecting || state == State::handshaking) {
      fail_connection(make_error(ErrorDomain::generic, ECANCELED, "connection closed by the client"),
                      /*graceful=*/false);
    }
    kick();
  }

  void detach() {
    detached = true;
    deferred.clear();  // (not `delivering`: settle() may be running one of them right now)
    queue.clear();
    streams.clear();
    timer.close();
    kick_timer.close();
    tcp.close();
    state = State::closed;
  }

  // Runs settle() from the loop soon, so user callbacks never run inside a user call.
  void kick() {
    if (detached || in_settle || kick_timer.active()) return;
    std::weak_ptr<Impl> weak = weak_from_this();
    kick_timer.start(0, 0, [weak] {
      if (auto self = weak.lock()) self->settle();
    });
  }

  void fail_soon(const Error& e) {
    fail_connection(e, false);
    kick();
  }

  // ---- libuv events ------------------------------------------------------

  void on_connected(Status s, const std::string& target) {
    if (!s) {
      fail_connection(
          make_error(s.error().domain, s.error().code, "cannot connect to " + target + ": " + s.error().message),
          false);
      return settle();
    }
    connected = last_activity = now();
    state = State::handshaking;
    tcp.set_nodelay(true);
    tls = std::make_unique<tls::Session>(*tls_ctx, origin.host);
    use_session_file();
    std::weak_ptr<Impl> weak = weak_from_this();
    tcp.on_drain([weak] {
      if (auto self = weak.lock()) self->settle();
    });
    auto st = tcp.read_start(
        [weak](ByteView data) {
          if (auto self = weak.lock()) self->on_read(data);
        },
        [weak](int status) {
          if (auto self = weak.lock()) self->on_end(status);
        });
    if (!st) {
      fail_connection(st.error(), false);
      return settle();
    }
    advance_handshake();
    settle();
  }

  void on_read(ByteView data) {
    last_activity = now();
    tls->feed(data);
    if (state == State::handshaking) advance_handshake();
    if (state == State::open || state == State::closing) read_application_data();
    settle();
  }

  void on_end(int status) {
    bool clean = status == UV_EOF;
    bool idle = streams.empty() && queue.empty() && (state == State::open || state == State::closing);
    if (idle && (clean || state == State::closing)) {
      // The server closed an idle connection (e.g. after GOAWAY): nothing is lost.
      state = State::closed;
      tcp.close();
      timer.close();
      if (closing_requested) defer_closed();
    } else {
      fail_connection(
          make_error(ErrorDomain::uv, status,
                     clean ? "connection closed by the server" : "connection error: " + uv::error_text(status)),
          false);
    }
    settle();
  }

  void on_timer() {
    if (state == State::closed) return;
    bool busy = state != State::open || !streams.empty() || !queue.empty();
    if (busy && now() - last_activity >= options.timeout_ms * kNanosPerMilli) {
      fail_connection(make_error(ErrorDomain::generic, ETIMEDOUT,
                                 "timeout: nothing received from " + origin.authority() + " for " +
                                     std::to_string(options.timeout_ms) + " ms"),
                      false);
      settle();
    }
  }

  void arm_timeout() {
    std::weak_ptr<Impl> weak = weak_from_this();
    auto period = std::clamp<std::uint64_t>(options.timeout_ms / 4, 10, 1000);
    timer.start(period, period, [weak] {
      if (auto self = weak.lock()) self->on_timer();
    });
  }

  // ---- TLS ---------------------------------------------------------------

  // ClientOptions::session_file: resume the stored session (TLS 1.3 session
  // resumption, a PSK from the server's ticket: no certificate, one round
  // trip as before: HTTP/2 sends no early data), and store each new ticket.
  // A missing file means a full handshake; a bad one too, with a warning.
  void use_session_file() {
    const auto& file = options.session_file;
    if (file.empty()) return;
    auto fields = http::read_session_file(file, kSessionFormat, kSessionVersion);
    Result<Bytes> der = fields ? http::required_field(*fields, "tls", file) : Result<Bytes>(fields.error());
    if (der) {
      if (auto st = tls->resume(*der); !st)
        log::warn("h2: ignoring session file {}: {}", file.string(), st.error().message);
    } else if (!der.error().is(ErrorDomain::config, ENOENT)) {
      log::warn("h2: ignoring session file: {}", der.error().message);
    }
    tls->on_new_session([file](Bytes ticket) {
      if (auto st = http::write_session_file(file, kSessionFormat, kSessionVersion, {{"tls", std::move(ticket)}}); !st)
        log::warn("h2: {}", st.error().message);
      else
        log::debug("h2: stored the session in {}", file.string());
    });
  }

  void advance_handshake() {
    auto r = tls->handshake();
    if (!r) {
      // Send the alert (e.g. bad_certificate) before closing.
      flush_tls();
      fail_connection(r.error(), false);
      return;
    }
    flush_tls();
    if (!*r) return;
    if (tls->alpn() != "h2") {
      fail_connection(
          make_error(ErrorDomain::generic, EPROTO,
                     "server at " + origin.authority() + " did not negotiate HTTP/2 (ALPN '" + tls->alpn() + "')"),
          false);
      return;
    }
    handshake_done = now();
    ssl_version = tls->version();
    if (auto st = start_session(); !st) {
      fail_connection(st.error(), false);
      return;
    }
    state = State::open;
    if (on_ready) {
      auto cb = std::move(on_ready);
      on_ready = nullptr;
      deferred.push_back({[cb] { cb(Status{}); }, {}, {}});
    }
    read_application_data();  // the server's SETTINGS may have come with the handshake
  }

  void read_application_data() {
    while (state == State::open || state == State::closing) {
      auto n = tls->read(read_buf);
      if (!n) {
        if (n.error().is_clean_close()) {
          on_end(UV_EOF);
        } else {
          fail_connection(n.error(), false);
        }
        return;
      }
      if (*n == 0) return;
      ++depth;
      auto rv = nghttp2_session_mem_recv(session, read_buf.data(), *n);
      --depth;
      if (rv < 0) {
        // nghttp2 has queued GOAWAY; send it before failing.
        flush();
        fail_connection(
            make_error(ErrorDomain::h2, static_cast<int>(rv),
                       std::string("HTTP/2 protocol error from the server: ") + nghttp2_strerror(static_cast<int>(rv))),
            false);
        return;
      }
    }
  }

  void flush_tls() {
    if (!tls || !tcp.is_open()) return;
    auto out = tls->take_output();
    if (out.empty()) return;
    auto st = tcp.write(std::move(out));
    if (!st) log::debug("h2 client: write to {} failed: {}", origin.authority(), st.error().message);
  }

  // ---- nghttp2 -----------------------------------------------------------

  Status start_session() {
    nghttp2_session_callbacks* cbs = nullptr;
    if (int rv = nghttp2_session_callbacks_new(&cbs); rv != 0) {
      return make_error(ErrorDomain::h2, rv, std::string("nghttp2_session_callbacks_new: ") + nghttp2_strerror(rv));
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Impl::cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &Impl::cb_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Impl::cb_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Impl::cb_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Impl::cb_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Impl::cb_stream_close);
    nghttp2_option* opt = nullptr;
    if (int rv = nghttp2_option_new(&opt); rv != 0) {
      nghttp2_session_callbacks_del(cbs);
      return make_error(ErrorDomain::h2, rv, std::string("nghttp2_option_new: ") + nghttp2_strerror(rv));
    }
    // Until the server's SETTINGS arrive, assume no more than we want anyway.
    // 100 is the floor RFC 9113 6.5.2 recommends servers allow.
    nghttp2_option_set_peer_max_concurrent_streams(opt,
                                                   std::clamp<std::uint32_t>(options.max_concurrent_streams, 1, 100));
    int rv = nghttp2_session_client_new2(&session, cbs, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
      return make_error(ErrorDomain::h2, rv, std::string("nghttp2_session_client_new2: ") + nghttp2_strerror(rv));
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, std::min<std::uint32_t>(options.stream_window, NGHTTP2_MAX_WINDOW_SIZE)},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
    };
    rv = nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, iv, std::size(iv));
    if (rv != 0)
      return make_error(ErrorDomain::h2, rv, std::string("nghttp2_submit_settings: ") + nghttp2_strerror(rv));
    auto conn_window =
        static_cast<std::int32_t>(std::min<std::uint32_t>(options.connection_window, NGHTTP2_MAX_WINDOW_SIZE));
    rv = nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, conn_window);
    if (rv != 0) return make_error(ErrorDomain::h2, rv, std::string("connection window: ") + nghttp2_strerror(rv));
    return {};
  }

  std::size_t stream_cap() const {
    std::uint32_t remote = nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return std::max<std::size_t>(1, std::min(options.max_concurrent_streams, remote));
  }

  // Moves queued requests onto streams while the concurrency cap allows.
  void pump() {
    if (state != State::open || goaway_received) return;
    while (!queue.empty() && streams.size() < stream_cap()) {
      Pending p = std::move(queue.front());
      queue.pop_front();
      start_stream(std::move(p));
    }
  }

  static nghttp2_nv make_nv(const std::string& name, const std::string& value) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                      NGHTTP2_NV_FLAG_NONE};
  }

  void start_stream(Pending p) {
    auto s = std::make_unique<Stream>();
    if (options.keep_metadata) s->response.url = p.request.url.to_string();
    s->response.timing.start = start;
    s->response.timing.connected = connected;
    s->response.timing.handshake_done = handshake_done;
    s->on_body = std::move(p.on_body);
    s->on_complete = std::move(p.on_complete);
    s->attempts = p.attempts;
    s->request = std::move(p.request);
    s->body = s->request.body;

    const std::string& method = s->request.method;
    const std::string& scheme = s->request.url.scheme;
    const std::string& path = s->request.url.path;
    const std::string authority = s->request.url.authority();
    static const std::string k_method = ":method", k_scheme = ":scheme", k_authority = ":authority", k_path = ":path",
                             k_ua = "user-agent", ua = "quiclab/0.1", k_cl = "content-length";
    std::vector<nghttp2_nv> nva = {make_nv(k_method, method), make_nv(k_scheme, scheme),
                                   make_nv(k_authority, authority), make_nv(k_path, path)};
    std::string content_length;
    if (s->body) {
      content_length = std::to_string(s->body->size());
      nva.push_back(make_nv(k_cl, content_length));
    }
    bool has_ua = false;
    for (const auto& h : s->request.headers) {
      nva.push_back(make_nv(h.name, h.value));
      has_ua = has_ua || h.name == "user-agent";
    }
    if (!has_ua) nva.push_back(make_nv(k_ua, ua));

    nghttp2_data_provider provider{};
    provider.source.ptr = s.get();
    provider.read_callback = &Impl::cb_read_body;
    std::int32_t id =
        nghttp2_submit_request(session, nullptr, nva.data(), nva.size(), s->body ? &provider : nullptr, s.get());
    if (id < 0) {
      s->response.error = make_error(ErrorDomain::h2, id, std::string("cannot start stream: ") + nghttp2_strerror(id));
      complete(std::move(s));
      return;
    }
    s->id = id;
    streams.emplace(id, std::move(s));
  }

  // Writes what nghttp2 has to send, through TLS, to the socket.
  void flush() {
    if (!session || !tcp.is_open() || depth > 0) return;
    while (state == State::open || state == State::closing) {
      if (!tcp.is_open() || tcp.write_queue_size() >= kWriteHighWater) break;
      const std::uint8_t* data = nullptr;
      ++depth;
      auto n = nghttp2_session_mem_send(session, &data);
      --depth;
      if (n < 0) {
        fail_connection(make_error(ErrorDomain::h2, static_cast<int>(n),
                                   std::string("nghttp2_session_mem_send: ") + nghttp2_strerror(static_cast<int>(n))),
                        false);
        return;
      }
      if (n == 0) break;
      plaintext.insert(plaintext.end(), data, data + n);
      if (plaintext.size() >= kPlaintextBatch) write_plaintext();
    }
    write_plaintext();
  }

  void write_plaintext() {
    if (plaintext.empty()) return;
    auto st = tls->write(plaintext);
    plaintext.clear();
    if (!st) return fail_connection(st.error(), false);
    flush_tls();
  }

  // The epilogue of every event: send what is due, start queued requests, run
  // user callbacks, and repeat while callbacks queued more work.
  void settle() {
    // Re-entered from a completion inside settle (e.g. a synchronous write
    // callback): the outer loop picks up whatever was queued.
    if (detached || in_settle) return;
    auto self = shared_from_this();  // a callback may drop the Client
    in_settle = true;
    for (int rounds = 0; rounds < 64; ++rounds) {
      if (state == State::open) {
        pump();
        flush();
      }
      maybe_finish_close();
      fail_stranded();
      if (deferred.empty()) break;
      delivering.clear();
      std::swap(delivering, deferred);
      for (auto& d : delivering) {
        if (d.fn) {
          d.fn();
        } else if (d.complete) {
          d.complete(std::move(d.response));
        }
        if (detached) return;
      }
    }
    delivering.clear();
    in_settle = false;
    if (!deferred.empty()) kick();  // very long chains continue on the next loop turn
  }

  // Requests that can no longer be sent (GOAWAY, or the connection is gone).
  void fail_stranded() {
    if (queue.empty()) return;
    std::optional<Error> why;
    if (state == State::closed)
      why = failure ? *failure : make_error(ErrorDomain::generic, ENOTCONN, "connection is closed");
    else if (goaway_received)
      why = make_error(ErrorDomain::generic, ECONNRESET, "server sent GOAWAY; request not sent");
    if (!why) return;
    while (!queue.empty()) {
      auto s = std::make_unique<Stream>();
      auto p = std::move(queue.front());
      queue.pop_front();
      if (options.keep_metadata) s->response.url = p.request.url.to_string();
      s->response.timing.start = start;
      s->response.timing.connected = connected;
      s->response.timing.handshake_done = handshake_done;
      s->on_complete = std::move(p.on_complete);
      s->response.error = *why;
      complete(std::move(s));
    }
  }

  void maybe_finish_close() {
    if (!closing_requested || state != State::open || !streams.empty() || !queue.empty()) return;
    // Graceful: GOAWAY(NO_ERROR), close_notify, then close TCP once written.
    state = State::closing;
    // Only fails when out of memory; the close then goes on without GOAWAY.
    if (int rv = nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR); rv != 0) {
      log::warn("h2 client: {}: cannot queue GOAWAY: {}", origin.authority(), nghttp2_strerror(rv));
    }
    flush();
    if (state != State::closing) return;
    tls->shutdown();
    auto out = tls->take_output();
    std::weak_ptr<Impl> weak = weak_from_this();
    auto done = [weak](Status) {
      if (auto self = weak.lock()) {
        self->state = State::closed;
        self->tcp.close();
        self->timer.close();
        self->defer_closed();
        self->settle();
      }
    };
    if (out.empty() || !tcp.write(std::move(out), done)) done(Status{});
  }

  void complete(std::unique_ptr<Stream> s) {
    if (s->response.timing.complete == 0) s->response.timing.complete = now();
    if (!s->on_complete) return;
    auto cb = std::move(s->on_complete);
    deferred.push_back({nullptr, std::move(cb), std::move(s->response)});
  }

  void defer_ready(const Error& e) {
    if (!on_ready) return;
    auto cb = std::move(on_ready);
    on_ready = nullptr;
    deferred.push_back({[cb, e] { cb(e); }, {}, {}});
  }

  void defer_closed() {
    if (!on_closed) return;
    auto cb = std::move(on_closed);
    on_closed = nullptr;
    deferred.push_back({[cb] { cb(); }, {}, {}});
  }

  std::optional<Error> failure;

  // Ends the connection: every open or queued request completes with `e`.
  void fail_connection(const Error& e, bool /*graceful*/) {
    if (state == State::closed) return;
    bool requested = e.is(ErrorDomain::generic, ECANCELED);
    // The caller reports the error (per request); this line is for debugging.
    if (!requested) log::debug("h2 client: {}: {}", origin.authority(), e.message);
    failure = e;
    state = State::closed;
    defer_ready(e);
    auto t = now();
    for (auto& [id, s] : streams) {
      s->response.error = e;
      s->response.timing.complete = t;
      if (s->on_complete) {
        auto cb = std::move(s->on_complete);
        deferred.push_back({nullptr, std::move(cb), std::move(s->response)});
      }
    }
    // nghttp2 may still point at these from its stream table; it is never
    // called again once closed, and the Stream objects die with the map.
    closed_streams.reserve(closed_streams.size() + streams.size());
    for (auto& [id, s] : streams) closed_streams.push_back(std::move(s));
    streams.clear();
    fail_stranded();
    tcp.close();
    timer.close();
    if (closing_requested) defer_closed();
  }
  std::vector<std::unique_ptr<Stream>> closed_streams;

  // ---- nghttp2 callbacks (user_data is the Impl) -------------------------

  static Stream* stream_of(nghttp2_session* session, std::int32_t id) {
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  static int cb_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (auto* s = stream_of(session, frame->hd.stream_id); s && s->response.timing.first_byte == 0) {
      s->response.timing.first_byte = now();
    }
    return 0;
  }

  static int cb_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto* s = stream_of(session, frame->hd.stream_id);
    if (!s) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      int status = 0;
      for (char c : v) status = status * 10 + (c - '0');  // nghttp2 checked it is 3 digits
      // 1xx responses are interim: the final status replaces them.
      s->response.status = status;
      return 0;
    }
    if (s->response.status >= 200 && static_cast<Impl*>(user)->options.keep_metadata) {
      if (s->response.headers.empty()) s->response.headers.reserve(8);  // typical responses carry a handful
      s->response.headers.push_back(http::Header{std::string(n), std::string(v)});
    }
    return 0;
  }

  static int cb_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                           void* user) {
    auto* self = static_cast<Impl*>(user);
    auto* s = stream_of(session, stream_id);
    // After an abort from a callback, nghttp2 may still parse the rest of the buffer.
    if (!s || self->state == State::closed) return 0;
    ByteView chunk(data, len);
    s->response.body_bytes += len;
    if (self->options.keep_body) append(s->response.body, chunk);
    if (s->on_body) s->on_body(chunk);
    return 0;
  }

  static int cb_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    auto* self = static_cast<Impl*>(user);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      self->goaway_received = true;
      auto code = frame->goaway.error_code;
      auto level = code == NGHTTP2_NO_ERROR ? spdlog::level::debug : spdlog::level::warn;
      spdlog::log(level, "h2 client: {} sent GOAWAY ({}), last stream {}", self->origin.authority(),
                  nghttp2_http2_strerror(code), frame->goaway.last_stream_id);
    }
    return 0;
  }

  static int cb_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void*) {
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      if (auto* s = stream_of(session, frame->hd.stream_id)) s->response.timing.request_sent = now();
    }
    return 0;
  }

  static int cb_stream_close(nghttp2_session* session, int32_t stream_id, uint32_t error_code, void* user) {
    auto* self = static_cast<Impl*>(user);
    auto* s = stream_of(session, stream_id);
    if (!s) return 0;
    auto it = self->streams.find(stream_id);
    if (it == self->streams.end()) return 0;
    if (error_code == NGHTTP2_REFUSED_STREAM && !self->goaway_received && s->response.status == 0 &&
        s->response.body_bytes == 0 && s->attempts < kMaxAttempts) {
      log::debug("h2 client: stream {} refused by {}; retrying", stream_id, self->origin.authority());
      auto owned = std::move(it->second);
      self->streams.erase(it);
      self->queue.push_front(Pending{std::move(owned->request), std::move(owned->on_body),
                                     std::move(owned->on_complete), owned->attempts + 1});
      return 0;
    }
    if (error_code != NGHTTP2_NO_ERROR) {
      s->response.error = make_error(ErrorDomain::h2, static_cast<int>(error_code),
                                     std::string("stream reset: ") + nghttp2_http2_strerror(error_code) +
                                         (self->goaway_received ? " (after GOAWAY)" : ""));
    } else if (s->response.status == 0) {
      s->response.error = make_error(ErrorDomain::generic, EPROTO, "stream closed without a response");
    }
    auto owned = std::move(it->second);
    self->streams.erase(it);
    self->complete(std::move(owned));
    return 0;
  }

  static ssize_t cb_read_body(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* data_flags,
                              nghttp2_data_source* source, void*) {
    auto* s = static_cast<Stream*>(source->ptr);
    auto size = s->body->size();
    if (s->body_offset >= size) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    auto n = s->body->read(s->body_offset, MutableByteView(buf, length));
    if (n < 0) {
      log::warn("h2 client: reading the request body failed: errno {}", -n);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->body_offset += static_cast<std::uint64_t>(n);
    if (s->body_offset >= size || n == 0) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return n;
  }
};

Client::Client(uv::Loop& loop, http::Url origin, http::ClientOptions options)
    : impl_(std::make_shared<Impl>(loop, std::move(origin), std::move(options))) {}

Client::~Client() { impl_->detach(); }

void Client::connect(std::function<void(Status)> on_ready) { impl_->connect(std::move(on_ready)); }

void Client::submit(http::ClientRequest request, http::BodyCallback on_body, http::CompleteCallback on_complete) {
  impl_->submit(std::move(request), std::move(on_body), std::move(on_complete));
}

void Client::close(std::function<void()> on_closed, bool abort) { impl_->close(std::move(on_closed), abort); }

std::size_t Client::streams_in_flight() const { return impl_->streams.size(); }

http::ConnectionInfo Client::info() const {
  http::ConnectionInfo i;
  i.protocol = "h2";
  if (impl_->tls) {
    i.tls_version = impl_->ssl_version;
    i.alpn = impl_->tls->alpn();
    i.resumed = SSL_session_reused(impl_->tls->ssl()) == 1;
    i.tls_cipher = impl_->tls->cipher();
    i.tls_group = impl_->tls->group();
    i.tls_library = "OpenSSL";
  }
  if (impl_->tcp.is_open()) {
    i.local_address = impl_->tcp.local_address().to_string();
    i.peer_address = impl_->tcp.peer_address().to_string();
  }
  return i;
}

}  // namespace quiclab::h2
