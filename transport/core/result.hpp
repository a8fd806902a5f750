// Errors are values at protocol boundaries: a Result<T> is either a T or an
// Error that says which layer failed (its domain), the code that layer used,
// and a sentence that says what was wrong.
//
// A code is only meaningful together with its domain: 1 is SSL_ERROR_SSL for
// OpenSSL, PROTOCOL_ERROR for HTTP/2 and EPERM for the OS. A peer closing
// cleanly (TLS close_notify, a FIN after GOAWAY) is not a code of any library
// at all: it is Error::Kind::clean_close, which no code value can produce.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace quiclab {

/// Which layer an Error comes from, and so how its code is to be read.
enum class ErrorDomain : std::uint8_t {
  generic,  ///< quiclab's own; code is -1 or an errno value chosen to classify it
  os,       ///< errno (positive)
  uv,       ///< libuv status (negative UV_E*)
  tls,      ///< OpenSSL: SSL_get_error() value, or -1 with the error queue in the message
  gnutls,   ///< GnuTLS (negative GNUTLS_E_*)
  h2,       ///< nghttp2 library error (negative NGHTTP2_ERR_*) or an HTTP/2 error code
  h3,       ///< nghttp3 library error (negative NGHTTP3_ERR_*) or an HTTP/3 error code
  quic,     ///< ngtcp2 library error (negative NGTCP2_ERR_*) or a QUIC transport error code
  http,     ///< HTTP semantics (code: a status, or -1)
  stun,     ///< STUN/TURN codec and rendezvous (code: a STUN error or a decode error)
  config,   ///< command line, files, settings given by the user
};

/// "tls", "h2", ...: for log lines and JSON.
constexpr std::string_view to_string(ErrorDomain d) {
  switch (d) {
    case ErrorDomain::generic:
      return "generic";
    case ErrorDomain::os:
      return "os";
    case ErrorDomain::uv:
      return "uv";
    case ErrorDomain::tls:
      return "tls";
    case ErrorDomain::gnutls:
      return "gnutls";
    case ErrorDomain::h2:
      return "h2";
    case ErrorDomain::h3:
      return "h3";
    case ErrorDomain::quic:
      return "quic";
    case ErrorDomain::http:
      return "http";
    case ErrorDomain::stun:
      return "stun";
    case ErrorDomain::config:
      return "config";
  }
  return "unknown";
}

struct Error {
  enum class Kind : std::uint8_t {
    failure,      ///< something went wrong
    clean_close,  ///< the peer ended the session in good order (close_notify, ...): not a failure
  };

  ErrorDomain domain = ErrorDomain::generic;
  int code = -1;        ///< In the domain's own numbering (negative library codes are kept as-is).
  std::string message;  ///< Human-readable: what was wrong, for log lines and CLI errors.
  Kind kind = Kind::failure;

  /// The peer closed cleanly; code is 0 and carries no meaning.
  static Error closed(ErrorDomain domain, std::string message) {
    return Error{domain, 0, std::move(message), Kind::clean_close};
  }
  bool is_clean_close() const { return kind == Kind::clean_close; }
  /// True when this error is `code` of `domain` (and a failure, not a clean close).
  bool is(ErrorDomain d, int c) const { return kind == Kind::failure && domain == d && code == c; }
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(implicit)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(implicit)
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  T&& operator*() && { return std::get<0>(std::move(v_)); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

/// Result of an operation that yields nothing but may fail.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : error_(std::move(e)), ok_(false) {}  // NOLINT(implicit)
  static Status success() { return {}; }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Error make_error(ErrorDomain domain, int code, std::string message) {
  return Error{domain, code, std::move(message), Error::Kind::failure};
}

}  // namespace quiclab
