#include "transport/quic/server_core.hpp"

#include <ngtcp2/ngtcp2_crypto.h>
#include <sys/random.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>

#include "transport/core/datagram_kind.hpp"
#include "transport/core/log.hpp"

namespace quiclab::quic {

namespace {

// Length of the connection IDs we issue; short-header packets are parsed with it.
constexpr std::size_t kScidLen = 18;
// A GSO send carries at most this many packets (kernel UDP_MAX_SEGMENTS).
constexpr std::size_t kMaxBatchPackets = 64;
// Per write turn, at most this many GSO batches: bounds the time one
// connection holds the loop; ngtcp2's pacing timer brings us back.
constexpr std::size_t kMaxBatchesPerWrite = 1;
// Unpaced (ServerCoreConfig::pacing off) no timer brings us back: write the
// whole window now, as an unpaced TCP does (256 batches hold ~16 MB).
constexpr std::size_t kMaxBatchesUnpaced = 256;
// The largest datagram we build: IPv4's UDP payload limit (path_mtu.hpp
// decides what a connection actually uses).
constexpr std::size_t kMaxPacketSize = 65507;
constexpr std::size_t kMaxGsoBytes = 65507;
constexpr Timestamp kRetryTokenLifetime = 10 * kNanosPerSecond;
constexpr Timestamp kRegularTokenLifetime = 3600 * kNanosPerSecond;

// ngtcp2 asks for randomness (greasing, padding, PATH_CHALLENGE data); the
// core's injected generator answers, so a seeded simulation replays it.
void rand_cb(std::uint8_t* dest, std::size_t destlen, const ngtcp2_rand_ctx* ctx) {
  static_cast<Random*>(ctx->native_handle)->fill(dest, destlen);
}

ngtcp2_path to_ngtcp2(const Path& p) {
  return ngtcp2_path{{const_cast<sockaddr*>(p.local.sa()), p.local.size()},
                     {const_cast<sockaddr*>(p.remote.sa()), p.remote.size()},
                     nullptr};
}

Path from_ngtcp2(const ngtcp2_path& p) { return Path{SocketAddress(p.local.addr), SocketAddress(p.remote.addr)}; }

std::string hex_cid(const ngtcp2_cid& cid) { return to_hex(ByteView(cid.data, cid.datalen)); }

// QUIC v1 long-header packet type bits (RFC 9000 17.2).
bool is_v1_handshake_packet(ByteView d) { return d.size() > 5 && (d[0] & 0x80) && ((d[0] & 0x30) >> 4) == 2; }

}  // namespace

struct ServerCore::Connection {
  enum class State { active, closing, draining, dead };

  ServerCore* core = nullptr;
  ngtcp2_conn* conn = nullptr;
  ngtcp2_crypto_conn_ref conn_ref{};
  std::unique_ptr<tls::Session> tls;
  std::unique_ptr<StreamApplication> app;
  std::string id;
  std::vector<CidKey> cids;  // every key this connection is registered under
  State state = State::active;
  bool handshake_done = false;
  bool pacing_started = false;  // pace(): the first write after the handshake has forgotten the earlier bytes
  bool counted_half_open = false;
  bool validated = false;
  std::uint64_t unvalidated_in = 0, unvalidated_out = 0;
  bool dirty = false;
  bool in_blocked = false;
  bool shutdown_started = false;
  std::uint64_t update_key_calls = 0;
  Bytes close_packet;
  Path close_path;
  Timestamp close_deadline = 0;
  std::optional<Timestamp> timer_key;
  // The unsent rest of a batch after the socket said EAGAIN.
  Bytes pending;
  Path pending_path;
  std::size_t pending_gso = 0;
  Ecn pending_ecn = Ecn::not_ect;
  std::unique_ptr<QlogWriter> qlog;
  ngtcp2_connection_close_error last_error{};
  // For the connection record (ServerCoreConfig::on_connection_end).
  std::string peer;
  Timestamp created_at = 0;
  std::int64_t created_unix_ms = unix_ms_now();
  std::uint64_t initial_cwnd = 0, initial_payload = 0;
  std::uint64_t bytes_out = 0, datagrams_out = 0;
  std::uint64_t ptos = 0, congestion_events = 0;
  std::size_t last_pto_count = 0;
  ngtcp2_tstamp last_recovery_start = UINT64_MAX;
  bool reported = false;

  /// Counts PTO expirations and new recovery periods since the last look;
  /// ngtcp2 0.12.1 keeps neither total (pto_count resets on an ACK).
  void observe() {
    if (conn == nullptr || !core->config_.on_connection_end) return;
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(conn, &st);
    if (st.pto_count > last_pto_count) ptos += st.pto_count - last_pto_count;
    last_pto_count = st.pto_count;
    if (st.congestion_recovery_start_ts != last_recovery_start && st.congestion_recovery_start_ts != UINT64_MAX)
      ++congestion_events;
    last_recovery_start = st.congestion_recovery_start_ts;
  }

  ~Connection() {
    app.reset();  // the application holds nghttp3 state that refers to streams of conn
    if (conn != nullptr) ngtcp2_conn_del(conn);
    tls.reset();
  }

  static Connection* of(void* user_data) { return static_cast<Connection*>(user_data); }

  void note_sent(std::size_t n) {
    if (validated) return;
    unvalidated_out += n;
    if (unvalidated_in == 0) return;
    double ratio = static_cast<double>(unvalidated_out) / static_cast<double>(unvalidated_in);
    auto& st = stats();
    st.max_unvalidated_ratio = std::max(st.max_unvalidated_ratio, ratio);
    if (ratio > 3.0) {
      ++st.amplification_violations;
      log::warn("quic {}: sent {} bytes for {} received before address validation (over 3x)", id, unvalidated_out,
                unvalidated_in);
      validated = true;  // count each connection once
    }
  }

