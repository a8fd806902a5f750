#include "transport/h3/client.hpp"

#include <fmt/format.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "transport/core/deadline_timer.hpp"
#include "transport/core/log.hpp"
#include "transport/core/uv.hpp"
#include "transport/http/session_file.hpp"
#include "transport/quic/path_mtu.hpp"
#include "transport/quic/tls_backend.hpp"
#include "transport/quic/udp_socket.hpp"

namespace quiclab::h3 {

namespace {

constexpr std::string_view kSessionFormat = "quiclab-h3-session";
constexpr int kSessionVersion = 2;
constexpr std::size_t kMaxSegments = 64;  // UDP_MAX_SEGMENTS
// A GSO send is one UDP datagram to the kernel: at most 65507 bytes in all.
constexpr std::size_t kMaxBurstBytes = 65507;
constexpr std::size_t kClosePayload = NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE;  // CONNECTION_CLOSE fits anywhere

std::string liberr_text(int rv) { return std::string(ngtcp2_strerror(rv)); }

nghttp3_nv make_nv(std::string_view name, std::string_view value) {
  return nghttp3_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP3_NV_FLAG_NONE};
}

// Text for a QUIC CONNECTION_CLOSE we received.
std::string describe_close(const ngtcp2_connection_close_error& e) {
  std::string reason(reinterpret_cast<const char*>(e.reason), e.reason ? e.reasonlen : 0);
  std::string kind = e.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION ? "application" : "transport";
  std::string text = fmt::format("server closed the connection ({} error 0x{:x}", kind, e.error_code);
  if (e.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT && (e.error_code & 0xff00) == 0x0100) {
    text += ", TLS " + quic::tls::alert_text(static_cast<unsigned>(e.error_code & 0xff));
  }
  if (!reason.empty()) text += ": " + reason;
  return text + ")";
}

}  // namespace

// ---------------------------------------------------------------------------
// Session file (transport/http/session_file.hpp):
//   {"format": "quiclab-h3-session", "version": 2,
//    "tls": HEX, "transport_params": HEX, "token": HEX (may be absent)}
// (Version 1, a private line format, is not read: such a file is refused
// with an error and the next connection simply does a full handshake.)

Result<StoredSession> load_session(const std::filesystem::path& file) {
  auto fields = http::read_session_file(file, kSessionFormat, kSessionVersion);
  if (!fields) return fields.error();
  StoredSession s;
  auto tls = http::required_field(*fields, "tls", file);
  if (!tls) return tls.error();
  auto params = http::required_field(*fields, "transport_params", file);
  if (!params) return params.error();
  s.tls_session = std::move(*tls);
  s.transport_params = std::move(*params);
  if (auto it = fields->find("token"); it != fields->end()) s.token = it->second;
  return s;
}

Status save_session(const std::filesystem::path& file, const StoredSession& session) {
  http::SessionFields fields{{"tls", session.tls_session}, {"transport_params", session.transport_params}};
  if (!session.token.empty()) fields.emplace("token", session.token);
  return http::write_session_file(file, kSessionFormat, kSessionVersion, fields);
}

// ---------------------------------------------------------------------------

