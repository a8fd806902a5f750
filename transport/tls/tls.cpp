#include "transport/tls/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>

#include "transport/core/tls_names.hpp"

namespace quiclab::tls {

namespace fs = std::filesystem;

std::string openssl_errors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

namespace {

// The write side of a session is a BIO of our own that appends OpenSSL's
// records straight to Session::out_. A memory BIO would cost a copy in, a copy
// out and a zero-fill of the destination per byte sent; on a 100 MB transfer
// that is a measurable share of the server's time (docs/h2.md).
int out_bio_write(BIO* b, const char* data, std::size_t len, std::size_t* written) {
  auto* out = static_cast<Bytes*>(BIO_get_data(b));
  out->insert(out->end(), reinterpret_cast<const std::uint8_t*>(data),
              reinterpret_cast<const std::uint8_t*>(data) + len);
  *written = len;
  return 1;
}

long out_bio_ctrl(BIO* b, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
      return static_cast<long>(static_cast<Bytes*>(BIO_get_data(b))->size());
    default:
      return 0;  // no KTLS, no datagram controls, nothing else we support
  }
}

// The setters only fail on a null method. Out of memory, the method stays
// null and Session's constructor reports that (BIO_new must not see null).
BIO_METHOD* out_bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "quiclab tls output");
    if (!m) return m;
    BIO_meth_set_write_ex(m, out_bio_write);
    BIO_meth_set_ctrl(m, out_bio_ctrl);
    BIO_meth_set_create(m, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

// SSLKEYLOGFILE: one process-wide file, opened on first use and appended to,
// so that Wireshark/tshark can decrypt captures of our connections.
void keylog_line(const SSL*, const char* line) {
  static std::mutex mu;
  static FILE* file = [] {
    const char* path = std::getenv("SSLKEYLOGFILE");
    return path && *path ? std::fopen(path, "a") : nullptr;
  }();
  if (!file) return;
  std::lock_guard lock(mu);
  std::fputs(line, file);
  std::fputc('\n', file);
  std::fflush(file);
}

void maybe_enable_keylog(SSL_CTX* ctx) {
  const char* path = std::getenv("SSLKEYLOGFILE");
  if (path && *path) SSL_CTX_set_keylog_callback(ctx, keylog_line);
}

// ALPN wire format: length-prefixed protocol names.
std::vector<unsigned char> alpn_wire(const std::vector<std::string>& protos) {
  std::vector<unsigned char> out;
  for (const auto& p : protos) {
    out.push_back(static_cast<unsigned char>(p.size()));
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

}  // namespace

Result<CertificatePaths> generate_self_signed(const fs::path& dir, const std::vector<std::string>& names, int days,
                                              KeyType key_type) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(ErrorDomain::os, ec.value(), "cannot create " + dir.string() + ": " + ec.message());

  const bool ed25519 = key_type == KeyType::ed25519;
  std::unique_ptr<EVP_PKEY, PkeyFree> key(ed25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                                                  : EVP_EC_gen("P-256"));
  if (!key) return make_error(ErrorDomain::tls, -1, "key generation failed: " + openssl_errors());
  std::unique_ptr<X509, X509Free> x509(X509_new());
  if (!x509) return make_error(ErrorDomain::tls, -1, "X509_new failed: " + openssl_errors());
  // A random serial, so browsers and tools never see two certificates with the same one.
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return make_error(ErrorDomain::tls, -1, "RAND_bytes failed");
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  bool built = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x509.get())) != nullptr;
  BN_free(bn);
  // Each of these only fails when OpenSSL cannot allocate; one check covers them.
  X509_NAME* name = X509_get_subject_name(x509.get());
  const char* cn = names.empty() ? "localhost" : names[0].c_str();
  built = built && X509_set_version(x509.get(), 2) == 1 &&
          X509_gmtime_adj(X509_getm_notBefore(x509.get()), -3600) != nullptr &&
          X509_gmtime_adj(X509_getm_notAfter(x509.get()), static_cast<long>(days) * 24 * 3600) != nullptr &&
          X509_set_pubkey(x509.get(), key.get()) == 1 &&
          X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("quiclab"), -1, -1,
                                     0) == 1 &&
          X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0) ==
              1 &&
          X509_set_issuer_name(x509.get(), name) == 1;
  if (!built) return make_error(ErrorDomain::tls, -1, "building the certificate failed: " + openssl_errors());

  std::string san;
  for (const auto& n : names) {
    unsigned char buf[16];
    bool ip = inet_pton(AF_INET, n.c_str(), buf) == 1 || inet_pton(AF_INET6, n.c_str(), buf) == 1;
    if (!san.empty()) san += ",";
    san += (ip ? "IP:" : "DNS:") + n;
  }
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x509.get(), x509.get(), nullptr, nullptr, 0);
  const std::pair<int, std::string> exts[] = {{NID_subject_alt_name, san},
                                              {NID_basic_constraints, "critical,CA:FALSE"},
                                              {NID_key_usage, "critical,digitalSignature"},
                                              {NID_ext_key_usage, "serverAuth"}};
  for (const auto& [nid, value] : exts) {
    if (value.empty()) continue;
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    if (!ext) return make_error(ErrorDomain::tls, -1, "certificate extension failed: " + openssl_errors());
    bool added = X509_add_ext(x509.get(), ext, -1) == 1;
    X509_EXTENSION_free(ext);
    if (!added) return make_error(ErrorDomain::tls, -1, "adding a certificate extension failed: " + openssl_errors());
  }
  // Ed25519 hashes inside the signature scheme: no separate digest.
  if (X509_sign(x509.get(), key.get(), ed25519 ? nullptr : EVP_sha256()) == 0) {
    return make_error(ErrorDomain::tls, -1, "signing failed: " + openssl_errors());
  }

  CertificatePaths paths{dir / "cert.pem", dir / "key.pem"};
  // The key is created 0600, and an existing file is narrowed to 0600 before a
  // byte is written: it is never readable by others, not even for a moment.
  int kfd = ::open(paths.key.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (kfd < 0 || ::fchmod(kfd, 0600) != 0) {
    int err = errno;
    if (kfd >= 0) ::close(kfd);
    return make_error(ErrorDomain::os, err, "cannot write " + paths.key.string() + ": " + std::strerror(err));
  }
  FILE* kf = ::fdopen(kfd, "w");
  if (!kf) {
    int err = errno;
    ::close(kfd);
    return make_error(ErrorDomain::os, err, "cannot write " + paths.key.string() + ": " + std::strerror(err));
  }
  bool ok = PEM_write_PrivateKey(kf, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  // fclose flushes: a full disk shows up here, not in the PEM write.
  ok = (std::fclose(kf) == 0) && ok;
  FILE* cf = std::fopen(paths.cert.c_str(), "w");
  if (!cf)
    return make_error(ErrorDomain::os, errno, "cannot write " + paths.cert.string() + ": " + std::strerror(errno));
  ok = ok && PEM_write_X509(cf, x509.get()) == 1;
  ok = (std::fclose(cf) == 0) && ok;
  if (!ok) return make_error(ErrorDomain::tls, -1, "writing PEM to " + dir.string() + " failed: " + openssl_errors());
  return paths;
}

// Restricts the context to one TLS 1.3 cipher suite and/or group (IANA names;
// empty: the library's defaults). Errors: a name we do not know, or one
// OpenSSL refuses.
static Status pin_suite(SSL_CTX* raw, const std::string& cipher, const std::string& group) {
  if (!cipher.empty()) {
    const auto* c = tls_names::find_cipher(cipher);
    if (!c)
      return make_error(ErrorDomain::tls, EINVAL,
                        "unknown TLS cipher '" + cipher + "' (" + tls_names::list(tls_names::kCiphers) + ")");
    if (SSL_CTX_set_ciphersuites(raw, std::string(c->openssl).c_str()) != 1)
      return make_error(ErrorDomain::tls, -1, "cannot set TLS cipher " + cipher + ": " + openssl_errors());
  }
  if (!group.empty()) {
    const auto* g = tls_names::find_group(group);
    if (!g)
      return make_error(ErrorDomain::tls, EINVAL,
                        "unknown TLS group '" + group + "' (" + tls_names::list(tls_names::kGroups) + ")");
    if (SSL_CTX_set1_groups_list(raw, std::string(g->openssl).c_str()) != 1)
      return make_error(ErrorDomain::tls, -1, "cannot set TLS group " + group + ": " + openssl_errors());
  }
  return {};
}

Result<Context> Context::server(const ServerOptions& options) {
  SSL_CTX* raw = SSL_CTX_new(TLS_server_method());
  if (!raw) return make_error(ErrorDomain::tls, -1, "SSL_CTX_new: " + openssl_errors());
  Context c;
  // The ALPN list must live as long as the context: the deleter owns it.
  auto* wire = new std::vector<unsigned char>(alpn_wire(options.alpn));
  c.ctx_.reset(raw, [wire](SSL_CTX* ctx) {
    SSL_CTX_free(ctx);
    delete wire;
  });
  c.server_ = true;
  if (SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION) != 1) {
    return make_error(ErrorDomain::tls, -1, "cannot set the minimum TLS version: " + openssl_errors());
  }
  // HTTP/2 forbids renegotiation and compression (RFC 9113 9.2).
  SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(raw, options.cert.c_str()) != 1) {
    return make_error(ErrorDomain::tls, -1,
                      "cannot load certificate " + options.cert.string() + ": " + openssl_errors());
  }
  if (SSL_CTX_use_PrivateKey_file(raw, options.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return make_error(ErrorDomain::tls, -1, "cannot load key " + options.key.string() + ": " + openssl_errors());
  }
  if (SSL_CTX_check_private_key(raw) != 1) {
    return make_error(ErrorDomain::tls, -1,
                      "key " + options.key.string() + " does not match certificate " + options.cert.string());
  }
  SSL_CTX_set_alpn_select_cb(
      raw,
      [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
         void* arg) -> int {
        auto* ours = static_cast<std::vector<unsigned char>*>(arg);
        unsigned char* sel = nullptr;
        if (SSL_select_next_proto(&sel, outlen, ours->data(), static_cast<unsigned>(ours->size()), in, inlen) !=
            OPENSSL_NPN_NEGOTIATED) {
          return SSL_TLSEXT_ERR_ALERT_FATAL;  // no_application_protocol
        }
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
      },
      wire);
  if (auto st = pin_suite(raw, options.cipher, options.group); !st) return st.error();
  maybe_enable_keylog(raw);
  return c;
}

