// Error as a typed value: a code is read in its domain, and a clean close is a
// kind of its own that no library code can be mistaken for.
#include "transport/core/result.hpp"

#include <openssl/ssl.h>

#include <catch2/catch.hpp>
#include <cerrno>

using namespace quiclab;

TEST_CASE("Error: make_error keeps domain and code, the default is a generic failure", "[core][error]") {
  Error d;
  CHECK(d.domain == ErrorDomain::generic);
  CHECK(d.code == -1);
  CHECK_FALSE(d.is_clean_close());

  auto e = make_error(ErrorDomain::h2, -505, "bad frame");
  CHECK(e.domain == ErrorDomain::h2);
  CHECK(e.code == -505);
  CHECK(e.message == "bad frame");
  CHECK(e.kind == Error::Kind::failure);
  CHECK(e.is(ErrorDomain::h2, -505));
  CHECK_FALSE(e.is(ErrorDomain::h3, -505));  // same number, another library: another error
  CHECK_FALSE(e.is(ErrorDomain::h2, -506));
}

TEST_CASE("Error: a clean close cannot collide with any library code", "[core][error]") {
  auto closed = Error::closed(ErrorDomain::tls, "peer closed the TLS session");
  CHECK(closed.is_clean_close());
  CHECK(closed.domain == ErrorDomain::tls);
  CHECK_FALSE(closed.is(ErrorDomain::tls, closed.code));  // a close is never a failure code

  // Every code a library could hand us, in every domain, stays a failure:
  // in particular SSL_ERROR_SSL (1), the value the old clean-close code had.
  for (int code : {SSL_ERROR_SSL, SSL_ERROR_ZERO_RETURN, 0, 1, -1, EPROTO, ECONNRESET}) {
    for (auto d : {ErrorDomain::generic, ErrorDomain::os, ErrorDomain::uv, ErrorDomain::tls, ErrorDomain::gnutls,
                   ErrorDomain::h2, ErrorDomain::h3, ErrorDomain::quic, ErrorDomain::http, ErrorDomain::stun,
                   ErrorDomain::config}) {
      INFO(to_string(d) << " " << code);
      CHECK_FALSE(make_error(d, code, "x").is_clean_close());
    }
  }
}

TEST_CASE("Error: domains have names for logs and JSON", "[core][error]") {
  CHECK(to_string(ErrorDomain::tls) == "tls");
  CHECK(to_string(ErrorDomain::h2) == "h2");
  CHECK(to_string(ErrorDomain::h3) == "h3");
  CHECK(to_string(ErrorDomain::quic) == "quic");
  CHECK(to_string(ErrorDomain::os) == "os");
  CHECK(to_string(ErrorDomain::stun) == "stun");
  CHECK(to_string(static_cast<ErrorDomain>(200)) == "unknown");
}

TEST_CASE("Result and Status carry the Error through", "[core][error]") {
  Result<int> ok = 5;
  REQUIRE(ok.ok());
  CHECK(*ok == 5);
  Result<int> bad = make_error(ErrorDomain::quic, -230, "handshake timeout");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().is(ErrorDomain::quic, -230));
  Status st = Error::closed(ErrorDomain::h2, "GOAWAY then FIN");
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().is_clean_close());
  CHECK(Status::success().ok());
}