namespace {

ngtcp2_conn* get_conn_from_ref(ngtcp2_crypto_conn_ref* ref) {
  return static_cast<ClientConnection*>(ref->user_data)->conn();
}

// ngtcp2 callbacks: each forwards to the ClientConnection in user_data.
#define QL_SELF static_cast<ClientConnection*>(user_data)

int cb_recv_stream_data(ngtcp2_conn*, std::uint32_t flags, std::int64_t stream_id, std::uint64_t,
                        const std::uint8_t* data, std::size_t len, void* user_data, void*) {
  return QL_SELF->on_recv_stream_data(flags, stream_id, data, len);
}
int cb_acked_stream_data_offset(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, std::uint64_t len, void* user_data,
                                void*) {
  return QL_SELF->on_acked_stream_data(stream_id, len);
}
int cb_stream_close(ngtcp2_conn*, std::uint32_t flags, std::int64_t stream_id, std::uint64_t app_error_code,
                    void* user_data, void*) {
  return QL_SELF->on_stream_close(flags, stream_id, app_error_code);
}
int cb_stream_reset(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, std::uint64_t, void* user_data, void*) {
  return QL_SELF->on_stream_reset(stream_id);
}
int cb_stream_stop_sending(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, void* user_data, void*) {
  return QL_SELF->on_stream_reset(stream_id);
}
int cb_handshake_completed(ngtcp2_conn*, void* user_data) { return QL_SELF->on_handshake_completed(); }
int cb_path_validation(ngtcp2_conn*, std::uint32_t, const ngtcp2_path* path, ngtcp2_path_validation_result res,
                       void* user_data) {
  QL_SELF->on_path_validation(SocketAddress(static_cast<const sockaddr*>(path->local.addr)),
                              SocketAddress(static_cast<const sockaddr*>(path->remote.addr)),
                              res == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS);
  return 0;
}
int cb_recv_rx_key(ngtcp2_conn*, ngtcp2_crypto_level level, void* user_data) {
  if (level != NGTCP2_CRYPTO_LEVEL_APPLICATION) return 0;
  return QL_SELF->on_recv_rx_key_application();
}
int cb_recv_new_token(ngtcp2_conn*, const ngtcp2_vec* token, void* user_data) {
  static_cast<ClientConnection*>(user_data)->on_new_token(ByteView(token->base, token->len));
  return 0;
}

int cb_early_data_rejected(ngtcp2_conn*, void* user_data) {
  QL_SELF->on_early_data_rejected();
  return 0;
}
int cb_extend_max_streams_bidi(ngtcp2_conn*, std::uint64_t, void*) {
  // Nothing to do here: write() opens queued streams whenever credit exists.
  return 0;
}
int cb_extend_max_stream_data(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, void* user_data, void*) {
  return QL_SELF->on_extend_max_stream_data(stream_id);
}
void cb_rand(std::uint8_t* dest, std::size_t len, const ngtcp2_rand_ctx* ctx) {
  static_cast<Random*>(ctx->native_handle)->fill(dest, len);
}
int cb_get_new_connection_id(ngtcp2_conn*, ngtcp2_cid* cid, std::uint8_t* token, std::size_t cidlen, void* user_data) {
  QL_SELF->random().fill(cid->data, cidlen);
  cid->datalen = cidlen;
  // A client never needs to recognise its own stateless resets: a random token does.
  QL_SELF->random().fill(token, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}
// ngtcp2's own debug log, at trace level only (it is very chatty).
void cb_log_printf(void*, const char* format, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(buf, sizeof(buf), format, ap);
  va_end(ap);
  log::trace("ngtcp2: {}", buf);
}
void cb_qlog(void* user_data, std::uint32_t flags, const void* data, std::size_t len) {
  QL_SELF->on_qlog(data, len, (flags & NGTCP2_QLOG_WRITE_FLAG_FIN) != 0);
}

// nghttp3 callbacks.
int h3_stream_close(nghttp3_conn*, std::int64_t stream_id, std::uint64_t app_error_code, void* user_data, void*) {
  return QL_SELF->on_http_stream_close(stream_id, app_error_code);
}
int h3_recv_data(nghttp3_conn*, std::int64_t stream_id, const std::uint8_t* data, std::size_t len, void* user_data,
                 void*) {
  return QL_SELF->on_http_recv_data(stream_id, data, len);
}
int h3_deferred_consume(nghttp3_conn*, std::int64_t stream_id, std::size_t consumed, void* user_data, void*) {
  QL_SELF->on_http_consume(stream_id, consumed);
  return 0;
}
int h3_begin_headers(nghttp3_conn*, std::int64_t stream_id, void* user_data, void*) {
  return QL_SELF->on_http_begin_headers(stream_id);
}
int h3_recv_header(nghttp3_conn*, std::int64_t stream_id, std::int32_t, nghttp3_rcbuf* name, nghttp3_rcbuf* value,
                   std::uint8_t, void* user_data, void*) {
  auto n = nghttp3_rcbuf_get_buf(name);
  auto v = nghttp3_rcbuf_get_buf(value);
  return QL_SELF->on_http_header(stream_id, ByteView(n.base, n.len), ByteView(v.base, v.len));
}
int h3_stop_sending(nghttp3_conn*, std::int64_t stream_id, std::uint64_t code, void* user_data, void*) {
  return QL_SELF->on_http_stop_sending(stream_id, code);
}
int h3_end_stream(nghttp3_conn*, std::int64_t stream_id, void* user_data, void*) {
  return QL_SELF->on_http_end_stream(stream_id);
}
int h3_reset_stream(nghttp3_conn*, std::int64_t stream_id, std::uint64_t code, void* user_data, void*) {
  return QL_SELF->on_http_reset_stream(stream_id, code);
}
int h3_shutdown(nghttp3_conn*, std::int64_t id, void* user_data) { return QL_SELF->on_http_goaway(id); }
int h3_acked_stream_data(nghttp3_conn*, std::int64_t, std::uint64_t, void*, void*) { return 0; }

#undef QL_SELF

}  // namespace

// ---------------------------------------------------------------------------

struct ClientConnection::Stream {
  std::int64_t id = -1;
  http::ClientRequest request;
  http::BodyCallback on_body;
  http::CompleteCallback on_complete;
  http::ClientResponse response;
  Bytes body_copy;  // The request body when its source offers no stable view.
  ByteView body;    // Request body bytes; they live as long as this stream.
  bool body_given = false;
  bool finished = false;
  bool early = false;  // Sent as 0-RTT.
};

namespace {
nghttp3_ssize read_request_body(nghttp3_conn*, std::int64_t, nghttp3_vec* vec, std::size_t veccnt,
                                std::uint32_t* pflags, void*, void* stream_user_data) {
  auto* s = static_cast<ClientConnection::Stream*>(stream_user_data);
  *pflags |= NGHTTP3_DATA_FLAG_EOF;
  if (s == nullptr || s->body_given || s->body.empty() || veccnt == 0) return 0;
  // The whole body in one vector: it stays valid until the stream closes,
  // which is after the peer acknowledged it.
  vec[0].base = const_cast<std::uint8_t*>(s->body.data());
  vec[0].len = s->body.size();
  s->body_given = true;
  return 1;
}
}  // namespace

ClientConnection::ClientConnection(Config config) : config_(std::move(config)) {}

ClientConnection::~ClientConnection() {
  if (http_) nghttp3_conn_del(http_);
  if (conn_) ngtcp2_conn_del(conn_);
}

Result<std::unique_ptr<ClientConnection>> ClientConnection::create(Config config, Timestamp now) {
  std::unique_ptr<ClientConnection> c(new ClientConnection(std::move(config)));
  if (auto st = c->init(now); !st) return st.error();
  return c;
}

Status ClientConnection::init(Timestamp now) {
  start_ = config_.options.clock_start ? *config_.options.clock_start : now;
  now_ = now;
  const auto& opt = config_.options;
  conn_ref_.get_conn = get_conn_from_ref;
  conn_ref_.user_data = this;

  // TLS session, through the crypto seam (GnuTLS today).
  if (!config_.tls) {
    quic::tls::ClientConfig tc;
    tc.insecure = opt.insecure;
    tc.ca_file = opt.ca_file;
    tc.pinned_sha256 = opt.pinned_sha256;
    tc.cert_file = opt.client_cert_file;
    tc.key_file = opt.client_key_file;
    tc.cipher = opt.tls_cipher;
    tc.group = opt.tls_group;
    auto ctx = quic::tls::make_client_context(tc);
    if (!ctx) return ctx.error();
    config_.tls = std::shared_ptr<quic::tls::ClientContext>(std::move(*ctx));
  }
  std::optional<StoredSession> stored = config_.resume;
  quic::tls::ClientSessionOptions so;
  so.server_name = config_.origin.host;
  if (stored) so.resumption_data = stored->tls_session;
  if (config_.on_session) so.on_new_session = [this](Bytes data) { on_session_ticket(std::move(data)); };
  auto session = config_.tls->new_session(&conn_ref_, so);
  if (!session) return session.error();
  tls_ = std::move(*session);
  // A NEW_TOKEN token proves our address to the server whether or not the TLS
  // session can be resumed (it is bound to the address, not the session).
  Bytes token = stored ? stored->token : Bytes{};
  if (stored && !tls_->resumption_offered()) stored.reset();

  // QUIC connection.
  ngtcp2_cid scid, dcid;
  scid.datalen = 17;
  dcid.datalen = 18;
  random().fill(scid.data, scid.datalen);
  random().fill(dcid.data, dcid.datalen);

  ngtcp2_callbacks cb{};
  cb.client_initial = ngtcp2_crypto_client_initial_cb;
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.handshake_completed = cb_handshake_completed;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.recv_stream_data = cb_recv_stream_data;
  cb.acked_stream_data_offset = cb_acked_stream_data_offset;
  cb.stream_close = cb_stream_close;
  cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
  cb.extend_max_local_streams_bidi = cb_extend_max_streams_bidi;
  cb.rand = cb_rand;
  cb.get_new_connection_id = cb_get_new_connection_id;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.stream_reset = cb_stream_reset;
  cb.extend_max_stream_data = cb_extend_max_stream_data;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.stream_stop_sending = cb_stream_stop_sending;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.recv_rx_key = cb_recv_rx_key;
  cb.early_data_rejected = cb_early_data_rejected;
  cb.path_validation = cb_path_validation;
  if (config_.on_session) cb.recv_new_token = cb_recv_new_token;

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = now;
  qlog_origin_ = now;
  settings.rand_ctx.native_handle = &random();
  settings.max_window = opt.connection_window;
  settings.max_stream_window = opt.stream_window;
  settings.ack_thresh = config_.tuning.ack_thresh;
  const quic::UdpPayloadPolicy udp_payload{opt.max_udp_payload};
  quic::apply_udp_payload(settings, quic::udp_payload_for(config_.remote, udp_payload, config_.loopback_udp_payload));
  if (!token.empty()) {
    settings.token.base = token.data();  // ngtcp2_conn_client_new copies it
    settings.token.len = token.size();
    log::debug("h3: sending the server's NEW_TOKEN token ({} bytes)", token.size());
  }
  if (spdlog::should_log(spdlog::level::trace)) settings.log_printf = cb_log_printf;
  settings.handshake_timeout = config_.tuning.handshake_timeout_ms * NGTCP2_MILLISECONDS;
  if (config_.qlog) {
    auto writer = config_.qlog(to_hex(ByteView(scid.data, scid.datalen)));
    if (!writer) return writer.error();
    qlog_ = std::move(*writer);
    if (qlog_) settings.qlog.write = cb_qlog;
  }

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = opt.stream_window;
  params.initial_max_stream_data_bidi_remote = opt.stream_window;
  params.initial_max_stream_data_uni = opt.stream_window;
  params.initial_max_data = opt.connection_window;
  params.initial_max_streams_bidi = 0;  // HTTP/3 servers open no request streams.
  params.initial_max_streams_uni = 100;
  params.max_idle_timeout = opt.timeout_ms * NGTCP2_MILLISECONDS;
  params.max_ack_delay = config_.tuning.max_ack_delay_ms * NGTCP2_MILLISECONDS;
  params.active_connection_id_limit = 7;
  quic::advertise_udp_payload(params, udp_payload);

  ngtcp2_path path{{const_cast<sockaddr*>(config_.local.sa()), config_.local.size()},
                   {const_cast<sockaddr*>(config_.remote.sa()), config_.remote.size()},
                   nullptr};
  if (int rv = ngtcp2_conn_client_new(&conn_, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params,
                                      nullptr, this);
      rv != 0) {
    return make_error(ErrorDomain::quic, rv, "ngtcp2_conn_client_new: " + liberr_text(rv));
  }
  ngtcp2_conn_set_tls_native_handle(conn_, tls_->native_handle());
  if (config_.tuning.keep_alive_ms)
    ngtcp2_conn_set_keep_alive_timeout(conn_, config_.tuning.keep_alive_ms * NGTCP2_MILLISECONDS);

  tx_buf_.resize(kMaxBurstBytes);

  if (stored) {
    ngtcp2_transport_params early;
    int rv = ngtcp2_decode_transport_params(&early, NGTCP2_TRANSPORT_PARAMS_TYPE_ENCRYPTED_EXTENSIONS,
                                            stored->transport_params.data(), stored->transport_params.size());
    if (rv != 0) {
      log::warn("h3: stored session has bad transport parameters ({}); no 0-RTT", liberr_text(rv));
    } else {
      ngtcp2_conn_set_early_remote_transport_params(conn_, &early);
      if (auto st = setup_http(); !st) return st;
      early_data_attempted_ = true;
    }
  }
  return {};
}

Status ClientConnection::setup_http() {
  if (http_) return {};
  if (ngtcp2_conn_get_max_local_streams_uni(conn_) < 3) {
    return make_error(ErrorDomain::generic, EPROTO,
                      "server allows fewer than 3 unidirectional streams (HTTP/3 needs 3)");
  }
  nghttp3_callbacks cb{};
  cb.acked_stream_data = h3_acked_stream_data;
  cb.stream_close = h3_stream_close;
  cb.recv_data = h3_recv_data;
  cb.deferred_consume = h3_deferred_consume;
  cb.begin_headers = h3_begin_headers;
  cb.recv_header = h3_recv_header;
  cb.stop_sending = h3_stop_sending;
  cb.end_stream = h3_end_stream;
  cb.reset_stream = h3_reset_stream;
  cb.shutdown = h3_shutdown;
  nghttp3_settings settings;
  nghttp3_settings_default(&settings);
  settings.qpack_max_dtable_capacity = 4096;
  settings.qpack_blocked_streams = 100;
  if (int rv = nghttp3_conn_client_new(&http_, &cb, &settings, nghttp3_mem_default(), this); rv != 0) {
    return make_error(ErrorDomain::h3, rv, std::string("nghttp3_conn_client_new: ") + nghttp3_strerror(rv));
  }
  // The QPACK decoder stream's unsent bytes are bounded by 20 x this (at
  // least 100 streams); size it for the streams we keep open (see the server).
  nghttp3_conn_set_max_concurrent_streams(http_, std::max<std::size_t>(config_.options.max_concurrent_streams, 100));
  std::int64_t ctrl = -1, qenc = -1, qdec = -1;
  int rv = ngtcp2_conn_open_uni_stream(conn_, &ctrl, nullptr);
  if (rv == 0) rv = nghttp3_conn_bind_control_stream(http_, ctrl);
  if (rv == 0) rv = ngtcp2_conn_open_uni_stream(conn_, &qenc, nullptr);
  if (rv == 0) rv = ngtcp2_conn_open_uni_stream(conn_, &qdec, nullptr);
  if (rv == 0) rv = nghttp3_conn_bind_qpack_streams(http_, qenc, qdec);
  if (rv != 0) return make_error(ErrorDomain::h3, rv, "cannot open HTTP/3 control and QPACK streams");
  return {};
}

void ClientConnection::submit(http::ClientRequest request, http::BodyCallback on_body,
                              http::CompleteCallback on_complete) {
  auto s = std::make_unique<Stream>();
  s->request = std::move(request);
  s->on_body = std::move(on_body);
  s->on_complete = std::move(on_complete);
  if (config_.options.keep_metadata) s->response.url = s->request.url.to_string();
  s->response.protocol = "h3";
  s->response.timing.start = start_;
  if (state_ == State::closed || closing_requested_) {
    s->response.error =
        connection_error_.value_or(make_error(ErrorDomain::generic, ECANCELED, "HTTP/3 connection is closed"));
    events_.completions.push_back({std::move(s->on_complete), std::move(s->response)});
    return;
  }
  if (auto& body = s->request.body; body && body->size() > 0) {
    auto view = body->stable_view(0, body->size());
    if (view.size() == body->size()) {
      s->body = view;
    } else {
      // Sources without stable bytes (files) are read once into memory.
      s->body_copy.resize(body->size());
      std::uint64_t off = 0;
      while (off < s->body_copy.size()) {
        auto n = body->read(off, MutableByteView(s->body_copy).subspan(off));
        if (n <= 0) break;
        off += static_cast<std::uint64_t>(n);
      }
      if (off != s->body_copy.size()) {
        s->response.error = make_error(ErrorDomain::generic, EIO, "cannot read the request body");
        events_.completions.push_back({std::move(s->on_complete), std::move(s->response)});
        return;
      }
      s->body = s->body_copy;
    }
  }
  pending_.push_back(std::move(s));
}

bool ClientConnection::open_stream(std::unique_ptr<Stream>& s) {
  std::int64_t id = -1;
  if (ngtcp2_conn_open_bidi_stream(conn_, &id, s.get()) != 0) return false;  // STREAM_ID_BLOCKED
  const auto& rq = s->request;
  std::vector<nghttp3_nv> nva;
  nva.reserve(6 + rq.headers.size());
  nva.push_back(make_nv(":method", rq.method));
  nva.push_back(make_nv(":scheme", rq.url.scheme));
  std::string authority = rq.url.authority();
  nva.push_back(make_nv(":authority", authority));
  nva.push_back(make_nv(":path", rq.url.path));
  std::string length;
  if (!s->body.empty()) {
    length = std::to_string(s->body.size());
    nva.push_back(make_nv("content-length", length));
  }
  // Our user-agent only when the caller did not give one (as the HTTP/2 client does).
  bool has_ua = false;
  for (const auto& h : rq.headers) {
    nva.push_back(make_nv(h.name, h.value));
    has_ua = has_ua || h.name == "user-agent";
  }
  if (!has_ua) nva.push_back(make_nv("user-agent", "quiclab-h3/0.1"));
  nghttp3_data_reader dr{read_request_body};
  s->body_given = false;
  int rv = nghttp3_conn_submit_request(http_, id, nva.data(), nva.size(), s->body.empty() ? nullptr : &dr, s.get());
  if (rv != 0) {
    log::warn("h3: cannot submit request on stream {}: {}", id, nghttp3_strerror(rv));
    // The stream was never used; a failure here (out of memory) leaves it idle.
    if (int r = ngtcp2_conn_shutdown_stream(conn_, id, NGHTTP3_H3_INTERNAL_ERROR); r != 0) {
      log::warn("h3: cannot reset stream {}: {}", id, liberr_text(r));
    }
    s->response.error =
        make_error(ErrorDomain::h3, rv, std::string("HTTP/3 request not sent: ") + nghttp3_strerror(rv));
    events_.completions.push_back({std::move(s->on_complete), std::move(s->response)});
    return true;
  }
  s->id = id;
  s->early = state_ == State::handshake;
  s->response.timing.connected = first_packet_sent_;
  s->response.timing.handshake_done = handshake_done_;
  streams_.emplace(id, std::move(s));
  return true;
}

void ClientConnection::start_requests() {
  if (!http_ || state_ == State::closed || state_ == State::closing) return;
  if (goaway_received_) return;
  while (!pending_.empty() && streams_.size() < config_.options.max_concurrent_streams) {
    if (!open_stream(pending_.front())) break;
    pending_.pop_front();
  }
}

void ClientConnection::read(const SocketAddress& local, const SocketAddress& remote, ByteView datagram,
                            std::uint8_t ecn, Timestamp now) {
  if (state_ == State::closed || !conn_) return;
  // An empty datagram is not a QUIC packet; ngtcp2 treats it as an error
  // that would end the connection, so anyone could kill it with one.
  if (datagram.empty()) return;
  now_ = now;
  ngtcp2_path path{
      {const_cast<sockaddr*>(local.sa()), local.size()}, {const_cast<sockaddr*>(remote.sa()), remote.size()}, nullptr};
  ngtcp2_pkt_info pi{};
  pi.ecn = ecn;
  int rv = ngtcp2_conn_read_pkt(conn_, &path, &pi, datagram.data(), datagram.size(), now);
  if (rv != 0) handle_liberr(rv, "read", now);
}

void ClientConnection::handle_liberr(int rv, const char* where, Timestamp now) {
  if (rv == NGTCP2_ERR_DRAINING) {
    // The server sent CONNECTION_CLOSE.
    ngtcp2_connection_close_error ccerr;
    ngtcp2_conn_get_connection_close_error(conn_, &ccerr);
    bool clean = (ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION &&
                  ccerr.error_code == NGHTTP3_H3_NO_ERROR) ||
                 (ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT && ccerr.error_code == 0);
    if (clean && outstanding() == 0) {
      enter_closed(std::nullopt);
    } else {
      enter_closed(make_error(ErrorDomain::generic, ECONNRESET, describe_close(ccerr)));
    }
    return;
  }
  if (rv == NGTCP2_ERR_IDLE_CLOSE) {
    enter_closed(outstanding() == 0 && closing_requested_
                     ? std::nullopt
                     : std::optional<Error>(
                           make_error(ErrorDomain::generic, ETIMEDOUT, "QUIC idle timeout: the server went silent")));
    return;
  }
  if (rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
    enter_closed(make_error(ErrorDomain::generic, ETIMEDOUT,
                            "QUIC handshake timed out: no answer from " + config_.remote.to_string()));
    return;
  }
  if (rv == NGTCP2_ERR_DROP_CONN) {
    enter_closed(make_error(ErrorDomain::generic, ECONNRESET,
                            "QUIC connection dropped (stateless reset or unrecoverable packet)"));
    return;
  }
  std::string text;
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  if (rv == NGTCP2_ERR_CRYPTO) {
    auto alert = ngtcp2_conn_get_tls_alert(conn_);
    text = "QUIC TLS handshake failed (" + quic::tls::alert_text(alert) + ")";
    if (tls_ && !tls_->verify_error().empty())
      text += ": " + tls_->verify_error();
    else if (!config_.options.pinned_sha256.empty())
      text += "; the server's certificate is not the pinned one?";
    else if (!config_.options.insecure)
      text += "; is the certificate trusted? (--insecure or --ca-file)";
    ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, nullptr, 0);
  } else if (rv == NGTCP2_ERR_CALLBACK_FAILURE && connection_error_) {
    text = connection_error_->message;
    ngtcp2_connection_close_error_set_application_error(&ccerr, NGHTTP3_H3_INTERNAL_ERROR, nullptr, 0);
  } else {
    text = fmt::format("QUIC {} failed: {}", where, liberr_text(rv));
    ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, nullptr, 0);
  }
  log::warn("h3: {}", text);
  if (!ngtcp2_conn_is_in_closing_period(conn_) && !ngtcp2_conn_is_in_draining_period(conn_)) {
    close_packet_.resize(kClosePayload);
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    auto n = ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, close_packet_.data(), close_packet_.size(),
                                                &ccerr, now);
    close_packet_.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  }
  enter_closed(make_error(ErrorDomain::generic, rv == NGTCP2_ERR_CRYPTO ? EPROTO : ECONNABORTED, text));
}