Result<Context> Context::client(const ClientOptions& options) {
  SSL_CTX* raw = SSL_CTX_new(TLS_client_method());
  if (!raw) return make_error(ErrorDomain::tls, -1, "SSL_CTX_new: " + openssl_errors());
  Context c;
  c.ctx_.reset(raw, Free{});
  if (SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION) != 1) {
    return make_error(ErrorDomain::tls, -1, "cannot set the minimum TLS version: " + openssl_errors());
  }
  SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);
  auto wire = alpn_wire(options.alpn);
  if (SSL_CTX_set_alpn_protos(raw, wire.data(), static_cast<unsigned>(wire.size())) != 0) {
    return make_error(ErrorDomain::tls, -1, "cannot set ALPN: " + openssl_errors());
  }
  if (options.insecure) {
    SSL_CTX_set_verify(raw, SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nullptr);
    int ok = options.ca_file.empty() ? SSL_CTX_set_default_verify_paths(raw)
                                     : SSL_CTX_load_verify_locations(raw, options.ca_file.c_str(), nullptr);
    if (ok != 1)
      return make_error(ErrorDomain::tls, -1,
                        "cannot load CA file " + options.ca_file.string() + ": " + openssl_errors());
  }
  if (auto st = pin_suite(raw, options.cipher, options.group); !st) return st.error();
  // Session tickets: OpenSSL hands each one (TLS 1.3 sends them after the
  // handshake) to the Session that asked for them (Session::on_new_session);
  // nothing is cached inside OpenSSL.
  SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(raw, [](SSL* ssl, SSL_SESSION* sess) -> int {
    auto* self = static_cast<Session*>(SSL_get_app_data(ssl));
    if (self) self->deliver_session(sess);
    return 0;  // not kept: OpenSSL frees it
  });
  maybe_enable_keylog(raw);
  return c;
}

