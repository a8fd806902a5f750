// The GnuTLS implementation of the crypto seam (tls_backend.hpp). The only file
// in quiclab that includes GnuTLS headers.
#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <cstdio>
#include <ctime>
#include <deque>
#include <map>
#include <string>
#include <unordered_set>

#include "transport/core/log.hpp"
#include "transport/core/tls_names.hpp"
#include "transport/quic/tls_backend.hpp"

namespace quiclab::quic::tls {

namespace {

// TLS 1.3 only, and no middlebox-compatibility mode: QUIC forbids it (RFC 9001 8.4).
constexpr const char* kPriority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:%DISABLE_TLS13_COMPAT_MODE";

// The session priority: kPriority narrowed to one cipher suite and/or group
// (IANA names). Errors: a name tls_names does not know.
Result<std::string> priority_for(const std::string& cipher, const std::string& group) {
  std::string p = kPriority;
  if (!cipher.empty()) {
    const auto* c = tls_names::find_cipher(cipher);
    if (!c)
      return make_error(ErrorDomain::gnutls, EINVAL,
                        "tls: unknown TLS cipher '" + cipher + "' (" + tls_names::list(tls_names::kCiphers) + ")");
    p += ":-CIPHER-ALL:" + std::string(c->gnutls);
  }
  if (!group.empty()) {
    const auto* g = tls_names::find_group(group);
    if (!g)
      return make_error(ErrorDomain::gnutls, EINVAL,
                        "tls: unknown TLS group '" + group + "' (" + tls_names::list(tls_names::kGroups) + ")");
    p += ":-GROUP-ALL:" + std::string(g->gnutls);
  }
  return p;
}

Error gnutls_error(int rv, const std::string& what) {
  return make_error(ErrorDomain::gnutls, rv, "tls: " + what + ": " + gnutls_strerror(rv));
}

// An explicit key log file is process-wide: GnuTLS's keylog hook has no user
// pointer of its own (the session pointer belongs to ngtcp2's conn_ref).
std::FILE* g_keylog = nullptr;

void open_keylog(const std::filesystem::path& path) {
  if (path.empty() || g_keylog != nullptr) return;
  g_keylog = std::fopen(path.c_str(), "a");
  if (g_keylog == nullptr) log::warn("tls: cannot open key log file {}", path.string());
}

int keylog_hook(gnutls_session_t session, const char* label, const gnutls_datum_t* secret) {
  if (g_keylog == nullptr) return 0;
  gnutls_datum_t client_random{}, server_random{};
  gnutls_session_get_random(session, &client_random, &server_random);
  std::string line = label;
  line += ' ';
  line += to_hex(ByteView(client_random.data, client_random.size));
  line += ' ';
  line += to_hex(ByteView(secret->data, secret->size));
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), g_keylog);
  std::fflush(g_keylog);
  return 0;
}

class GnutlsSession final : public Session {
 public:
  explicit GnutlsSession(gnutls_session_t s) : session_(s) {}
  ~GnutlsSession() override { gnutls_deinit(session_); }
  GnutlsSession(const GnutlsSession&) = delete;
  GnutlsSession& operator=(const GnutlsSession&) = delete;

  void* native_handle() override { return session_; }
  std::string alpn() const override {
    gnutls_datum_t p{};
    if (gnutls_alpn_get_selected_protocol(session_, &p) != 0) return {};
    return std::string(reinterpret_cast<const char*>(p.data), p.size);
  }
  bool resumed() const override { return gnutls_session_is_resumed(session_) != 0; }
  bool resumption_offered() const override { return resumption_offered_; }
  bool early_data_accepted() const override {
    return (gnutls_session_get_flags(session_) & GNUTLS_SFLAGS_EARLY_DATA) != 0;
  }
  std::string description() const override {
    auto* d = gnutls_session_get_desc(session_);
    std::string out = d != nullptr ? d : "";
    gnutls_free(d);
    return out;
  }
  std::string cipher() const override {
    const char* c = gnutls_ciphersuite_get(session_);
    return c != nullptr ? c : "";
  }
  std::string group() const override {
    const char* g = gnutls_group_get_name(gnutls_group_get(session_));
    return g != nullptr ? tls_names::normalize_group(g) : "";
  }
  Status send_session_ticket() override {
    if (int rv = gnutls_session_ticket_send(session_, 1, 0); rv != 0)
      return gnutls_error(rv, "gnutls_session_ticket_send");
    return {};
  }