void ClientConnection::enter_closed(std::optional<Error> error) {
  if (state_ == State::closed) return;
  state_ = State::closed;
  if (error && !connection_error_) connection_error_ = error;
  Error e = connection_error_.value_or(make_error(ErrorDomain::generic, ECANCELED, "HTTP/3 connection closed"));
  if (!handshake_reported_) {
    handshake_reported_ = true;
    events_.ready = Status(e);
  }
  fail_all(e);
}

void ClientConnection::fail_all(const Error& error) {
  for (auto& [id, s] : streams_) {
    if (!s->finished) finish(*s, error);
  }
  streams_.clear();
  for (auto& s : pending_) finish(*s, error);
  pending_.clear();
}

void ClientConnection::fail(Error error) {
  if (state_ == State::closed) return;
  log::warn("h3: {}", error.message);
  enter_closed(std::move(error));
}

void ClientConnection::finish(Stream& s, std::optional<Error> error) {
  if (s.finished) return;
  s.finished = true;
  if (error) s.response.error = std::move(error);
  events_.completions.push_back({std::move(s.on_complete), std::move(s.response)});
}

void ClientConnection::write(Timestamp now, const BurstSink& sink) {
  if (state_ == State::closed || !conn_) return;
  now_ = now;
  if (!pending_.empty() || closing_requested_) start_requests();
  if (closing_requested_ && unfinished() == 0) {
    if (state_ == State::established && http_) {
      // GOAWAY on the control stream first, then CONNECTION_CLOSE below once
      // the loop has written it out.
      // Both only fail when out of memory: then CONNECTION_CLOSE ends it without GOAWAY.
      int rv = nghttp3_conn_submit_shutdown_notice(http_);
      if (rv == 0) rv = nghttp3_conn_shutdown(http_);
      if (rv != 0) log::warn("h3: cannot queue GOAWAY: {}", nghttp3_strerror(rv));
      state_ = State::closing;
    } else if (state_ == State::handshake) {
      write_connection_close(now, NGHTTP3_H3_NO_ERROR);
      return;
    }
  }
  if (blocked_len_ > 0) return;  // The socket is full: flush_blocked() first.

  auto payload = std::min(quic::tx_payload_limit(conn_), kMaxBurstBytes);
  auto quantum = std::max<std::size_t>(ngtcp2_conn_get_send_quantum(conn_) / payload, 1);
  // Each call writes at most a couple of send quanta; ngtcp2's pacing timer
  // (in expiry()) brings us back for the rest.
  std::size_t max_pkts = std::min<std::size_t>(quantum * 2, kMaxSegments * 4);
  std::size_t max_segs = std::min<std::size_t>(kMaxSegments, tx_buf_.size() / payload);
  std::size_t off = 0, seg = 0, count = 0, pkts = 0;
  std::uint8_t ecn = 0;
  bool blocked = false;

  // Hands [0, len) of tx_buf_ to the sink as one burst; false when the socket
  // took less (the rest stays in tx_buf_ for flush_blocked()).
  // The path of the burst being built: ngtcp2 names one per packet (a
  // PATH_CHALLENGE during a migration goes on the new path, the rest on the
  // current one), and a burst holds packets of one path only.
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  SocketAddress burst_local, burst_remote;
  auto send = [&](std::size_t len) -> bool {
    if (len == 0) return true;
    auto taken = sink(Burst{ByteView(tx_buf_.data(), len), seg, ecn, &burst_local, &burst_remote});
    if (taken < len) {
      blocked_off_ = taken;
      blocked_len_ = len - taken;
      blocked_seg_ = seg;
      blocked_ecn_ = ecn;
      blocked_local_ = burst_local;
      blocked_remote_ = burst_remote;
      return false;
    }
    return true;
  };

  std::array<nghttp3_vec, 16> vec;
  for (;;) {
    if (count == max_segs) {
      if (!send(off)) {
        blocked = true;
        break;
      }
      off = count = 0;
    }
    std::int64_t stream_id = -1;
    int fin = 0;
    nghttp3_ssize veccnt = 0;
    if (http_ && ngtcp2_conn_get_max_data_left(conn_)) {
      veccnt = nghttp3_conn_writev_stream(http_, &stream_id, &fin, vec.data(), vec.size());
      if (veccnt < 0) {
        send(off);
        connection_error_ = make_error(ErrorDomain::h3, static_cast<int>(veccnt),
                                       std::string("nghttp3 write: ") + nghttp3_strerror(static_cast<int>(veccnt)));
        handle_liberr(NGTCP2_ERR_CALLBACK_FAILURE, "write", now);
        return;
      }
    }
    std::uint64_t veclen = 0;
    for (nghttp3_ssize i = 0; i < veccnt; ++i) veclen += vec[static_cast<std::size_t>(i)].len;
    std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (fin) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    ngtcp2_ssize ndatalen = 0;
    ngtcp2_pkt_info pi{};
    auto nwrite = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, tx_buf_.data() + off, payload, &ndatalen, flags,
                                            stream_id, reinterpret_cast<const ngtcp2_vec*>(vec.data()),
                                            static_cast<std::size_t>(veccnt), now);
    if (nwrite < 0) {
      if (nwrite == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
        nghttp3_conn_block_stream(http_, stream_id);
        continue;
      }
      if (nwrite == NGTCP2_ERR_STREAM_SHUT_WR) {
        nghttp3_conn_shutdown_stream_write(http_, stream_id);
        continue;
      }
      if (nwrite == NGTCP2_ERR_WRITE_MORE) {
        if (!wrote_stream_data(stream_id, ndatalen, fin && static_cast<std::uint64_t>(ndatalen) == veclen)) return;
        continue;
      }
      send(off);
      handle_liberr(static_cast<int>(nwrite), "write", now);
      return;
    }
    if (ndatalen >= 0 && stream_id >= 0) {
      if (!wrote_stream_data(stream_id, ndatalen, fin && static_cast<std::uint64_t>(ndatalen) == veclen)) {
        send(off);
        return;
      }
    }
    if (nwrite == 0) break;  // Congestion or pacing limited, or nothing left.
    if (first_packet_sent_ == 0) first_packet_sent_ = now;
    auto n = static_cast<std::size_t>(nwrite);
    ++pkts;
    SocketAddress pkt_local(static_cast<const sockaddr*>(ps.path.local.addr));
    SocketAddress pkt_remote(static_cast<const sockaddr*>(ps.path.remote.addr));
    const bool same_path = pkt_local == burst_local && pkt_remote == burst_remote;
    if (count == 0) {
      seg = n;
      ecn = pi.ecn;
      off = n;
      count = 1;
      burst_local = pkt_local;
      burst_remote = pkt_remote;
    } else if (n <= seg && pi.ecn == ecn && same_path) {
      off += n;
      ++count;
      if (n < seg) {
        // A shorter packet must be the last segment of a GSO burst.
        if (!send(off)) {
          blocked = true;
          break;
        }
        off = count = 0;
      }
    } else {
      // Larger than this burst's segments (or another ECN mark): the burst
      // goes first, the new packet starts the next one.
      if (!send(off)) {
        blocked = true;
        // The new packet cannot join the blocked bytes unless it fits their
        // segment size; otherwise it is dropped and loss recovery resends it.
        if (n == blocked_seg_ && pi.ecn == blocked_ecn_ && same_path) {
          std::memmove(tx_buf_.data() + blocked_off_ + blocked_len_, tx_buf_.data() + off, n);
          blocked_len_ += n;
        }
        break;
      }
      std::memmove(tx_buf_.data(), tx_buf_.data() + off, n);
      seg = n;
      ecn = pi.ecn;
      off = n;
      count = 1;
      burst_local = pkt_local;
      burst_remote = pkt_remote;
    }
    if (pkts >= max_pkts) break;
  }
  if (!blocked) send(off);
  // Pacing starts after the handshake: ngtcp2 would otherwise pace the
  // client's Finished behind the Initial at the default 333 ms initial RTT,
  // delaying the first request by ~20 ms for no benefit.
  if (state_ != State::handshake) ngtcp2_conn_update_pkt_tx_time(conn_, now);
  if (state_ == State::closing && blocked_len_ == 0) write_connection_close(now, NGHTTP3_H3_NO_ERROR);
}