void Session::deliver_session(SSL_SESSION* sess) {
  if (!on_new_session_ || !SSL_SESSION_is_resumable(sess)) return;
  const int len = i2d_SSL_SESSION(sess, nullptr);
  if (len <= 0) return;
  Bytes der(static_cast<std::size_t>(len));
  unsigned char* p = der.data();
  if (i2d_SSL_SESSION(sess, &p) != len) return;
  on_new_session_(std::move(der));
}

Status Session::resume(ByteView der) {
  if (!ssl_) return failure_ ? Status(*failure_) : Status{};
  const unsigned char* p = der.data();
  SSL_SESSION* sess = d2i_SSL_SESSION(nullptr, &p, static_cast<long>(der.size()));
  if (!sess || p != der.data() + der.size()) {
    SSL_SESSION_free(sess);
    return make_error(ErrorDomain::tls, EINVAL, "the stored TLS session cannot be read: " + openssl_errors());
  }
  const int ok = SSL_set_session(ssl_, sess);
  SSL_SESSION_free(sess);  // SSL_set_session took its own reference
  if (ok != 1) return make_error(ErrorDomain::tls, EINVAL, "cannot resume the stored TLS session: " + openssl_errors());
  return {};
}

bool Session::resumed() const { return ssl_ && SSL_session_reused(ssl_) == 1; }