  std::string verify_error() const override { return verify_error_; }

  bool resumption_offered_ = false;
  ClientSessionOptions client_options;
  Bytes pinned_sha256;        // the peer's certificate must hash to this (when set)
  std::string verify_error_;  // why it did not

 private:
  gnutls_session_t session_;
};

// Pinning: the peer's first certificate (DER) must hash to the session's
// pinned SHA-256. Set as the credentials' verify function where a pin is
// configured; the session object is found through the db pointer.
int pinned_verify(gnutls_session_t session) {
  auto* owner = static_cast<GnutlsSession*>(gnutls_db_get_ptr(session));
  if (owner == nullptr || owner->pinned_sha256.empty()) return 0;
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &n);
  if (certs == nullptr || n == 0) {
    owner->verify_error_ = "the peer presented no certificate, but one with a pinned fingerprint was required";
    log::warn("tls: {}", owner->verify_error_);
    return GNUTLS_E_CERTIFICATE_ERROR;
  }
  Bytes got(32);
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, certs[0].data, certs[0].size, got.data()) != 0)
    return GNUTLS_E_CERTIFICATE_ERROR;
  if (got != owner->pinned_sha256) {
    owner->verify_error_ = "certificate fingerprint mismatch: pinned SHA-256 " +
                           fingerprint_text(owner->pinned_sha256) + ", the peer's is " + fingerprint_text(got);
    log::warn("tls: {}", owner->verify_error_);
    return GNUTLS_E_CERTIFICATE_ERROR;
  }
  return 0;
}

// The server insists on "h3": a ClientHello without it fails the handshake
// (no_application_protocol), as RFC 9001 8.1 requires.
int server_client_hello_hook(gnutls_session_t session, unsigned, unsigned, unsigned, const gnutls_datum_t*) {
  gnutls_datum_t p{};
  if (gnutls_alpn_get_selected_protocol(session, &p) != 0) return GNUTLS_E_NO_APPLICATION_PROTOCOL;
  if (std::string_view(reinterpret_cast<const char*>(p.data), p.size) != kAlpnH3)
    return GNUTLS_E_NO_APPLICATION_PROTOCOL;
  return 0;
}

int set_alpn_h3(gnutls_session_t s, unsigned flags) {
  gnutls_datum_t alpn{reinterpret_cast<unsigned char*>(const_cast<char*>(kAlpnH3.data())),
                      static_cast<unsigned>(kAlpnH3.size())};
  return gnutls_alpn_set_protocols(s, &alpn, 1, flags);
}

class GnutlsServerContext final : public ServerContext {
 public:
  ~GnutlsServerContext() override {
    if (anti_replay_ != nullptr) gnutls_anti_replay_deinit(anti_replay_);
    if (ticket_key_.data != nullptr) gnutls_memset(ticket_key_.data, 0, ticket_key_.size);
    gnutls_free(ticket_key_.data);
    if (cred_ != nullptr) gnutls_certificate_free_credentials(cred_);
  }

