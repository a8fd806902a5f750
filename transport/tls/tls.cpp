#include "transport/tls/tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>

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

BIO_METHOD* out_bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "quiclab tls output");
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
  if (ec) return make_error(ec.value(), "cannot create " + dir.string() + ": " + ec.message());

  const bool ed25519 = key_type == KeyType::ed25519;
  std::unique_ptr<EVP_PKEY, PkeyFree> key(ed25519 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                                                  : EVP_EC_gen("P-256"));
  if (!key) return make_error(-1, "key generation failed: " + openssl_errors());
  std::unique_ptr<X509, X509Free> x509(X509_new());
  X509_set_version(x509.get(), 2);
  // A random serial, so browsers and tools never see two certificates with the same one.
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return make_error(-1, "RAND_bytes failed");
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x509.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x509.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x509.get()), static_cast<long>(days) * 24 * 3600);
  X509_set_pubkey(x509.get(), key.get());
  X509_NAME* name = X509_get_subject_name(x509.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("quiclab"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(names.empty() ? "localhost" : names[0].c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(x509.get(), name);

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
    if (!ext) return make_error(-1, "certificate extension failed: " + openssl_errors());
    X509_add_ext(x509.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  // Ed25519 hashes inside the signature scheme: no separate digest.
  if (X509_sign(x509.get(), key.get(), ed25519 ? nullptr : EVP_sha256()) == 0) {
    return make_error(-1, "signing failed: " + openssl_errors());
  }

  CertificatePaths paths{dir / "cert.pem", dir / "key.pem"};
  FILE* kf = std::fopen(paths.key.c_str(), "w");
  if (!kf) return make_error(errno, "cannot write " + paths.key.string() + ": " + std::strerror(errno));
  ::chmod(paths.key.c_str(), 0600);
  bool ok = PEM_write_PrivateKey(kf, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(kf);
  FILE* cf = std::fopen(paths.cert.c_str(), "w");
  if (!cf) return make_error(errno, "cannot write " + paths.cert.string() + ": " + std::strerror(errno));
  ok = ok && PEM_write_X509(cf, x509.get()) == 1;
  std::fclose(cf);
  if (!ok) return make_error(-1, "writing PEM failed: " + openssl_errors());
  return paths;
}

Result<Context> Context::server(const ServerOptions& options) {
  SSL_CTX* raw = SSL_CTX_new(TLS_server_method());
  if (!raw) return make_error(-1, "SSL_CTX_new: " + openssl_errors());
  Context c;
  // The ALPN list must live as long as the context: the deleter owns it.
  auto* wire = new std::vector<unsigned char>(alpn_wire(options.alpn));
  c.ctx_.reset(raw, [wire](SSL_CTX* ctx) {
    SSL_CTX_free(ctx);
    delete wire;
  });
  c.server_ = true;
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  // HTTP/2 forbids renegotiation and compression (RFC 9113 9.2).
  SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(raw, options.cert.c_str()) != 1) {
    return make_error(-1, "cannot load certificate " + options.cert.string() + ": " + openssl_errors());
  }
  if (SSL_CTX_use_PrivateKey_file(raw, options.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return make_error(-1, "cannot load key " + options.key.string() + ": " + openssl_errors());
  }
  if (SSL_CTX_check_private_key(raw) != 1) {
    return make_error(-1, "key " + options.key.string() + " does not match certificate " + options.cert.string());
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
  maybe_enable_keylog(raw);
  return c;
}

Result<Context> Context::client(const ClientOptions& options) {
  SSL_CTX* raw = SSL_CTX_new(TLS_client_method());
  if (!raw) return make_error(-1, "SSL_CTX_new: " + openssl_errors());
  Context c;
  c.ctx_.reset(raw, Free{});
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);
  auto wire = alpn_wire(options.alpn);
  if (SSL_CTX_set_alpn_protos(raw, wire.data(), static_cast<unsigned>(wire.size())) != 0) {
    return make_error(-1, "cannot set ALPN: " + openssl_errors());
  }
  if (options.insecure) {
    SSL_CTX_set_verify(raw, SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nullptr);
    int ok = options.ca_file.empty() ? SSL_CTX_set_default_verify_paths(raw)
                                     : SSL_CTX_load_verify_locations(raw, options.ca_file.c_str(), nullptr);
    if (ok != 1) return make_error(-1, "cannot load CA file " + options.ca_file.string() + ": " + openssl_errors());
  }
  maybe_enable_keylog(raw);
  return c;
}

Session::Session(const Context& ctx, const std::string& server_name) {
  ssl_ = SSL_new(ctx.get());
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(out_bio_method());
  BIO_set_data(wbio_, &out_);
  // A drained memory BIO reports "retry" rather than EOF.
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  if (ctx.is_server()) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    if (!server_name.empty()) {
      unsigned char buf[16];
      bool ip = inet_pton(AF_INET, server_name.c_str(), buf) == 1 || inet_pton(AF_INET6, server_name.c_str(), buf) == 1;
      if (ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), server_name.c_str());
      } else {
        SSL_set_tlsext_host_name(ssl_, server_name.c_str());
        SSL_set1_host(ssl_, server_name.c_str());
      }
    }
  }
}

Session::~Session() { SSL_free(ssl_); }  // frees both BIOs

void Session::feed(ByteView ciphertext) {
  if (!ciphertext.empty()) BIO_write(rbio_, ciphertext.data(), static_cast<int>(ciphertext.size()));
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
  std::string why = openssl_errors();
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) why += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
  failure_ = make_error(err, "TLS handshake failed: " + why);
  return *failure_;
}

Result<std::size_t> Session::read(MutableByteView dst) {
  ERR_clear_error();
  std::size_t n = 0;
  int rc = SSL_read_ex(ssl_, dst.data(), dst.size(), &n);
  if (rc == 1) return n;
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return std::size_t{0};
  if (err == SSL_ERROR_ZERO_RETURN) return make_error(kClosed, "peer closed the TLS session");
  return make_error(err, "TLS read failed: " + openssl_errors());
}

Status Session::write(ByteView data) {
  ERR_clear_error();
  // Room for the records: the payload plus at most 22 bytes of TLS 1.3
  // overhead per 16 KiB record (more than enough for TLS 1.2's as well).
  const std::size_t need = out_.size() + data.size() + (data.size() / 16384 + 1) * 64;
  if (out_.capacity() == 0) out_ = buffer_pool::take(need);  // warm pages, no faults
  out_.reserve(need);
  std::size_t done = 0;
  while (done < data.size()) {
    std::size_t n = 0;
    if (SSL_write_ex(ssl_, data.data() + done, data.size() - done, &n) != 1) {
      return make_error(SSL_get_error(ssl_, 0), "TLS write failed: " + openssl_errors());
    }
    done += n;
  }
  return {};
}

void Session::shutdown() {
  if (established_) SSL_shutdown(ssl_);
}

Bytes Session::take_output() { return std::exchange(out_, Bytes{}); }

std::size_t Session::pending_output() const { return out_.size(); }

std::string Session::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

std::string Session::version() const { return SSL_get_version(ssl_); }
std::string Session::cipher() const { return SSL_get_cipher_name(ssl_); }

}  // namespace quiclab::tls