Session::Session(const Context& ctx, const std::string& server_name) {
  ssl_ = SSL_new(ctx.get());
  rbio_ = BIO_new(BIO_s_mem());
  BIO_METHOD* out_method = out_bio_method();
  wbio_ = out_method ? BIO_new(out_method) : nullptr;
  if (!ssl_ || !rbio_ || !wbio_) {
    // Out of memory: the session exists but fails at its first use.
    failure_ = make_error(ErrorDomain::tls, SSL_ERROR_SSL, "cannot create a TLS session: " + openssl_errors());
    BIO_free(rbio_);
    BIO_free(wbio_);
    SSL_free(ssl_);
    ssl_ = nullptr;
    rbio_ = wbio_ = nullptr;
    return;
  }
  BIO_set_data(wbio_, &out_);
  // A drained memory BIO reports "retry" rather than EOF.
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  SSL_set_app_data(ssl_, this);  // for the session-ticket callback
  if (ctx.is_server()) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    if (!server_name.empty()) {
      unsigned char buf[16];
      bool ip = inet_pton(AF_INET, server_name.c_str(), buf) == 1 || inet_pton(AF_INET6, server_name.c_str(), buf) == 1;
      // A name we cannot set would silently disable the name check: fail instead.
      bool set = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), server_name.c_str()) == 1
                    : SSL_set_tlsext_host_name(ssl_, server_name.c_str()) == 1 &&
                          SSL_set1_host(ssl_, server_name.c_str()) == 1;
      if (!set) {
        failure_ = make_error(ErrorDomain::tls, SSL_ERROR_SSL,
                              "cannot use '" + server_name + "' as the TLS server name: " + openssl_errors());
      }
    }
  }
}

Session::~Session() { SSL_free(ssl_); }  // frees both BIOs

void Session::feed(ByteView ciphertext) {
  if (ciphertext.empty() || !rbio_ || failure_) return;
  // A memory BIO only refuses a write when it cannot grow.
  if (BIO_write(rbio_, ciphertext.data(), static_cast<int>(ciphertext.size())) != static_cast<int>(ciphertext.size())) {
    failure_ = make_error(ErrorDomain::tls, SSL_ERROR_SSL, "cannot buffer received TLS data: " + openssl_errors());
  }
}

Error Session::fail(int ssl_error, const char* what) {
  // The error queue says why; a reason in OpenSSL's alert range means the peer
  // sent us that alert (SSL_R_..._ALERT_... = SSL_AD_REASON_OFFSET + description).
  unsigned long e = ERR_peek_last_error();
  int reason = e ? ERR_GET_REASON(e) : 0;
  if (e && ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
    peer_alert_ = reason - SSL_AD_REASON_OFFSET;
  }
  std::string why = openssl_errors();
  if (peer_alert_) why += std::string(" (the peer sent a fatal alert: ") + alert_name(*peer_alert_) + ")";
  long verify = ssl_ ? SSL_get_verify_result(ssl_) : X509_V_OK;
  if (verify != X509_V_OK) why += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
  return make_error(ErrorDomain::tls, ssl_error, std::string(what) + ": " + why);
}