  void set_validated() { validated = true; }
  ServerCoreStats& stats() { return core->stats_; }
};

namespace {

using Conn = ServerCore::Connection;

int cb_handshake_completed(ngtcp2_conn*, void* user_data);
int cb_recv_stream_data(ngtcp2_conn*, std::uint32_t flags, std::int64_t stream_id, std::uint64_t,
                        const std::uint8_t* data, std::size_t datalen, void* user_data, void*) {
  auto* c = Conn::of(user_data);
  if (!c->app) return 0;
  if (c->app->on_stream_data(stream_id, ByteView(data, datalen), (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}
int cb_acked_stream_data_offset(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, std::uint64_t datalen,
                                void* user_data, void*) {
  auto* c = Conn::of(user_data);
  if (c->app && c->app->on_acked_stream_data(stream_id, datalen) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}
int cb_stream_close(ngtcp2_conn*, std::uint32_t flags, std::int64_t stream_id, std::uint64_t app_error_code,
                    void* user_data, void*) {
  auto* c = Conn::of(user_data);
  std::optional<std::uint64_t> code;
  if (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) code = app_error_code;
  if (c->app && c->app->on_stream_close(stream_id, code) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}
int cb_stream_reset(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, std::uint64_t app_error_code, void* user_data,
                    void*) {
  auto* c = Conn::of(user_data);
  if (c->app && c->app->on_stream_reset(stream_id, app_error_code) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}
int cb_stream_stop_sending(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t app_error_code, void* user_data, void*) {
  auto* c = Conn::of(user_data);
  if (c->app && c->app->on_stream_stop_sending(stream_id, app_error_code) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}
int cb_extend_max_remote_streams_bidi(ngtcp2_conn*, std::uint64_t max_streams, void* user_data) {
  auto* c = Conn::of(user_data);
  if (c->app && c->app->on_extend_max_remote_streams_bidi(max_streams) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}
int cb_extend_max_stream_data(ngtcp2_conn*, std::int64_t stream_id, std::uint64_t, void* user_data, void*) {
  auto* c = Conn::of(user_data);
  if (c->app && c->app->on_extend_max_stream_data(stream_id) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}
int cb_recv_tx_key(ngtcp2_conn*, ngtcp2_crypto_level level, void* user_data) {
  auto* c = Conn::of(user_data);
  if (level != NGTCP2_CRYPTO_LEVEL_APPLICATION || !c->app) return 0;
  return c->app->on_ready() == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}
int cb_update_key(ngtcp2_conn* conn, std::uint8_t* rx_secret, std::uint8_t* tx_secret,
                  ngtcp2_crypto_aead_ctx* rx_aead_ctx, std::uint8_t* rx_iv, ngtcp2_crypto_aead_ctx* tx_aead_ctx,
                  std::uint8_t* tx_iv, const std::uint8_t* current_rx_secret, const std::uint8_t* current_tx_secret,
                  std::size_t secretlen, void* user_data) {
  // ngtcp2 derives the next generation of keys once after the handshake is
  // confirmed and again after each key update; calls beyond the first count
  // key updates (we never initiate one, so they are the peer's).
  auto* c = Conn::of(user_data);
  if (++c->update_key_calls > 1) ++c->stats().key_updates;
  return ngtcp2_crypto_update_key_cb(conn, rx_secret, tx_secret, rx_aead_ctx, rx_iv, tx_aead_ctx, tx_iv,
                                     current_rx_secret, current_tx_secret, secretlen, user_data);
}
int cb_path_validation(ngtcp2_conn*, std::uint32_t, const ngtcp2_path* path, ngtcp2_path_validation_result res,
                       void* user_data) {
  auto* c = Conn::of(user_data);
  if (res == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS) {
    ++c->stats().path_validations;
    log::debug("quic {}: path to {} validated", c->id, SocketAddress(path->remote.addr).to_string());
  } else {
    log::info("quic {}: path validation to {} failed", c->id, SocketAddress(path->remote.addr).to_string());
  }
  return 0;
}
void cb_qlog(void* user_data, std::uint32_t flags, const void* data, std::size_t datalen) {
  auto* c = Conn::of(user_data);
  if (!c->qlog) return;
  c->qlog->write(ByteView(static_cast<const std::uint8_t*>(data), datalen));
  if ((flags & NGTCP2_QLOG_WRITE_FLAG_FIN) != 0) {
    c->qlog->finish();
    c->qlog.reset();
  }
}

}  // namespace

// Friend-level callbacks that touch the core's private maps.
struct CoreAccess {
  static int get_new_connection_id(ngtcp2_conn*, ngtcp2_cid* cid, std::uint8_t* token, std::size_t cidlen,
                                   void* user_data) {
    auto* c = Conn::of(user_data);
    auto* core = c->core;
    for (;;) {
      core->random_.fill(cid->data, cidlen);
      cid->datalen = cidlen;
      if (core->by_cid_.count(ServerCore::key_of(*cid)) == 0) break;
    }
    if (ngtcp2_crypto_generate_stateless_reset_token(token, core->static_secret_.data(), core->static_secret_.size(),
                                                     cid) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    auto key = ServerCore::key_of(*cid);
    core->by_cid_.emplace(key, c);
    c->cids.push_back(key);
    return 0;
  }
  static int remove_connection_id(ngtcp2_conn*, const ngtcp2_cid* cid, void* user_data) {
    auto* c = Conn::of(user_data);
    auto key = ServerCore::key_of(*cid);
    auto it = c->core->by_cid_.find(key);
    if (it != c->core->by_cid_.end() && it->second == c) c->core->by_cid_.erase(it);
    c->cids.erase(std::remove(c->cids.begin(), c->cids.end(), key), c->cids.end());
    return 0;
  }
  static int handshake_completed(ngtcp2_conn* conn, void* user_data) {
    auto* c = Conn::of(user_data);
    auto* core = c->core;
    c->handshake_done = true;
    c->set_validated();
    if (c->counted_half_open) {
      c->counted_half_open = false;
      --core->half_open_;
    }
    ++core->stats_.handshakes_completed;
    if (c->tls->resumed()) ++core->stats_.resumed;
    if (c->tls->early_data_accepted()) ++core->stats_.early_data_accepted;
    if (auto st = c->tls->send_session_ticket(); !st)
      log::warn("quic {}: no session ticket: {}", c->id, st.error().message);
    if (core->config_.new_token) {
      // A token for the client's next connection proves this address (NEW_TOKEN).
      std::array<std::uint8_t, NGTCP2_CRYPTO_MAX_REGULAR_TOKENLEN> token{};
      const auto* path = ngtcp2_conn_get_path(conn);
      auto n =
          ngtcp2_crypto_generate_regular_token(token.data(), core->static_secret_.data(), core->static_secret_.size(),
                                               path->remote.addr, path->remote.addrlen, core->now_hint_);
      if (n > 0) ngtcp2_conn_submit_new_token(conn, token.data(), static_cast<std::size_t>(n));
    }
    log::debug("quic {}: handshake completed ({}, resumed {}, 0-RTT {})", c->id, c->tls->description(),
               c->tls->resumed(), c->tls->early_data_accepted());
    if (c->app && c->app->on_handshake_completed() != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
    return 0;
  }
};

namespace {
int cb_handshake_completed(ngtcp2_conn* conn, void* user_data) {
  return CoreAccess::handshake_completed(conn, user_data);
}

ngtcp2_conn* get_conn(ngtcp2_crypto_conn_ref* ref) { return static_cast<Conn*>(ref->user_data)->conn; }

ngtcp2_callbacks make_callbacks() {
  ngtcp2_callbacks cb{};
  cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.handshake_completed = cb_handshake_completed;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.recv_stream_data = cb_recv_stream_data;
  cb.acked_stream_data_offset = cb_acked_stream_data_offset;
  cb.stream_close = cb_stream_close;
  cb.rand = rand_cb;
  cb.get_new_connection_id = CoreAccess::get_new_connection_id;
  cb.remove_connection_id = CoreAccess::remove_connection_id;
  cb.update_key = cb_update_key;
  cb.path_validation = cb_path_validation;
  cb.stream_reset = cb_stream_reset;
  cb.extend_max_remote_streams_bidi = cb_extend_max_remote_streams_bidi;
  cb.extend_max_stream_data = cb_extend_max_stream_data;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.stream_stop_sending = cb_stream_stop_sending;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.recv_tx_key = cb_recv_tx_key;
  return cb;
}
}  // namespace

// ---------------------------------------------------------------------------

std::size_t ServerCore::CidHash::operator()(const CidKey& k) const noexcept {
  // Connection IDs we issue are random; for foreign ones (client-chosen
  // Initial DCIDs) an FNV mix is plenty for a hash table.
  std::size_t h = 1469598103934665603ULL ^ k.len;
  for (std::size_t i = 0; i < k.len; ++i) h = (h ^ k.data[i]) * 1099511628211ULL;
  return h;
}

ServerCore::CidKey ServerCore::key_of(const std::uint8_t* data, std::size_t len) {
  CidKey k;
  k.len = static_cast<std::uint8_t>(std::min<std::size_t>(len, NGTCP2_MAX_CIDLEN));
  std::memcpy(k.data.data(), data, k.len);
  return k;
}

ServerCore::ServerCore(ServerCoreConfig config, tls::ServerContext& tls, PacketSink& sink, ApplicationFactory factory,
                       Random& random)
    : config_(std::move(config)), tls_(tls), sink_(sink), factory_(std::move(factory)), random_(random) {
  random_.fill(static_secret_.data(), static_secret_.size());
  // A batch is at most max(1, 65507 / packet size) packets of at most 65507
  // bytes each (write_connection), so it never outgrows one GSO send.
  tx_buffer_.resize(kMaxGsoBytes);
}

ServerCore::~ServerCore() = default;

std::size_t ServerCore::connection_count() const { return connections_.size(); }
std::size_t ServerCore::half_open_count() const { return half_open_; }
bool ServerCore::finished() const { return shutting_down_ && connections_.empty(); }

void ServerCore::on_datagram(const Path& path, ByteView data, Ecn ecn, Timestamp now) {
  now_hint_ = now;
  ++stats_.datagrams_in;
  stats_.bytes_in += data.size();
  stats_.max_datagram_in = std::max<std::uint64_t>(stats_.max_datagram_in, data.size());
  if (data.empty()) {
    ++stats_.dropped_unknown;
    return;
  }
  if (is_stun_message(data)) {
    // A STUN message on a socket shared with STUN (DESIGN.md): not QUIC, and
    // an answer (a stateless reset, once it is 24 bytes or more) would be
    // noise to a STUN peer. Callers demultiplex first; this is the backstop.
    ++stats_.dropped_stun;
    log::debug("quic: dropped a {} byte STUN message from {}", data.size(), path.remote.to_string());
    return;
  }
  ngtcp2_version_cid vc{};
  int rv = ngtcp2_pkt_decode_version_cid(&vc, data.data(), data.size(), kScidLen);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    if (!may_open(path)) return;
    // Only answer datagrams that could be a client's first flight (RFC 9000 6.1, 14.1).
    if (data.size() >= NGTCP2_MAX_UDP_PAYLOAD_SIZE && !shutting_down_) send_version_negotiation(path, vc);
    return;
  }
  if (rv != 0) {
    ++stats_.dropped_unknown;
    log::debug("quic: dropped a {} byte datagram from {}: unparsable header ({})", data.size(), path.remote.to_string(),
               ngtcp2_strerror(rv));
    return;
  }
  auto it = by_cid_.find(key_of(vc.dcid, vc.dcidlen));
  if (it == by_cid_.end()) {
    if (data[0] & 0x80)
      accept(path, data, ecn, now);
    else
      maybe_send_stateless_reset(path, data, vc.dcid, vc.dcidlen, now);
    reap();
    return;
  }
  Connection& c = *it->second;
  switch (c.state) {
    case Connection::State::closing:
      // Answer anything in the closing period with our CONNECTION_CLOSE again.
      if (!c.close_packet.empty()) send_raw(c.close_path, c.close_packet);
      return;
    case Connection::State::draining:
    case Connection::State::dead:
      return;
    case Connection::State::active:
      break;
  }
  if (!c.validated) {
    c.unvalidated_in += data.size();
    if (is_v1_handshake_packet(data)) c.set_validated();
  }
  ngtcp2_path p = to_ngtcp2(path);
  ngtcp2_pkt_info pi{static_cast<std::uint32_t>(ecn)};
  rv = ngtcp2_conn_read_pkt(c.conn, &p, &pi, data.data(), data.size(), now);
  c.observe();
  if (rv != 0) {
    switch (rv) {
      case NGTCP2_ERR_DRAINING:
        report(c);
        c.state = Connection::State::draining;
        c.close_deadline = now + 3 * ngtcp2_conn_get_pto(c.conn);
        schedule(c);
        break;
      case NGTCP2_ERR_DROP_CONN:
      case NGTCP2_ERR_RETRY:
        retire(c);
        break;
      case NGTCP2_ERR_CRYPTO:
        log::info("quic {}: TLS handshake failed ({})", c.id, tls::alert_text(ngtcp2_conn_get_tls_alert(c.conn)));
        if (c.last_error.error_code == 0)
          ngtcp2_connection_close_error_set_transport_error_tls_alert(&c.last_error, ngtcp2_conn_get_tls_alert(c.conn),
                                                                      nullptr, 0);
        close_connection(c, now);
        break;
      default:
        log::info("quic {}: closing: {}", c.id, ngtcp2_strerror(rv));
        if (c.last_error.error_code == 0)
          ngtcp2_connection_close_error_set_transport_error_liberr(&c.last_error, rv, nullptr, 0);
        close_connection(c, now);
        break;
    }
    reap();
    return;
  }
  mark_dirty(c);
}

bool ServerCore::may_open(const Path& path) {
  if (!config_.accept_initial || config_.accept_initial(path.remote)) return true;
  ++stats_.dropped_not_accepted;
  log::debug("quic: {} may not open a connection here (accept hook); dropped", path.remote.to_string());
  return false;
}

void ServerCore::accept(const Path& path, ByteView data, Ecn ecn, Timestamp now) {
  if (shutting_down_ || !may_open(path)) return;
  ngtcp2_pkt_hd hd{};
  int rv = ngtcp2_accept(&hd, data.data(), data.size());
  if (rv == NGTCP2_ERR_RETRY) {
    send_retry(path, hd, data.size(), now);
    return;
  }
  if (rv != 0) {
    ++stats_.dropped_unknown;
    log::debug("quic: dropped a {} byte long-header datagram from {} that cannot start a connection", data.size(),
               path.remote.to_string());
    return;
  }
  if (half_open_ >= config_.max_half_open || connections_.size() >= config_.max_connections) {
    ++stats_.dropped_half_open_cap;
    log::debug("quic: dropped an Initial from {}: {} half-open, {} connections", path.remote.to_string(), half_open_,
               connections_.size());
    return;
  }
  const bool require_retry = config_.retry || half_open_ >= config_.auto_retry_half_open;
  ngtcp2_cid ocid{};
  bool have_ocid = false;
  bool token_ok = false;
  if (hd.token.len > 0) {
    if (hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
      if (ngtcp2_crypto_verify_retry_token(&ocid, hd.token.base, hd.token.len, static_secret_.data(),
                                           static_secret_.size(), hd.version, path.remote.sa(), path.remote.size(),
                                           &hd.dcid, kRetryTokenLifetime, now) != 0) {
        log::info("quic: Initial from {} carries an invalid Retry token; closing with INVALID_TOKEN",
                  path.remote.to_string());
        send_invalid_token_close(path, hd);
        return;
      }
      have_ocid = true;
      token_ok = true;
    } else if (hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_REGULAR &&
               ngtcp2_crypto_verify_regular_token(hd.token.base, hd.token.len, static_secret_.data(),
                                                  static_secret_.size(), path.remote.sa(), path.remote.size(),
                                                  kRegularTokenLifetime, now) == 0) {
      token_ok = true;
    } else {
      log::debug("quic: ignoring an unusable token from {}", path.remote.to_string());
    }
  }
  if (!token_ok) {
    hd.token = ngtcp2_vec{nullptr, 0};
    if (require_retry) {
      send_retry(path, hd, data.size(), now);
      return;
    }
  }
  if (token_ok) ++stats_.tokens_accepted;

  auto owned = std::make_unique<Connection>();
  Connection& c = *owned;
  c.core = this;
  c.conn_ref = ngtcp2_crypto_conn_ref{get_conn, &c};
  ngtcp2_cid scid{};
  do {
    scid.datalen = kScidLen;
    random_.fill(scid.data, scid.datalen);
  } while (by_cid_.count(key_of(scid)) != 0);
  c.id = hex_cid(scid);

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = now;
  settings.cc_algo = config_.cc_algo;
  settings.max_window = config_.max_data;
  settings.max_stream_window = config_.max_stream_data;
  settings.handshake_timeout = config_.handshake_timeout;
  settings.initial_rtt = config_.initial_rtt;
  apply_udp_payload(settings, udp_payload_for(path.remote, config_.udp_payload, config_.loopback_udp_payload));
  settings.rand_ctx.native_handle = &random_;
  if (token_ok) settings.token = hd.token;  // a valid token: the address counts as validated
  if (config_.qlog) {
    if (auto writer = config_.qlog(c.id); !writer) {
      log::warn("quic {}: no qlog: {}", c.id, writer.error().message);
    } else if (*writer) {
      c.qlog = std::move(*writer);
      settings.qlog.write = cb_qlog;
      settings.qlog.odcid = have_ocid ? ocid : hd.dcid;
    }
  }

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = std::min<std::uint64_t>(config_.max_stream_data, 1024 * 1024);
  params.initial_max_stream_data_bidi_remote = std::min<std::uint64_t>(config_.max_stream_data, 1024 * 1024);
  params.initial_max_stream_data_uni = 256 * 1024;
  params.initial_max_data = std::min<std::uint64_t>(config_.max_data, 4 * 1024 * 1024);
  params.initial_max_streams_bidi = config_.max_streams_bidi;
  params.initial_max_streams_uni = 3;
  params.max_idle_timeout = config_.idle_timeout;
  params.active_connection_id_limit = 7;
  params.stateless_reset_token_present = 1;
  advertise_udp_payload(params, config_.udp_payload);
  // A failed HKDF would advertise a token of zeros that anyone could forge.
  if (ngtcp2_crypto_generate_stateless_reset_token(params.stateless_reset_token, static_secret_.data(),
                                                   static_secret_.size(), &scid) != 0) {
    log::warn("quic: cannot derive a stateless reset token; dropping the Initial from {}", path.remote.to_string());
    return;
  }
  if (have_ocid) {
    params.original_dcid = ocid;
    params.retry_scid = hd.dcid;
    params.retry_scid_present = 1;
  } else {
    params.original_dcid = hd.dcid;
  }
  // A valid token proves the address: a Retry round trip, or a NEW_TOKEN
  // token (RFC 9000 8.1.3). ngtcp2 then lifts the 3x limit, so the
  // amplification check must not count this connection.
  if (token_ok) c.set_validated();

  ngtcp2_path p = to_ngtcp2(path);
  auto callbacks = make_callbacks();
  rv = ngtcp2_conn_server_new(&c.conn, &hd.scid, &scid, &p, hd.version, &callbacks, &settings, &params, nullptr, &c);
  if (rv != 0) {
    log::warn("quic: cannot create a connection: {}", ngtcp2_strerror(rv));
    return;
  }
  auto session = tls_.new_session(&c.conn_ref);
  if (!session) {
    log::warn("quic: cannot create a TLS session: {}", session.error().message);
    return;
  }
  c.tls = std::move(*session);
  ngtcp2_conn_set_tls_native_handle(c.conn, c.tls->native_handle());
  c.peer = path.remote.to_string();
  c.created_at = now;
  {
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c.conn, &st);
    c.initial_cwnd = st.cwnd;
    c.initial_payload = st.max_tx_udp_payload_size;
  }
  c.app = factory_ ? factory_(c.conn, ConnectionInfo{c.id, path.remote}) : nullptr;

  Connection* raw = owned.get();
  connections_.emplace(raw, std::move(owned));
  ++stats_.connections_accepted;
  c.counted_half_open = true;
  ++half_open_;
  for (const auto& key : {key_of(scid), key_of(hd.dcid)}) {
    by_cid_.emplace(key, raw);
    c.cids.push_back(key);
  }
  log::debug("quic {}: new connection from {}{}", c.id, path.remote.to_string(), token_ok ? " (token)" : "");
  on_datagram_for_new(c, path, data, ecn, now);
}

// The first datagram of a new connection goes through the normal read path
// (without counting it twice in the datagram statistics).
void ServerCore::on_datagram_for_new(Connection& c, const Path& path, ByteView data, Ecn ecn, Timestamp now) {
  if (!c.validated) c.unvalidated_in += data.size();
  ngtcp2_path p = to_ngtcp2(path);
  ngtcp2_pkt_info pi{static_cast<std::uint32_t>(ecn)};
  int rv = ngtcp2_conn_read_pkt(c.conn, &p, &pi, data.data(), data.size(), now);
  if (rv != 0) {
    if (rv == NGTCP2_ERR_RETRY) {
      ngtcp2_pkt_hd hd{};
      if (ngtcp2_accept(&hd, data.data(), data.size()) == 0) send_retry(path, hd, data.size(), now);
      retire(c);
      return;
    }
    if (rv == NGTCP2_ERR_CRYPTO && ngtcp2_conn_get_tls_alert(c.conn) != 0) {
      // A ClientHello TLS refuses (no common cipher suite, group or ALPN):
      // answer with CONNECTION_CLOSE carrying the alert (RFC 9001 4.8), one
      // small Initial, so the client learns why at once instead of timing out.
      log::info("quic {}: TLS handshake failed ({})", c.id, tls::alert_text(ngtcp2_conn_get_tls_alert(c.conn)));
      ngtcp2_connection_close_error_set_transport_error_tls_alert(&c.last_error, ngtcp2_conn_get_tls_alert(c.conn),
                                                                  nullptr, 0);
      close_connection(c, now);
      return;
    }
    if (rv == NGTCP2_ERR_CRYPTO || rv == NGTCP2_ERR_DROP_CONN || rv == NGTCP2_ERR_DRAINING) {
      log::debug("quic {}: first packet refused: {}", c.id, ngtcp2_strerror(rv));
      retire(c);
      return;
    }
    log::info("quic {}: first packet refused: {}", c.id, ngtcp2_strerror(rv));
    ngtcp2_connection_close_error_set_transport_error_liberr(&c.last_error, rv, nullptr, 0);
    close_connection(c, now);
    return;
  }
  mark_dirty(c);
}

void ServerCore::send_version_negotiation(const Path& path, const ngtcp2_version_cid& vc) {
  std::array<std::uint32_t, 2> versions{NGTCP2_PROTO_VER_V1, NGTCP2_PROTO_VER_V2_DRAFT};
  std::array<std::uint8_t, NGTCP2_MAX_UDP_PAYLOAD_SIZE> buf{};
  std::uint8_t unused_bits = 0;
  random_.fill(&unused_bits, 1);
  auto n = ngtcp2_pkt_write_version_negotiation(buf.data(), buf.size(), unused_bits, vc.scid, vc.scidlen, vc.dcid,
                                                vc.dcidlen, versions.data(), versions.size());
  if (n <= 0) return;
  ++stats_.version_negotiations_sent;
  log::debug("quic: Version Negotiation to {} (client offered 0x{:08x})", path.remote.to_string(), vc.version);
  send_raw(path, ByteView(buf.data(), static_cast<std::size_t>(n)));
}

void ServerCore::send_retry(const Path& path, const ngtcp2_pkt_hd& hd, std::size_t received, Timestamp now) {
  ngtcp2_cid scid{};
  scid.datalen = kScidLen;
  random_.fill(scid.data, scid.datalen);
  std::array<std::uint8_t, NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN> token{};
  auto tokenlen =
      ngtcp2_crypto_generate_retry_token(token.data(), static_secret_.data(), static_secret_.size(), hd.version,
                                         path.remote.sa(), path.remote.size(), &scid, &hd.dcid, now);
  if (tokenlen < 0) return;
  std::array<std::uint8_t, NGTCP2_MAX_UDP_PAYLOAD_SIZE> buf{};
  // Never answer with more than 3x what arrived (RFC 9000 8.1).
  auto cap = std::min(buf.size(), received * 3);
  auto n = ngtcp2_crypto_write_retry(buf.data(), cap, hd.version, &hd.scid, &scid, &hd.dcid, token.data(),
                                     static_cast<std::size_t>(tokenlen));
  if (n <= 0) return;
  ++stats_.retries_sent;
  log::debug("quic: Retry to {}", path.remote.to_string());
  send_raw(path, ByteView(buf.data(), static_cast<std::size_t>(n)));
}

void ServerCore::send_invalid_token_close(const Path& path, const ngtcp2_pkt_hd& hd) {
  std::array<std::uint8_t, NGTCP2_MAX_UDP_PAYLOAD_SIZE> buf{};
  auto n = ngtcp2_crypto_write_connection_close(buf.data(), buf.size(), hd.version, &hd.scid, &hd.dcid,
                                                NGTCP2_INVALID_TOKEN, nullptr, 0);
  ++stats_.invalid_token_closes;
  if (n <= 0) return;
  send_raw(path, ByteView(buf.data(), static_cast<std::size_t>(n)));
}

void ServerCore::maybe_send_stateless_reset(const Path& path, ByteView data, const std::uint8_t* dcid,
                                            std::size_t dcidlen, Timestamp now) {
  // A reset must be smaller than what triggered it (no amplification, no
  // reset loops between two servers) and at least 21 bytes long (RFC 9000 10.3).
  constexpr std::size_t kMinReset = 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN;
  if (data.size() <= kMinReset + 1 || dcidlen != kScidLen) {
    ++stats_.dropped_unknown;
    return;
  }
  if (now - reset_window_start_ >= kNanosPerSecond) {
    reset_window_start_ = now;
    resets_in_window_ = 0;
  }
  if (resets_in_window_ >= config_.stateless_resets_per_second) return;
  ++resets_in_window_;
  ngtcp2_cid cid{};
  ngtcp2_cid_init(&cid, dcid, dcidlen);
  std::array<std::uint8_t, NGTCP2_STATELESS_RESET_TOKENLEN> token{};
  if (ngtcp2_crypto_generate_stateless_reset_token(token.data(), static_secret_.data(), static_secret_.size(), &cid) !=
      0)
    return;
  const std::size_t len = std::min<std::size_t>(data.size() - 1, 64);
  std::array<std::uint8_t, 64> random{};
  random_.fill(random.data(), random.size());
  std::array<std::uint8_t, 64> buf{};
  auto n = ngtcp2_pkt_write_stateless_reset(buf.data(), len, token.data(), random.data(),
                                            len - 1 - NGTCP2_STATELESS_RESET_TOKENLEN);
  if (n <= 0) return;
  ++stats_.stateless_resets_sent;
  log::debug("quic: stateless reset to {} for an unknown connection ID", path.remote.to_string());
  send_raw(path, ByteView(buf.data(), static_cast<std::size_t>(n)));
}

void ServerCore::send_raw(const Path& path, ByteView packet) {
  if (blocked_) return;  // control packets are best effort; the peer retransmits
  auto r = sink_.send(path, packet, 0, Ecn::not_ect);
  if (r.status == SendStatus::sent) {
    ++stats_.datagrams_out;
    stats_.bytes_out += packet.size();
  }
}

void ServerCore::mark_dirty(Connection& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_.push_back(&c);
}

void ServerCore::close_connection(Connection& c, Timestamp now) {
  if (c.state != Connection::State::active) return;
  report(c);
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  std::vector<std::uint8_t> buf(std::min(kMaxPacketSize, tx_payload_limit(c.conn)));
  auto n = ngtcp2_conn_write_connection_close(c.conn, &ps.path, &pi, buf.data(), buf.size(), &c.last_error, now);
  if (n <= 0) {
    retire(c);
    return;
  }
  c.close_packet.assign(buf.begin(), buf.begin() + n);
  c.close_path = from_ngtcp2(ps.path);
  c.note_sent(static_cast<std::size_t>(n));
  send_raw(c.close_path, c.close_packet);
  if (shutting_down_) {
    retire(c);  // the process is going away; no closing period to keep
    return;
  }
  c.state = Connection::State::closing;
  c.close_deadline = now + 3 * ngtcp2_conn_get_pto(c.conn);
  schedule(c);
}

namespace {
// Pacing starts once the handshake is complete. ngtcp2 0.12.1 paces with
// cwnd / smoothed_rtt, and before the first RTT sample smoothed_rtt is the
// 333 ms default: our ~1.2 KB first flight then pushed the next send ~22 ms
// out, so HANDSHAKE_DONE and the first response waited ~22 ms after the
// client's Finished even on loopback. Before the handshake completes the
// amplification limit and the congestion window bound what we send anyway.
// Without the update (ServerCoreConfig::pacing off) ngtcp2 0.12.1 never
// sets a next send time: nothing paces.
void pace(ngtcp2_conn* conn, bool on, Timestamp now) {
  if (on && ngtcp2_conn_get_handshake_completed(conn)) ngtcp2_conn_update_pkt_tx_time(conn, now);
}
}  // namespace

void ServerCore::write_connection(Connection& c, Timestamp now) {
  if (c.state != Connection::State::active) return;
  if (blocked_) {
    if (!c.in_blocked) {
      c.in_blocked = true;
      blocked_conns_.push_back(&c);
    }
    return;
  }
  ngtcp2_conn* conn = c.conn;
  // ngtcp2 counts every byte written since its last pacing update, and pace()
  // makes none before the handshake completes: the first paced interval would
  // otherwise cover those bytes too. With 0-RTT that is a whole first window
  // (the response to the early request), and the second round left about
  // 0.23 RTT late (the server's qlog at 100 ms: 124 ms between the first two
  // paced bursts, 101 without 0-RTT). An update stamped at time 0 empties the
  // count and leaves a next send time in the past.
  if (config_.pacing && !c.pacing_started && ngtcp2_conn_get_handshake_completed(conn)) {
    ngtcp2_conn_update_pkt_tx_time(conn, 0);
    c.pacing_started = true;
  }
  const std::size_t limit = tx_payload_limit(conn);
  const std::size_t max_payload = std::min(limit, kMaxPacketSize);
  const std::size_t path_max = std::min(ngtcp2_conn_get_path_max_tx_udp_payload_size(conn), limit);
  // A GSO send is one UDP datagram to the kernel: at most 65507 bytes in all.
  const std::size_t max_batch = std::clamp<std::size_t>(kMaxGsoBytes / max_payload, 1, kMaxBatchPackets);
  const std::size_t quantum_pkts =
      std::clamp<std::size_t>(ngtcp2_conn_get_send_quantum(conn) / max_payload, 1, max_batch);
  std::array<ngtcp2_vec, 16> vecs{};
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};

  std::uint8_t* buf = tx_buffer_.data();
  std::size_t len = 0, count = 0, gso = 0;
  Path batch_path;
  Ecn batch_ecn = Ecn::not_ect;
  std::size_t batches = 0;

  // Hands the batch to the sink; false when the socket is blocked.
  auto send_batch = [&]() -> bool {
    if (count == 0) return true;
    auto r = sink_.send(batch_path, ByteView(buf, len), count > 1 ? gso : 0, batch_ecn);
    std::size_t done = r.status == SendStatus::blocked ? r.bytes_sent : len;
    if (r.status != SendStatus::error) {
      stats_.bytes_out += done;
      stats_.datagrams_out += gso > 0 ? (done + gso - 1) / gso : 0;
      stats_.max_datagram_out = std::max<std::uint64_t>(stats_.max_datagram_out, count > 1 ? gso : len);
      stats_.max_batch_datagrams = std::max<std::uint64_t>(stats_.max_batch_datagrams, count);
      c.bytes_out += done;
      c.datagrams_out += gso > 0 ? (done + gso - 1) / gso : 0;
    }
    c.note_sent(len);
    const bool ok = r.status != SendStatus::blocked;
    if (!ok) {
      // ngtcp2 considers these packets sent; keep the rest for on_writable().
      ++stats_.send_blocked;
      blocked_ = true;
      c.pending.assign(buf + done, buf + len);
      c.pending_path = batch_path;
      c.pending_gso = count > 1 ? gso : 0;
      c.pending_ecn = batch_ecn;
      if (!c.in_blocked) {
        c.in_blocked = true;
        blocked_conns_.push_back(&c);
      }
    }
    len = count = gso = 0;
    ++batches;
    return ok;
  };

  for (;;) {
    std::int64_t stream_id = -1;
    bool fin = false;
    std::int64_t nvec = 0;
    if (c.app && ngtcp2_conn_get_max_data_left(conn) > 0) {
      nvec = c.app->next_stream_data(stream_id, fin, vecs);
      if (nvec < 0) {
        ngtcp2_connection_close_error_set_application_error(&c.last_error, c.app->error_code(), nullptr, 0);
        close_connection(c, now);
        return;
      }
    }
    std::uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (fin) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    ngtcp2_ssize ndatalen = -1;
    auto nwrite = ngtcp2_conn_writev_stream(conn, &ps.path, &pi, buf + len, max_payload, &ndatalen, flags, stream_id,
                                            vecs.data(), static_cast<std::size_t>(nvec), now);
    if (nwrite < 0) {
      int rv = 0;
      switch (nwrite) {
        case NGTCP2_ERR_STREAM_DATA_BLOCKED:
          rv = c.app->stream_blocked(stream_id);
          break;
        case NGTCP2_ERR_STREAM_SHUT_WR:
          rv = c.app->stream_shut_wr(stream_id);
          break;
        case NGTCP2_ERR_WRITE_MORE:
          rv = c.app->add_write_offset(stream_id, static_cast<std::size_t>(ndatalen));
          break;
        default:
          log::info("quic {}: write failed: {}", c.id, ngtcp2_strerror(static_cast<int>(nwrite)));
          ngtcp2_connection_close_error_set_transport_error_liberr(&c.last_error, static_cast<int>(nwrite), nullptr, 0);
          close_connection(c, now);
          return;
      }
      if (rv != 0) {
        ngtcp2_connection_close_error_set_application_error(&c.last_error, c.app->error_code(), nullptr, 0);
        close_connection(c, now);
        return;
      }
      continue;
    }
    if (ndatalen >= 0 && c.app && c.app->add_write_offset(stream_id, static_cast<std::size_t>(ndatalen)) != 0) {
      ngtcp2_connection_close_error_set_application_error(&c.last_error, c.app->error_code(), nullptr, 0);
      close_connection(c, now);
      return;
    }
    if (nwrite == 0) {
      send_batch();
      pace(conn, config_.pacing, now);
      return;
    }
    const auto n = static_cast<std::size_t>(nwrite);
    const Ecn ecn = static_cast<Ecn>(pi.ecn & 0x3);
    const bool same_path = count > 0 && batch_path.remote == SocketAddress(ps.path.remote.addr) &&
                           batch_path.local == SocketAddress(ps.path.local.addr);
    if (count > 0 && (!same_path || ecn != batch_ecn || n > gso || (gso > path_max && n != gso))) {
      // This packet cannot join the batch: ship the batch, then start a new
      // one with this packet (moved to the front of the buffer). send_batch()
      // reads the buffer only below `len`, so the packet stays where it is.
      const std::uint8_t* packet = buf + len;
      if (!send_batch()) {
        // Blocked: queue this packet behind the pending rest.
        c.pending.insert(c.pending.end(), packet, packet + n);
        if (c.pending_gso != 0 && n != c.pending_gso) c.pending_gso = 0;  // mixed sizes: resend one by one
        pace(conn, config_.pacing, now);
        return;
      }
      std::memmove(buf, packet, n);
    }
    if (count == 0) {
      batch_path = from_ngtcp2(ps.path);
      batch_ecn = ecn;
      gso = n;
    }
    len += n;
    ++count;
    if (count >= quantum_pkts || n < gso) {
      if (!send_batch()) {
        pace(conn, config_.pacing, now);
        return;
      }
      if (batches >= (config_.pacing ? kMaxBatchesPerWrite : kMaxBatchesUnpaced)) {
        pace(conn, config_.pacing, now);
        return;
      }
    }
  }
}

void ServerCore::schedule(Connection& c) {
  if (c.timer_key) {
    timers_.erase({*c.timer_key, &c});
    c.timer_key.reset();
  }
  Timestamp t = UINT64_MAX;
  switch (c.state) {
    case Connection::State::active:
      t = ngtcp2_conn_get_expiry(c.conn);
      break;
    case Connection::State::closing:
    case Connection::State::draining:
      t = c.close_deadline;
      break;
    case Connection::State::dead:
      return;
  }
  if (t == UINT64_MAX) return;
  c.timer_key = t;
  timers_.emplace(t, &c);
}

void ServerCore::report(Connection& c) {
  if (c.reported || c.conn == nullptr || !config_.on_connection_end) return;
  c.reported = true;
  c.observe();
  ngtcp2_conn_stat st;
  ngtcp2_conn_get_conn_stat(c.conn, &st);
  ConnectionRecord r;
  r.protocol = "quic";  // h3::Server names its own
  r.peer = c.peer;
  r.duration_ms = static_cast<double>(now_hint_ - c.created_at) / 1e6;
  r.start_unix_ms = c.created_unix_ms;
  r.congestion_control = std::string(cc_algo_name(config_.cc_algo));
  r.segment_bytes = st.max_tx_udp_payload_size;
  r.initial_cwnd_bytes = c.initial_cwnd;
  r.initial_cwnd_packets = c.initial_payload > 0 ? c.initial_cwnd / c.initial_payload : 0;
  r.paced = config_.pacing;
  if (r.paced) r.pacing_ss_pct = r.pacing_ca_pct = 125;  // ngtcp2_conn_update_pkt_tx_time's factor
  r.bytes_sent = c.bytes_out;
  r.packets_sent = c.datagrams_out;
  r.timeouts = c.ptos;
  r.congestion_events = c.congestion_events;
  if (st.min_rtt != UINT64_MAX) r.min_rtt_ms = static_cast<double>(st.min_rtt) / 1e6;
  r.smoothed_rtt_ms = static_cast<double>(st.smoothed_rtt) / 1e6;
  r.timer_ms = static_cast<double>(ngtcp2_conn_get_pto(c.conn)) / 1e6;
  r.final_cwnd_bytes = st.cwnd;
  if (c.handshake_done && c.tls) {
    r.resumed = c.tls->resumed();
    r.early_data = c.tls->early_data_accepted();
  }
  config_.on_connection_end(r);
}

void ServerCore::retire(Connection& c) {
  if (c.state == Connection::State::dead) return;
  report(c);
  if (c.timer_key) {
    timers_.erase({*c.timer_key, &c});
    c.timer_key.reset();
  }
  c.state = Connection::State::dead;
  for (const auto& key : c.cids) {
    auto it = by_cid_.find(key);
    if (it != by_cid_.end() && it->second == &c) by_cid_.erase(it);
  }
  c.cids.clear();
  if (c.counted_half_open) {
    c.counted_half_open = false;
    --half_open_;
  }
  ++stats_.connections_closed;
  dead_.push_back(&c);
}

void ServerCore::reap() {
  if (dead_.empty()) return;
  auto gone = [](Connection* c) { return c->state == Connection::State::dead; };
  dirty_.erase(std::remove_if(dirty_.begin(), dirty_.end(), gone), dirty_.end());
  blocked_conns_.erase(std::remove_if(blocked_conns_.begin(), blocked_conns_.end(), gone), blocked_conns_.end());
  auto dead = std::move(dead_);
  dead_.clear();
  for (auto* c : dead) connections_.erase(c);
}

void ServerCore::flush(Timestamp now) {
  now_hint_ = now;
  auto work = std::move(dirty_);
  dirty_.clear();
  for (auto* c : work) {
    c->dirty = false;
    if (c->state != Connection::State::active) continue;
    write_connection(*c, now);
    if (shutting_down_ && c->state == Connection::State::active && c->handshake_done && c->app && c->app->idle()) {
      ngtcp2_connection_close_error_set_application_error(&c->last_error, c->app->no_error_code(), nullptr, 0);
      close_connection(*c, now);
    }
    schedule(*c);
  }
  reap();
}

void ServerCore::on_writable(Timestamp now) {
  blocked_ = false;
  auto list = std::move(blocked_conns_);
  blocked_conns_.clear();
  for (std::size_t i = 0; i < list.size(); ++i) {
    Connection* c = list[i];
    c->in_blocked = false;
    if (c->state == Connection::State::dead) continue;
    if (!c->pending.empty()) {
      auto r = sink_.send(c->pending_path, c->pending, c->pending_gso, c->pending_ecn);
      if (r.status == SendStatus::blocked) {
        c->pending.erase(c->pending.begin(), c->pending.begin() + static_cast<std::ptrdiff_t>(r.bytes_sent));
        blocked_ = true;
        for (std::size_t j = i; j < list.size(); ++j) {
          list[j]->in_blocked = true;
          blocked_conns_.push_back(list[j]);
        }
        return;
      }
      stats_.bytes_out += c->pending.size();
      c->pending.clear();
    }
    mark_dirty(*c);
  }
  flush(now);
}

std::optional<Timestamp> ServerCore::expiry() const {
  std::optional<Timestamp> t;
  if (!timers_.empty()) t = timers_.begin()->first;
  if (shutting_down_ && !connections_.empty()) t = t ? std::min(*t, shutdown_deadline_) : shutdown_deadline_;
  return t;
}

void ServerCore::handle_expiry(Timestamp now) {
  now_hint_ = now;
  std::vector<Connection*> due;
  while (!timers_.empty() && timers_.begin()->first <= now) {
    auto* c = timers_.begin()->second;
    timers_.erase(timers_.begin());
    c->timer_key.reset();
    due.push_back(c);
  }
  for (auto* c : due) {
    switch (c->state) {
      case Connection::State::closing:
      case Connection::State::draining:
        retire(*c);
        continue;
      case Connection::State::dead:
        continue;
      case Connection::State::active:
        break;
    }
    int rv = ngtcp2_conn_handle_expiry(c->conn, now);
    c->observe();
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
      ++stats_.idle_timeouts;
      log::debug("quic {}: {}", c->id, rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout" : "handshake timeout");
      retire(*c);
      continue;
    }
    if (rv != 0) {
      ngtcp2_connection_close_error_set_transport_error_liberr(&c->last_error, rv, nullptr, 0);
      close_connection(*c, now);
      continue;
    }
    mark_dirty(*c);
  }
  if (shutting_down_ && now >= shutdown_deadline_) close_all(now);
  flush(now);
}

void ServerCore::close_all(Timestamp now) {
  if (!shutting_down_) shutdown(now);
  for (auto& [raw, owned] : connections_) {
    if (raw->state == Connection::State::active) {
      ngtcp2_connection_close_error_set_application_error(&raw->last_error, raw->app ? raw->app->no_error_code() : 0,
                                                          nullptr, 0);
      close_connection(*raw, now);
    } else {
      retire(*raw);
    }
  }
  reap();
}

void ServerCore::shutdown(Timestamp now) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_deadline_ = now + config_.shutdown_timeout;
  for (auto& [raw, owned] : connections_) {
    if (raw->state != Connection::State::active) {
      retire(*raw);
      continue;
    }
    if (!raw->handshake_done || !raw->app) {
      ngtcp2_connection_close_error_set_transport_error(&raw->last_error, NGTCP2_NO_ERROR, nullptr, 0);
      close_connection(*raw, now);
      continue;
    }
    raw->app->begin_shutdown();
    mark_dirty(*raw);
  }
  flush(now);
}

}  // namespace quiclab::quic