  Status init(const ServerConfig& config) {
    config_ = config;
    auto prio = priority_for(config.cipher, config.group);
    if (!prio) return prio.error();
    priority_ = *prio;
    if (int rv = gnutls_certificate_allocate_credentials(&cred_); rv != 0)
      return gnutls_error(rv, "allocate credentials");
    if (int rv = gnutls_certificate_set_x509_key_file(cred_, config.cert_file.c_str(), config.key_file.c_str(),
                                                      GNUTLS_X509_FMT_PEM);
        rv < 0)
      return gnutls_error(rv, "load certificate " + config.cert_file.string() + " / key " + config.key_file.string());
    if (int rv = gnutls_session_ticket_key_generate(&ticket_key_); rv != 0)
      return gnutls_error(rv, "generate session ticket key");
    if (!config.pinned_client_sha256.empty()) {
      if (config.pinned_client_sha256.size() != 32)
        return make_error(ErrorDomain::config, EINVAL, "tls: a pinned client SHA-256 is 32 bytes");
      gnutls_certificate_set_verify_function(cred_, pinned_verify);
    }
    if (int rv = gnutls_anti_replay_init(&anti_replay_); rv != 0) return gnutls_error(rv, "anti-replay init");
    gnutls_anti_replay_set_window(anti_replay_, config.anti_replay_window_ms);
    gnutls_anti_replay_set_add_function(anti_replay_, &GnutlsServerContext::anti_replay_add);
    gnutls_anti_replay_set_ptr(anti_replay_, this);
    open_keylog(config.keylog_file);
    return {};
  }

  Result<std::unique_ptr<Session>> new_session(ngtcp2_crypto_conn_ref* conn_ref) override {
    gnutls_session_t s = nullptr;
    unsigned flags = GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA;
    if (config_.early_data) flags |= GNUTLS_ENABLE_EARLY_DATA;
    if (int rv = gnutls_init(&s, flags); rv != 0) return gnutls_error(rv, "gnutls_init");
    auto session = std::make_unique<GnutlsSession>(s);
    if (int rv = gnutls_priority_set_direct(s, priority_.c_str(), nullptr); rv != 0)
      return gnutls_error(rv, "set priority");
    if (!config_.pinned_client_sha256.empty()) {
      session->pinned_sha256 = config_.pinned_client_sha256;
      gnutls_db_set_ptr(s, session.get());
      gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
    }
    if (int rv = gnutls_session_ticket_enable_server(s, &ticket_key_); rv != 0)
      return gnutls_error(rv, "enable session tickets");
    gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_POST, server_client_hello_hook);
    if (ngtcp2_crypto_gnutls_configure_server_session(s) != 0)
      return make_error(ErrorDomain::gnutls, -1, "tls: ngtcp2_crypto_gnutls_configure_server_session failed");
    if (config_.early_data) {
      gnutls_anti_replay_enable(s, anti_replay_);
      // QUIC limits 0-RTT by flow control; TLS must not add a smaller limit.
      if (int rv = gnutls_record_set_max_early_data_size(s, 0xffffffffu); rv != 0)
        return gnutls_error(rv, "set the maximum early data size");
    }
    gnutls_session_set_ptr(s, conn_ref);
    if (int rv = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred_); rv != 0)
      return gnutls_error(rv, "set credentials");
    // Without ALPN the handshake would go on and fail later with a vaguer error.
    if (int rv = set_alpn_h3(s, GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE); rv != 0)
      return gnutls_error(rv, "set ALPN h3");
    if (g_keylog != nullptr) gnutls_session_set_keylog_function(s, keylog_hook);
    return std::unique_ptr<Session>(std::move(session));
  }

  std::uint64_t replays_refused() const override { return replays_refused_; }

 private:
  // GnuTLS asks us to remember each 0-RTT ClientHello for the anti-replay
  // window; a key seen before is a replay and its early data is refused.
  static int anti_replay_add(void* ptr, time_t exp_time, const gnutls_datum_t* key, const gnutls_datum_t*) {
    auto* self = static_cast<GnutlsServerContext*>(ptr);
    const auto now = std::time(nullptr);
    while (!self->seen_order_.empty() && self->seen_order_.front().first < now) {
      self->seen_.erase(self->seen_order_.front().second);
      self->seen_order_.pop_front();
    }
    std::string k(reinterpret_cast<const char*>(key->data), key->size);
    if (self->seen_.count(k) != 0) {
      ++self->replays_refused_;
      log::info("tls: refused 0-RTT: ClientHello replayed within the anti-replay window");
      return GNUTLS_E_DB_ENTRY_EXISTS;
    }
    if (self->seen_.size() >= self->config_.anti_replay_capacity) {
      log::warn("tls: anti-replay store full ({} entries); refusing 0-RTT", self->seen_.size());
      return GNUTLS_E_DB_ERROR;
    }
    self->seen_.insert(k);
    self->seen_order_.emplace_back(exp_time, std::move(k));
    return 0;
  }

  ServerConfig config_;
  std::string priority_ = kPriority;
  gnutls_certificate_credentials_t cred_ = nullptr;
  gnutls_datum_t ticket_key_{};
  gnutls_anti_replay_t anti_replay_ = nullptr;
  std::unordered_set<std::string> seen_;
  std::deque<std::pair<time_t, std::string>> seen_order_;  // expiry order (GnuTLS gives increasing times)
  std::uint64_t replays_refused_ = 0;
};