bool ClientConnection::wrote_stream_data(std::int64_t stream_id, ngtcp2_ssize ndatalen, bool fin_sent) {
  if (ndatalen < 0) return true;
  if (int rv = nghttp3_conn_add_write_offset(http_, stream_id, static_cast<std::size_t>(ndatalen)); rv != 0) {
    connection_error_ = make_error(ErrorDomain::h3, rv, std::string("nghttp3: ") + nghttp3_strerror(rv));
    handle_liberr(NGTCP2_ERR_CALLBACK_FAILURE, "write", now_);
    return false;
  }
  if (fin_sent && ngtcp2_is_bidi_stream(stream_id)) {
    if (auto it = streams_.find(stream_id); it != streams_.end() && it->second->response.timing.request_sent == 0) {
      it->second->response.timing.request_sent = now_;
    }
  }
  return true;
}

std::size_t ClientConnection::unfinished() const {
  std::size_t n = pending_.size();
  for (const auto& [id, s] : streams_) n += s->finished ? 0 : 1;
  return n;
}

bool ClientConnection::flush_blocked(const BurstSink& sink) {
  if (blocked_len_ == 0) return true;
  auto taken = sink(Burst{ByteView(tx_buf_.data() + blocked_off_, blocked_len_), blocked_seg_, blocked_ecn_,
                          &blocked_local_, &blocked_remote_});
  blocked_off_ += taken;
  blocked_len_ -= std::min(taken, blocked_len_);
  if (blocked_len_ == 0) blocked_off_ = 0;
  return blocked_len_ == 0;
}