Result<bool> Session::handshake() {
  if (established_) return true;
  if (failure_) return *failure_;
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    established_ = true;
    return true;
  }
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return false;
  failure_ = fail(err, "TLS handshake failed");
  return *failure_;
}

Result<std::size_t> Session::read(MutableByteView dst) {
  if (failure_) return *failure_;
  if (closed_) return Error::closed(ErrorDomain::tls, "peer closed the TLS session");
  ERR_clear_error();
  std::size_t n = 0;
  int rc = SSL_read_ex(ssl_, dst.data(), dst.size(), &n);
  if (rc == 1) return n;
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return std::size_t{0};
  if (err == SSL_ERROR_ZERO_RETURN) {
    closed_ = true;
    return Error::closed(ErrorDomain::tls, "peer closed the TLS session");
  }
  failure_ = fail(err, "TLS read failed");
  return *failure_;
}

Status Session::write(ByteView data) { return write(data, SteadyClock::instance().now()); }

Status Session::write(ByteView data, Timestamp now) {
  if (failure_) return *failure_;
  if (sizing_.small_bytes > 0 && last_write_ && now - *last_write_ > sizing_.idle) small_phase_bytes_ = 0;
  last_write_ = now;
  ERR_clear_error();
  // Room for the records: the payload plus at most 22 bytes of TLS 1.3
  // overhead per record (64 is more than enough for TLS 1.2's as well).
  const std::size_t record = sizing_.small_bytes > 0 ? std::min<std::size_t>(sizing_.small_bytes, 16384) : 16384;
  const std::size_t need = out_.size() + data.size() + (data.size() / record + 1) * 64;
  if (out_.capacity() == 0) out_ = buffer_pool::take(need);  // warm pages, no faults
  out_.reserve(need);
  std::size_t done = 0;
  while (done < data.size()) {
    // While the small phase lasts, one SSL_write_ex per small record; after
    // it, the rest in one call, which OpenSSL cuts into 16 KiB records.
    const bool small = sizing_.small_bytes > 0 && small_phase_bytes_ < sizing_.full_after;
    const std::size_t chunk = small ? std::min(data.size() - done, sizing_.small_bytes) : data.size() - done;
    std::size_t n = 0;
    int rc = SSL_write_ex(ssl_, data.data() + done, chunk, &n);
    if (rc != 1) {
      failure_ = fail(SSL_get_error(ssl_, rc), "TLS write failed");
      return *failure_;
    }
    done += n;
    records_ += (n + 16383) / 16384;
    if (small) {
      ++small_records_;
      small_phase_bytes_ += n;
    }
  }
  return {};
}

void Session::shutdown() {
  if (!established_ || failure_) return;
  // 0 (close_notify sent, the peer's not yet received) is the expected answer;
  // < 0 means the session is already broken, and we are closing anyway.
  if (SSL_shutdown(ssl_) < 0) ERR_clear_error();
}

Bytes Session::take_output() { return std::exchange(out_, Bytes{}); }

std::size_t Session::pending_output() const { return out_.size(); }

const char* alert_name(int description) { return SSL_alert_desc_string_long(description); }

std::string Session::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  if (ssl_) SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

std::string Session::version() const { return ssl_ ? SSL_get_version(ssl_) : ""; }
std::string Session::cipher() const {
  const char* c = ssl_ ? SSL_get_cipher_name(ssl_) : nullptr;
  return c ? c : "";
}
std::string Session::group() const {
  if (!ssl_ || !established_) return {};
  const int nid = SSL_get_negotiated_group(ssl_);
  const char* n = nid > 0 ? SSL_group_to_name(ssl_, nid) : nullptr;
  return n ? tls_names::normalize_group(n) : "";
}

}  // namespace quiclab::tls