// Client: each NewSessionTicket is handed to the owner as serialized session data.
int client_ticket_hook(gnutls_session_t session, unsigned htype, unsigned, unsigned, const gnutls_datum_t*) {
  if (htype != GNUTLS_HANDSHAKE_NEW_SESSION_TICKET) return 0;
  auto* owner = static_cast<GnutlsSession*>(gnutls_db_get_ptr(session));
  if (owner == nullptr || !owner->client_options.on_new_session) return 0;
  gnutls_datum_t data{};
  if (int rv = gnutls_session_get_data2(session, &data); rv != 0) {
    log::warn("tls: cannot serialize the session ticket: {}", gnutls_strerror(rv));
    return 0;
  }
  Bytes out(data.data, data.data + data.size);
  gnutls_free(data.data);
  owner->client_options.on_new_session(std::move(out));
  return 0;
}

class GnutlsClientContext final : public ClientContext {
 public:
  ~GnutlsClientContext() override {
    if (cred_ != nullptr) gnutls_certificate_free_credentials(cred_);
  }

  Status init(const ClientConfig& config) {
    config_ = config;
    auto prio = priority_for(config.cipher, config.group);
    if (!prio) return prio.error();
    priority_ = *prio;
    if (int rv = gnutls_certificate_allocate_credentials(&cred_); rv != 0)
      return gnutls_error(rv, "allocate credentials");
    if (!config.pinned_sha256.empty()) {
      if (config.pinned_sha256.size() != 32)
        return make_error(ErrorDomain::config, EINVAL, "tls: a pinned SHA-256 is 32 bytes");
      gnutls_certificate_set_verify_function(cred_, pinned_verify);
    } else if (!config.insecure) {
      int rv = config.ca_file.empty()
                   ? gnutls_certificate_set_x509_system_trust(cred_)
                   : gnutls_certificate_set_x509_trust_file(cred_, config.ca_file.c_str(), GNUTLS_X509_FMT_PEM);
      if (rv < 0) return gnutls_error(rv, "load trusted CAs");
    }
    if (!config.cert_file.empty()) {
      if (int rv = gnutls_certificate_set_x509_key_file(cred_, config.cert_file.c_str(), config.key_file.c_str(),
                                                        GNUTLS_X509_FMT_PEM);
          rv < 0)
        return gnutls_error(rv, "load client certificate " + config.cert_file.string());
    }
    open_keylog(config.keylog_file);
    return {};
  }