std::optional<Timestamp> ClientConnection::expiry() const {
  if (state_ == State::closed || !conn_) return std::nullopt;
  const Timestamp t = ngtcp2_conn_get_expiry(conn_);
  if (t == UINT64_MAX) return std::nullopt;  // ngtcp2's "no timer"
  return t;
}

void ClientConnection::handle_expiry(Timestamp now) {
  if (state_ == State::closed || !conn_) return;
  now_ = now;
  if (int rv = ngtcp2_conn_handle_expiry(conn_, now); rv != 0) handle_liberr(rv, "timer", now);
}

void ClientConnection::close(bool abort, Timestamp now) {
  if (state_ == State::closed) return;
  now_ = now;
  closing_requested_ = true;
  if (abort) {
    for (auto& s : pending_)
      finish(*s, make_error(ErrorDomain::generic, ECANCELED, "request cancelled: client closed"));
    pending_.clear();
    for (auto& [id, s] : streams_)
      finish(*s, make_error(ErrorDomain::generic, ECANCELED, "request cancelled: client closed"));
    write_connection_close(now, NGHTTP3_H3_REQUEST_CANCELLED);
  }
  // Graceful: write() sends GOAWAY and CONNECTION_CLOSE once nothing is outstanding.
}

void ClientConnection::write_connection_close(Timestamp now, std::uint64_t app_error) {
  close_packet_.clear();
  if (!ngtcp2_conn_is_in_closing_period(conn_) && !ngtcp2_conn_is_in_draining_period(conn_)) {
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    ngtcp2_connection_close_error_set_application_error(&ccerr, app_error, nullptr, 0);
    close_packet_.resize(kClosePayload);
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    auto n = ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, close_packet_.data(), close_packet_.size(),
                                                &ccerr, now);
    close_packet_.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  }
  enter_closed(std::nullopt);
}

void ClientConnection::on_path_validation(SocketAddress local, SocketAddress remote, bool ok) {
  events_.paths.push_back({std::move(local), std::move(remote), ok});
}

Status ClientConnection::migrate(const SocketAddress& local, const SocketAddress& remote, Timestamp now) {
  if (state_ == State::closed || !conn_)
    return make_error(ErrorDomain::quic, ENOTCONN, "cannot migrate: the connection is closed");
  now_ = now;
  ngtcp2_path path{
      {const_cast<sockaddr*>(local.sa()), local.size()}, {const_cast<sockaddr*>(remote.sa()), remote.size()}, nullptr};
  int rv = ngtcp2_conn_initiate_migration(conn_, &path, now);
  switch (rv) {
    case 0:
      return {};
    case NGTCP2_ERR_INVALID_STATE:
      return make_error(ErrorDomain::quic, rv,
                        "cannot migrate yet: the handshake is not confirmed (or the server disabled migration)");
    case NGTCP2_ERR_CONN_ID_BLOCKED:
      return make_error(ErrorDomain::quic, rv, "cannot migrate: no spare connection ID from the server");
    case NGTCP2_ERR_INVALID_ARGUMENT:
      return make_error(ErrorDomain::quic, rv,
                        "cannot migrate to " + local.to_string() + " -> " + remote.to_string() +
                            ": the local address is the current path's (ngtcp2 needs a new one)");
    default:
      return make_error(ErrorDomain::quic, rv, "ngtcp2_conn_initiate_migration: " + liberr_text(rv));
  }
}

std::pair<SocketAddress, SocketAddress> ClientConnection::current_path() const {
  if (!conn_) return {config_.local, config_.remote};
  const ngtcp2_path* p = ngtcp2_conn_get_path(conn_);
  return {SocketAddress(static_cast<const sockaddr*>(p->local.addr)),
          SocketAddress(static_cast<const sockaddr*>(p->remote.addr))};
}

ClientConnection::Events ClientConnection::take_events() {
  Events out;
  std::swap(out, events_);
  return out;
}

http::ConnectionInfo ClientConnection::info() const {
  http::ConnectionInfo i;
  i.protocol = "h3";
  i.local_address = config_.local.to_string();
  i.peer_address = config_.remote.to_string();
  if (tls_ && handshake_done_ != 0) {
    i.tls_version = "TLSv1.3";  // The only version QUIC runs over (RFC 9001).
    i.alpn = tls_->alpn();
    i.resumed = tls_->resumed();
    i.tls_cipher = tls_->cipher();
    i.tls_group = tls_->group();
    i.tls_library = "GnuTLS";
  }
  i.early_data_accepted = early_data_accepted_;
  return i;
}

// --- callbacks --------------------------------------------------------------

