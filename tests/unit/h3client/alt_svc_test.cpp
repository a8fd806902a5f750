#include <catch2/catch.hpp>

#include "transport/h3/alt_svc.hpp"
#include "transport/h3/client.hpp"

#include <cstdio>
#include <filesystem>

using quiclab::h3::parse_alt_svc_h3;

TEST_CASE("Alt-Svc: h3 on the same host is followed", "[h3client]") {
  CHECK(parse_alt_svc_h3("h3=\":8443\"", "example.com") == 8443);
  CHECK(parse_alt_svc_h3("h3=\":443\"; ma=86400", "example.com") == 443);
  CHECK(parse_alt_svc_h3("h2=\":1\", h3-29=\":2\", h3=\":3\"", "example.com") == 3);
  CHECK(parse_alt_svc_h3("h3=\"example.com:444\"", "example.com") == 444);
  CHECK(parse_alt_svc_h3("h3=\"[::1]:445\"", "::1") == 445);
}

TEST_CASE("Alt-Svc: other hosts, drafts, clear and junk are not followed", "[h3client]") {
  CHECK_FALSE(parse_alt_svc_h3("clear", "example.com"));
  CHECK_FALSE(parse_alt_svc_h3("h3-29=\":443\"", "example.com"));
  CHECK_FALSE(parse_alt_svc_h3("h3=\"other.example:443\"", "example.com"));
  CHECK_FALSE(parse_alt_svc_h3("h3=\":0\"", "example.com"));
  CHECK_FALSE(parse_alt_svc_h3("h3=\":70000\"", "example.com"));
  CHECK_FALSE(parse_alt_svc_h3("h3=\":12ab\"", "example.com"));
  CHECK_FALSE(parse_alt_svc_h3("h3=\":443", "example.com"));
  CHECK_FALSE(parse_alt_svc_h3("", "example.com"));
}

TEST_CASE("Session file round trip and bad files", "[h3client]") {
  auto dir = std::filesystem::temp_directory_path() /
             ("quiclab-h3session-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
  std::filesystem::create_directories(dir);
  auto file = dir / "session";
  quiclab::h3::StoredSession s;
  s.tls_session = {1, 2, 3, 0xff};
  s.transport_params = {0x40, 0x00, 0x7f};
  REQUIRE(quiclab::h3::save_session(file, s).ok());
  auto back = quiclab::h3::load_session(file);
  REQUIRE(back.ok());
  CHECK(back->tls_session == s.tls_session);
  CHECK(back->transport_params == s.transport_params);
  CHECK((std::filesystem::status(file).permissions() & std::filesystem::perms::others_read) ==
        std::filesystem::perms::none);

  auto missing = quiclab::h3::load_session(dir / "none");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == ENOENT);

  std::FILE* f = std::fopen((dir / "bad").c_str(), "w");
  std::fputs("quiclab-h3-session 1\ntls zz\ntp 00\n", f);
  std::fclose(f);
  auto bad = quiclab::h3::load_session(dir / "bad");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == EINVAL);
  std::filesystem::remove_all(dir);
}