  Result<std::unique_ptr<Session>> new_session(ngtcp2_crypto_conn_ref* conn_ref,
                                               const ClientSessionOptions& options) override {
    gnutls_session_t s = nullptr;
    if (int rv = gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA); rv != 0)
      return gnutls_error(rv, "gnutls_init");
    auto session = std::make_unique<GnutlsSession>(s);
    session->client_options = options;
    session->pinned_sha256 = config_.pinned_sha256;
    if (int rv = gnutls_priority_set_direct(s, priority_.c_str(), nullptr); rv != 0)
      return gnutls_error(rv, "set priority");
    // The ticket hook finds its session object through the db pointer (the
    // session pointer is ngtcp2's conn_ref).
    gnutls_db_set_ptr(s, session.get());
    gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_NEW_SESSION_TICKET, GNUTLS_HOOK_POST, client_ticket_hook);
    if (ngtcp2_crypto_gnutls_configure_client_session(s) != 0)
      return make_error(ErrorDomain::gnutls, -1, "tls: ngtcp2_crypto_gnutls_configure_client_session failed");
    if (!options.resumption_data.empty()) {
      int rv = gnutls_session_set_data(s, options.resumption_data.data(), options.resumption_data.size());
      if (rv == 0)
        session->resumption_offered_ = true;
      else
        log::info("tls: stored session not usable ({}); doing a full handshake", gnutls_strerror(rv));
    }
    gnutls_session_set_ptr(s, conn_ref);
    if (int rv = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred_); rv != 0)
      return gnutls_error(rv, "set credentials");
    if (int rv = set_alpn_h3(s, GNUTLS_ALPN_MANDATORY); rv != 0) return gnutls_error(rv, "set ALPN h3");
    if (!options.server_name.empty()) {
      // SNI carries DNS names only (RFC 6066 section 3; servers refuse an IPv6
      // literal there); certificate checks cover IP addresses too.
      in6_addr ip{};
      const auto& name = session->client_options.server_name;
      bool ip_literal = inet_pton(AF_INET, name.c_str(), &ip) == 1 || inet_pton(AF_INET6, name.c_str(), &ip) == 1;
      if (!ip_literal) gnutls_server_name_set(s, GNUTLS_NAME_DNS, name.data(), name.size());
      // GnuTLS keeps this pointer (no copy): it must live as long as the session.
      if (!config_.insecure && config_.pinned_sha256.empty()) gnutls_session_set_verify_cert(s, name.c_str(), 0);
    } else if (!config_.insecure && config_.pinned_sha256.empty()) {
      gnutls_session_set_verify_cert(s, nullptr, 0);
    }
    if (g_keylog != nullptr) gnutls_session_set_keylog_function(s, keylog_hook);
    return std::unique_ptr<Session>(std::move(session));
  }

 private:
  ClientConfig config_;
  std::string priority_ = kPriority;
  gnutls_certificate_credentials_t cred_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<ServerContext>> make_server_context(const ServerConfig& config) {
  auto ctx = std::make_unique<GnutlsServerContext>();
  if (auto st = ctx->init(config); !st) return st.error();
  return std::unique_ptr<ServerContext>(std::move(ctx));
}

Result<Bytes> certificate_sha256(const std::filesystem::path& pem_file) {
  gnutls_datum_t pem{};
  if (int rv = gnutls_load_file(pem_file.c_str(), &pem); rv < 0)
    return make_error(ErrorDomain::gnutls, rv, "tls: cannot read " + pem_file.string() + ": " + gnutls_strerror(rv));
  gnutls_x509_crt_t crt = nullptr;
  gnutls_x509_crt_init(&crt);
  int rv = gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM);
  gnutls_free(pem.data);
  if (rv < 0) {
    gnutls_x509_crt_deinit(crt);
    return make_error(ErrorDomain::gnutls, rv,
                      "tls: no certificate in " + pem_file.string() + ": " + gnutls_strerror(rv));
  }
  gnutls_datum_t der{};
  rv = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der);
  gnutls_x509_crt_deinit(crt);
  if (rv < 0) return make_error(ErrorDomain::gnutls, rv, std::string("tls: export DER: ") + gnutls_strerror(rv));
  Bytes out(32);
  gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data, der.size, out.data());
  gnutls_free(der.data);
  return out;
}

std::string fingerprint_text(ByteView sha256) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string s;
  for (std::size_t i = 0; i < sha256.size(); ++i) {
    if (i) s += ':';
    s += kHex[sha256[i] >> 4];
    s += kHex[sha256[i] & 15];
  }
  return s;
}

std::string alert_text(unsigned alert) {
  const char* name = alert <= 255 ? gnutls_alert_get_name(static_cast<gnutls_alert_description_t>(alert)) : nullptr;
  return name ? "alert " + std::to_string(alert) + " (" + name + ")" : "alert " + std::to_string(alert);
}

Result<std::unique_ptr<ClientContext>> make_client_context(const ClientConfig& config) {
  auto ctx = std::make_unique<GnutlsClientContext>();
  if (auto st = ctx->init(config); !st) return st.error();
  return std::unique_ptr<ClientContext>(std::move(ctx));
}

}  // namespace quiclab::quic::tls