int ClientConnection::on_recv_stream_data(std::uint32_t flags, std::int64_t stream_id, const std::uint8_t* data,
                                          std::size_t len) {
  if (!http_) return 0;
  auto n = nghttp3_conn_read_stream(http_, stream_id, data, len, (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0);
  if (n < 0) {
    connection_error_ = make_error(ErrorDomain::h3, static_cast<int>(n),
                                   std::string("HTTP/3 error from server: ") + nghttp3_strerror(static_cast<int>(n)));
    log::warn("h3: {}", connection_error_->message);
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  // Bytes nghttp3 consumed itself (frame headers, control streams); DATA
  // payload is credited in on_http_recv_data.
  // Fails only when out of memory: the server then sees less credit, not an error.
  (void)ngtcp2_conn_extend_max_stream_offset(conn_, stream_id, static_cast<std::uint64_t>(n));
  ngtcp2_conn_extend_max_offset(conn_, static_cast<std::uint64_t>(n));
  return 0;
}

int ClientConnection::on_acked_stream_data(std::int64_t stream_id, std::uint64_t len) {
  if (!http_) return 0;
  if (int rv = nghttp3_conn_add_ack_offset(http_, stream_id, len); rv != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

int ClientConnection::on_stream_close(std::uint32_t flags, std::int64_t stream_id, std::uint64_t app_error_code) {
  if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET)) app_error_code = NGHTTP3_H3_NO_ERROR;
  if (http_) {
    int rv = nghttp3_conn_close_stream(http_, stream_id, app_error_code);
    if (rv == 0) {
      // nghttp3 knows the stream and reports its end through stream_close
      // (on_http_stream_close): at once, or, when the response headers wait
      // for QPACK encoder-stream data that was lost, once that data arrives.
      // The transport may well have received every byte of such a response
      // and closed the stream already; finishing it here would fail a
      // response that is about to complete.
      return 0;
    }
    if (rv != NGHTTP3_ERR_STREAM_NOT_FOUND) return NGTCP2_ERR_CALLBACK_FAILURE;
    if (!ngtcp2_is_bidi_stream(stream_id)) ngtcp2_conn_extend_max_streams_uni(conn_, 1);
  }
  // A request stream closed without nghttp3 knowing it (e.g. reset before any frame).
  if (auto it = streams_.find(stream_id); it != streams_.end()) {
    if (!it->second->finished) {
      finish(*it->second,
             make_error(ErrorDomain::h3, ECONNRESET,
                        fmt::format("stream {} closed by the server (error 0x{:x})", stream_id, app_error_code)));
    }
    streams_.erase(it);
  }
  return 0;
}

int ClientConnection::on_stream_reset(std::int64_t stream_id) {
  if (http_) {
    if (nghttp3_conn_shutdown_stream_read(http_, stream_id) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

int ClientConnection::on_handshake_completed() {
  handshake_done_ = now_;
  if (early_data_attempted_) {
    early_data_accepted_ = tls_->early_data_accepted();
    if (!early_data_accepted_) {
      log::info("h3: the server refused 0-RTT; sending the requests again");
      if (int rv = ngtcp2_conn_early_data_rejected(conn_); rv != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
    }
  }
  if (!http_) {
    if (auto st = setup_http(); !st) {
      connection_error_ = st.error();
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
  }
  state_ = State::established;
  for (auto& [id, s] : streams_) {
    if (s->response.timing.handshake_done == 0) s->response.timing.handshake_done = handshake_done_;
  }
  if (!handshake_reported_) {
    handshake_reported_ = true;
    events_.ready = Status::success();
  }
  return 0;
}

int ClientConnection::on_recv_rx_key_application() {
  // Without 0-RTT the HTTP/3 layer starts once 1-RTT keys exist.
  if (early_data_attempted_ && !ngtcp2_conn_get_early_data_rejected(conn_)) return 0;
  if (auto st = setup_http(); !st) {
    connection_error_ = st.error();
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

void ClientConnection::on_early_data_rejected() {
  // ngtcp2 dropped every stream; nghttp3's state is void too. Requests go
  // back to the queue and are sent again over 1-RTT.
  if (http_) {
    nghttp3_conn_del(http_);
    http_ = nullptr;
  }
  std::vector<std::unique_ptr<Stream>> again;
  for (auto& [id, s] : streams_) {
    if (s->finished) continue;
    s->id = -1;
    s->body_given = false;
    s->response.status = 0;
    s->response.headers.clear();
    s->response.body.clear();
    s->response.body_bytes = 0;
    s->response.timing.request_sent = 0;
    s->response.timing.first_byte = 0;
    again.push_back(std::move(s));
  }
  streams_.clear();
  for (auto it = again.rbegin(); it != again.rend(); ++it) pending_.push_front(std::move(*it));
}

int ClientConnection::on_extend_max_stream_data(std::int64_t stream_id) {
  if (http_ && nghttp3_conn_unblock_stream(http_, stream_id) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

int ClientConnection::on_http_recv_data(std::int64_t stream_id, const std::uint8_t* data, std::size_t len) {
  on_http_consume(stream_id, len);
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return 0;
  auto& s = *it->second;
  s.response.body_bytes += len;
  ByteView chunk(data, len);
  if (config_.options.keep_body) append(s.response.body, chunk);
  if (s.on_body) s.on_body(chunk);
  return 0;
}

void ClientConnection::on_http_consume(std::int64_t stream_id, std::size_t n) {
  (void)ngtcp2_conn_extend_max_stream_offset(conn_, stream_id, n);  // as above: only out of memory
  ngtcp2_conn_extend_max_offset(conn_, n);
}

int ClientConnection::on_http_begin_headers(std::int64_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it != streams_.end() && it->second->response.timing.first_byte == 0) {
    it->second->response.timing.first_byte = now_;
  }
  return 0;
}

int ClientConnection::on_http_header(std::int64_t stream_id, ByteView name, ByteView value) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return 0;
  auto& r = it->second->response;
  auto n = as_string(name);
  if (n == ":status") {
    int status = 0;
    for (char c : as_string(value)) status = c >= '0' && c <= '9' ? status * 10 + (c - '0') : -1000;
    // 1xx are interim: the final status replaces them.
    r.status = status > 0 ? status : 0;
  } else if (config_.options.keep_metadata && !n.empty() && n.front() != ':') {
    r.headers.push_back(http::Header{std::string(n), std::string(as_string(value))});
  }
  return 0;
}

int ClientConnection::on_http_end_stream(std::int64_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return 0;
  auto& s = *it->second;
  s.response.timing.complete = now_;
  if (s.response.status == 0) {
    finish(s, make_error(ErrorDomain::generic, EPROTO, "response ended without a status"));
  } else {
    finish(s, std::nullopt);
  }
  return 0;
}

int ClientConnection::on_http_stream_close(std::int64_t stream_id, std::uint64_t app_error_code) {
  if (!ngtcp2_is_bidi_stream(stream_id)) {
    ngtcp2_conn_extend_max_streams_uni(conn_, 1);
    return 0;
  }
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return 0;
  if (!it->second->finished) {
    finish(*it->second,
           make_error(ErrorDomain::h3, ECONNRESET,
                      fmt::format("stream {} reset by the server (HTTP/3 error 0x{:x})", stream_id, app_error_code)));
  }
  streams_.erase(it);
  return 0;
}

int ClientConnection::on_http_stop_sending(std::int64_t stream_id, std::uint64_t code) {
  if (ngtcp2_conn_shutdown_stream_read(conn_, stream_id, code) != 0) return NGHTTP3_ERR_CALLBACK_FAILURE;
  return 0;
}

int ClientConnection::on_http_reset_stream(std::int64_t stream_id, std::uint64_t code) {
  if (ngtcp2_conn_shutdown_stream_write(conn_, stream_id, code) != 0) return NGHTTP3_ERR_CALLBACK_FAILURE;
  return 0;
}

int ClientConnection::on_http_goaway(std::int64_t id) {
  // Streams at or above id will not be served: fail them now, open no more.
  goaway_received_ = true;
  for (auto& [sid, s] : streams_) {
    if (sid >= id && !s->finished)
      finish(*s, make_error(ErrorDomain::generic, ECONNRESET, "server is shutting down (GOAWAY)"));
  }
  for (auto& s : pending_) finish(*s, make_error(ErrorDomain::generic, ECONNRESET, "server is shutting down (GOAWAY)"));
  pending_.clear();
  return 0;
}

void ClientConnection::on_new_token(ByteView token) {
  saved_.token.assign(token.begin(), token.end());
  log::debug("h3: received a NEW_TOKEN token ({} bytes)", token.size());
  // Reported with the ticket; a token after the ticket reports it again.
  report_session();
}

void ClientConnection::report_session() {
  if (saved_.tls_session.empty() || saved_.transport_params.empty() || !config_.on_session) return;
  config_.on_session(saved_);
}

void ClientConnection::on_session_ticket(Bytes tls_session) {
  saved_.tls_session = std::move(tls_session);
  saved_.transport_params.clear();
  const auto* tp = ngtcp2_conn_get_remote_transport_params(conn_);
  if (!tp) return;
  Bytes params(512);
  auto n = ngtcp2_encode_transport_params(params.data(), params.size(),
                                          NGTCP2_TRANSPORT_PARAMS_TYPE_ENCRYPTED_EXTENSIONS, tp);
  if (n < 0) {
    log::warn("h3: cannot encode transport parameters: {}", liberr_text(static_cast<int>(n)));
    return;
  }
  params.resize(static_cast<std::size_t>(n));
  saved_.transport_params = std::move(params);
  report_session();
}

// ngtcp2 0.12.1 writes an event's time as whole ms since initial_ts (an
// integer division), too coarse to line a trace up with a packet capture or
// to measure a stall. Each event is one chunk, written during the entry point
// whose time is now_; when its whole ms agree with now_ (they do unless an
// entry point forgot to set now_, and then it is left alone) the time is
// rewritten to the µs (qlog times are floats). The header's reference_time
// becomes the wall-clock ms of time 0 when the adapter knows the wall clock.
std::string ClientConnection::refine_qlog_chunk(std::string_view chunk) const {
  static constexpr std::string_view kEvent = "\x1e{\"time\":";
  static constexpr std::string_view kReference = "\"reference_time\":0,";
  if (chunk.substr(0, kEvent.size()) == kEvent) {
    std::size_t end = kEvent.size();
    std::uint64_t whole = 0;
    while (end < chunk.size() && chunk[end] >= '0' && chunk[end] <= '9') whole = whole * 10 + (chunk[end++] - '0');
    if (end == kEvent.size() || end == chunk.size() || chunk[end] != ',' || now_ < qlog_origin_) return {};
    const std::uint64_t ns = now_ - qlog_origin_;
    if (ns / NGTCP2_MILLISECONDS != whole) return {};
    return fmt::format("{}{}.{:03}{}", kEvent, whole, ns % NGTCP2_MILLISECONDS / NGTCP2_MICROSECONDS,
                       chunk.substr(end));
  }
  if (config_.unix_offset_ns) {
    if (auto at = chunk.find(kReference); at != std::string_view::npos) {
      const auto unix_ns = static_cast<std::int64_t>(qlog_origin_) + *config_.unix_offset_ns;
      return fmt::format("{}\"reference_time\":{}.{:06},{}", chunk.substr(0, at), unix_ns / 1000000, unix_ns % 1000000,
                         chunk.substr(at + kReference.size()));
    }
  }
  return {};
}

void ClientConnection::on_qlog(const void* data, std::size_t len, bool fin) {
  if (!qlog_) return;
  const std::string_view chunk(static_cast<const char*>(data), len);
  if (auto refined = refine_qlog_chunk(chunk); !refined.empty()) {
    qlog_->write(ByteView(reinterpret_cast<const std::uint8_t*>(refined.data()), refined.size()));
  } else {
    qlog_->write(ByteView(static_cast<const std::uint8_t*>(data), len));
  }
  if (fin) {
    qlog_->finish();
    qlog_.reset();
  }
}

// ---------------------------------------------------------------------------
// Client: the libuv adapter.

namespace {
Timestamp loop_now() { return uv::Loop::hrtime(); }

// What the core gets from the adapter's side of the world: the session file
// (loaded now, saved on every reported session), the qlog directory as a
// sink, and the loopback MTU probe as a number.
ClientConnection::Config connection_config(const http::Url& origin, const http::ClientOptions& options,
                                           const QuicTuning& tuning, const SocketAddress& local,
                                           const SocketAddress& remote) {
  ClientConnection::Config c;
  c.origin = origin;
  c.options = options;
  c.tuning = tuning;
  c.local = local;
  c.remote = remote;
  c.random = tuning.random;
  if (const auto& file = options.session_file; !file.empty()) {
    if (auto s = load_session(file)) {
      c.resume = std::move(*s);
    } else if (!s.error().is(ErrorDomain::config, ENOENT)) {
      log::warn("h3: ignoring session file: {}", s.error().message);
    }
    c.on_session = [file](const StoredSession& session) {
      if (auto st = save_session(file, session); !st)
        log::warn("h3: {}", st.error().message);
      else
        log::debug("h3: stored the session in {}", file.string());
    };
  }
  c.qlog = quic::qlog_to_directory(tuning.qlog_dir);
  c.unix_offset_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() -
      static_cast<std::int64_t>(uv::Loop::hrtime());
  if (options.max_udp_payload == 0 && quic::is_loopback(remote))
    c.loopback_udp_payload = quic::probe_loopback_udp_payload(remote);
  return c;
}
}  // namespace

Client::Client(uv::Loop& loop, http::Url origin, http::ClientOptions options, QuicTuning tuning,
               ClientEndpoint endpoint)
    : loop_(loop),
      origin_(std::move(origin)),
      options_(std::move(options)),
      tuning_(std::move(tuning)),
      socket_(std::move(endpoint.socket)),
      attach_(endpoint.attach),
      alive_(std::make_shared<bool>(true)) {
  endpoint_local_ = endpoint.local;
  if (tuning_.qlog_dir.empty()) tuning_.qlog_dir = options_.qlog_dir;
  if (options_.ack_thresh > 0) tuning_.ack_thresh = options_.ack_thresh;
  // Experiment knobs for benchmarks (not part of the CLI contract).
  if (const char* v = std::getenv("QUICLAB_H3_ACK_THRESH")) tuning_.ack_thresh = std::strtoul(v, nullptr, 10);
  if (const char* v = std::getenv("QUICLAB_H3_MAX_ACK_DELAY_MS"))
    tuning_.max_ack_delay_ms = std::strtoul(v, nullptr, 10);
  if (const char* v = std::getenv("QUICLAB_H3_FLUSH_EVERY")) tuning_.flush_every = std::strtoul(v, nullptr, 10);
  flush_every_ = std::max<std::size_t>(tuning_.flush_every, 1);
}

Client::~Client() {
  *alive_ = false;
  release_socket();
  if (timer_) timer_->close();
}

void Client::connect(std::function<void(Status)> on_ready) {
  on_ready_ = std::move(on_ready);
  timer_ = std::make_unique<uv::Timer>(loop_);
  auto fail_soon = [this](Error e) {
    // Report asynchronously: callers do not expect on_ready inside connect().
    setup_error_ = e;
    timer_->start(0, 0, [this] { after_core_call(); });
  };
  // Names are resolved on the loop by http::RacingClient, which gives each
  // attempt its address; a bare client takes numeric hosts only.
  if (options_.remote) {
    remote_ = *options_.remote;
  } else if (auto numeric = SocketAddress::from_ip(origin_.host, origin_.port); numeric.ok()) {
    remote_ = *numeric;
  } else {
    return fail_soon(
        make_error(ErrorDomain::config, EINVAL,
                   "cannot connect to " + origin_.host + ": a host name needs http::RacingClient to resolve it"));
  }

  if (!socket_) {
    // Our own socket, bound to the source address of the route to the remote
    // so the QUIC path has a concrete local end from the first packet.
    auto source = quic::route_source(remote_);
    if (!source) return fail_soon(source.error());
    auto opened = quic::open_udp(loop_, *source);
    if (!opened) return fail_soon(opened.error());
    socket_ = std::move(*opened);
    own_socket_ = true;
    attach_ = quic::Attach::exclusive;
  }
  local_ = endpoint_local_ ? *endpoint_local_ : socket_->local_address();
  if (local_.empty()) return fail_soon(make_error(ErrorDomain::os, EBADF, "h3: the client's socket is not bound"));
  if (local_.family() != remote_.family()) {
    return fail_soon(make_error(
        ErrorDomain::config, EINVAL,
        "h3: socket " + local_.to_string() + " cannot reach " + remote_.to_string() + " (another address family)"));
  }
  if (!endpoint_local_ && (local_.ip() == "0.0.0.0" || local_.ip() == "::")) {
    // A wildcard-bound shared socket: the path's local end is the address the
    // route uses (the socket learns it per datagram from PKTINFO and sends
    // from it).
    auto source = quic::route_source(remote_);
    if (!source) return fail_soon(source.error());
    auto port = local_.port();
    local_ = *source;
    local_.set_port(port);
  }

  paths_.push_back({local_, remote_, endpoint_local_.has_value()});
  auto conn = ClientConnection::create(connection_config(origin_, options_, tuning_, local_, remote_), loop_now());
  if (!conn) return fail_soon(conn.error());
  conn_ = std::move(*conn);
  for (auto& [rq, body, done] : early_submits_) conn_->submit(std::move(rq), std::move(body), std::move(done));
  early_submits_.clear();

  if (attach_ == quic::Attach::exclusive) {
    if (auto st = quic::attach(*socket_, *this); !st) return fail_soon(st.error());
  }
  after_core_call();
}

const SocketAddress* Client::path_local(const quic::ReceivedDatagram& d) const {
  // A diverted (relayed) local end matches exactly; the socket's own end
  // matches any datagram that did not come through a diverted one (PKTINFO
  // names the concrete address, the path may hold the route's).
  for (const auto& p : paths_)
    if (p.remote == d.peer && p.diverted && p.local == d.local) return &p.local;
  for (const auto& p : paths_)
    if (p.remote == d.peer && !p.diverted && std::none_of(paths_.begin(), paths_.end(), [&](const KnownPath& k) {
          return k.diverted && k.local == d.local;
        }))
      return &p.local;
  return nullptr;
}

void Client::handle_datagram(const quic::ReceivedDatagram& d) {
  if (!conn_ || conn_->closed()) return;
  const SocketAddress* local = path_local(d);
  if (!local) {
    // The socket is not connected: anyone can send to it. Only the remote
    // (on one of the connection's paths) speaks QUIC to this connection.
    ++ignored_datagrams_;
    return;
  }
  conn_->read(*local, d.peer, d.data, d.ecn, loop_now());
  // One GRO batch can hold thousands of packets: ACK as we go (every
  // few packets, as ack_thresh intends) rather than once per batch, or
  // the sender stalls on a starved congestion window.
  if (++reads_since_flush_ >= flush_every_) {
    reads_since_flush_ = 0;
    flush();
  }
}

void Client::handle_batch_end() {
  if (!conn_) return;
  after_core_call();
}

void Client::handle_socket_error(int err, const SocketAddress& to) {
  if (!to.empty() && to != remote_) return;  // about another peer of a shared socket (or an old path)
  if (err == ECONNREFUSED)
    note_refused();
  else
    log::debug("h3: socket error from {}: {}", remote_.to_string(), std::strerror(err));
  after_core_call();
}

void Client::release_socket() {
  if (!socket_) return;
  if (own_socket_)
    socket_->close();
  else if (attach_ == quic::Attach::exclusive)
    socket_->stop();
}

void Client::submit(http::ClientRequest request, http::BodyCallback on_body, http::CompleteCallback on_complete) {
  if (!conn_) {
    if (setup_error_ || closing_) {
      http::ClientResponse r;
      r.url = request.url.to_string();
      r.error = setup_error_.value_or(make_error(ErrorDomain::generic, ECANCELED, "client is closed"));
      // Deliver from the loop, never from inside submit().
      failed_submits_.push_back({std::move(on_complete), std::move(r)});
      if (timer_) timer_->start(0, 0, [this] { after_core_call(); });
      return;
    }
    early_submits_.emplace_back(std::move(request), std::move(on_body), std::move(on_complete));
    return;
  }
  conn_->submit(std::move(request), std::move(on_body), std::move(on_complete));
  if (in_delivery_) {
    rerun_ = true;
  } else if (timer_) {
    timer_->start(0, 0, [this] { after_core_call(); });
  }
}

void Client::close(std::function<void()> on_closed, bool abort) {
  on_closed_ = std::move(on_closed);
  closing_ = true;
  if (!timer_) timer_ = std::make_unique<uv::Timer>(loop_);
  if (conn_) conn_->close(abort, loop_now());
  if (in_delivery_) {
    rerun_ = true;
  } else {
    timer_->start(0, 0, [this] { after_core_call(); });
  }
}

http::ConnectionInfo Client::info() const {
  if (conn_) return conn_->info();
  http::ConnectionInfo i;
  i.protocol = "h3";
  return i;
}

Status Client::migrate(const SocketAddress& local, const SocketAddress& remote, bool diverted) {
  if (!conn_) return make_error(ErrorDomain::quic, ENOTCONN, "cannot migrate: not connected");
  if (auto st = conn_->migrate(local, remote, loop_now()); !st) return st;
  paths_.push_back({local, remote, diverted});
  if (in_delivery_)
    rerun_ = true;
  else if (timer_)
    timer_->start(0, 0, [this] { after_core_call(); });
  return {};
}

std::pair<SocketAddress, SocketAddress> Client::current_path() const {
  if (conn_) return conn_->current_path();
  return {local_, remote_};
}

std::size_t Client::send_burst(const ClientConnection::Burst& b) {
  std::size_t seg = b.data.size() > b.segment_size ? b.segment_size : 0;
  const SocketAddress& to = b.remote && !b.remote->empty() ? *b.remote : remote_;
  const SocketAddress& from = b.local && !b.local->empty() ? *b.local : local_;
  auto r = socket_->send(to, b.data, seg, static_cast<quic::Ecn>(b.ecn & 3), &from);
  switch (r.status) {
    case quic::SendStatus::sent:
      return b.data.size();
    case quic::SendStatus::blocked:
      return r.bytes_sent;
    case quic::SendStatus::error:
      if (r.error == ECONNREFUSED) note_refused();
      return b.data.size();  // Dropped, as on a lossy path.
  }
  return b.data.size();
}

// ICMP port unreachable from the remote, seen as ECONNREFUSED (through
// IP_RECVERR's error queue, or returned by a send). Before the handshake it
// means nobody serves QUIC there: fail now rather than after the handshake
// timeout. Afterwards it is ignored (RFC 9000 leaves ICMP to PMTU purposes;
// a stray or forged ICMP must not end a working connection): the idle timeout
// ends a connection whose server is really gone.
void Client::note_refused() {
  if (socket_error_) return;
  if (conn_ && conn_->handshake_completed()) {
    log::debug("h3: ICMP port unreachable from {} after the handshake; ignored", remote_.to_string());
    return;
  }
  socket_error_ =
      make_error(ErrorDomain::generic, ECONNREFUSED, "connection refused: no QUIC server at " + remote_.to_string());
}

void Client::flush() {
  if (!conn_ || !socket_ || waiting_writable_) return;
  auto sink = [this](const ClientConnection::Burst& b) { return send_burst(b); };
  if (conn_->flush_blocked(sink)) conn_->write(loop_now(), sink);
  if (socket_error_ && !conn_->closed()) conn_->fail(*socket_error_);
  if (!conn_->nothing_blocked()) {
    waiting_writable_ = true;
    std::weak_ptr<bool> alive = alive_;
    socket_->wait_writable([this, alive] {
      if (alive.expired() || !*alive.lock()) return;
      waiting_writable_ = false;
      after_core_call();
    });
  }
  if (conn_->closed() && !close_sent_) {
    close_sent_ = true;
    auto pkt = conn_->close_packet();
    if (!pkt.empty()) {
      auto [from, to] = conn_->current_path();
      (void)socket_->send(to, pkt, 0, quic::Ecn::not_ect, &from);
    }
  }
}

void Client::after_core_call() {
  reads_since_flush_ = 0;
  auto alive = alive_;
  in_delivery_ = true;
  for (int round = 0; round < 16; ++round) {
    rerun_ = false;
    flush();
    bool delivered = deliver_events();
    if (!*alive) return;
    if (!delivered && !rerun_) break;
  }
  in_delivery_ = false;
  if (conn_ && conn_->closed()) {
    if (closing_)
      finish_close();
    else if (socket_ && attach_ == quic::Attach::exclusive)
      socket_->stop();
    if (timer_) timer_->stop();
    return;
  }
  if (!conn_ && closing_) {
    // Closed before connect(): requests queued for it fail now.
    if (!early_submits_.empty()) {
      setup_error_ =
          setup_error_.value_or(make_error(ErrorDomain::generic, ECANCELED, "client closed before it connected"));
      deliver_events();
      if (!*alive) return;
    }
    finish_close();
    return;
  }
  arm_timer();
}

bool Client::deliver_events() {
  auto alive = alive_;
  bool any = false;
  std::optional<Status> ready;
  std::vector<ClientConnection::Completion> done;
  std::vector<ClientConnection::Events::PathResult> paths;
  if (setup_error_ && on_ready_) ready = Status(*setup_error_);
  if (conn_) {
    auto ev = conn_->take_events();
    if (ev.ready && !ready) ready = std::move(ev.ready);
    done = std::move(ev.completions);
    paths = std::move(ev.paths);
  }
  if (setup_error_) {
    for (auto& [rq, body, cb] : early_submits_) {
      http::ClientResponse r;
      r.url = rq.url.to_string();
      r.error = *setup_error_;
      done.push_back({std::move(cb), std::move(r)});
    }
    early_submits_.clear();
  }
  for (auto& f : failed_submits_) done.push_back(std::move(f));
  failed_submits_.clear();
  if (ready && on_ready_) {
    any = true;
    auto cb = std::move(on_ready_);
    on_ready_ = nullptr;
    cb(std::move(*ready));
    if (!*alive) return true;
  }
  for (auto& p : paths) {
    if (!p.ok) {
      // Failed or aborted: ngtcp2 stays on (or falls back to) the old path.
      paths_.erase(std::remove_if(paths_.begin(), paths_.end(),
                                  [&](const KnownPath& k) { return k.local == p.local && k.remote == p.remote; }),
                   paths_.end());
    }
    any = true;
    if (on_path_) on_path_(p.local, p.remote, p.ok);
    if (!*alive) return true;
  }
  for (auto& c : done) {
    any = true;
    if (c.callback) c.callback(std::move(c.response));
    if (!*alive) return true;
  }
  return any;
}

void Client::arm_timer() {
  if (!conn_ || !timer_) return;
  // One core, and the timer doubles as the adapter's "next loop turn"
  // deferral, so no uv::DeadlineTimer here; the rounding is its rule.
  auto expiry = conn_->expiry();
  if (!expiry) {
    timer_->stop();
    return;
  }
  timer_->start(uv::timer_delay_ms(*expiry, loop_now()), 0, [this] {
    if (conn_) conn_->handle_expiry(loop_now());
    after_core_call();
  });
}

void Client::finish_close() {
  if (closed_reported_) return;
  closed_reported_ = true;
  release_socket();
  if (timer_) timer_->stop();
  auto cb = std::move(on_closed_);
  on_closed_ = nullptr;
  if (cb) cb();
}

}  // namespace quiclab::h3
