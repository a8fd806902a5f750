#include "transport/h3/alt_svc.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "transport/h3/client.hpp"

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

  auto write = [&](const std::string& name, const std::string& text) {
    std::FILE* f = std::fopen((dir / name).c_str(), "w");
    REQUIRE(f);
    std::fputs(text.c_str(), f);
    std::fclose(f);
    return dir / name;
  };
  // Each malformed file is refused with EINVAL and a message naming the problem.
  const std::pair<std::string, std::string> bad_files[] = {
      {"quiclab-h3-session 1\ntls 0102\ntp 00\n", "not valid JSON"},  // the old line format
      {"{\"format\": \"quiclab-h3-session\", \"version\": 2, \"tls\": \"0102\"", "not valid JSON"},
      {"[1, 2]", "not a JSON object"},
      {"{\"format\": \"other\", \"version\": 2, \"tls\": \"01\", \"transport_params\": \"02\"}", "\"format\""},
      {"{\"format\": \"quiclab-h3-session\", \"version\": 9, \"tls\": \"01\", \"transport_params\": \"02\"}",
       "unsupported \"version\""},
      {"{\"format\": \"quiclab-h3-session\", \"version\": 2, \"transport_params\": \"02\"}", "\"tls\" is missing"},
      {"{\"format\": \"quiclab-h3-session\", \"version\": 2, \"tls\": \"zz\", \"transport_params\": \"02\"}",
       "\"tls\" is not hex"},
      {"{\"format\": \"quiclab-h3-session\", \"version\": 2, \"tls\": 5, \"transport_params\": \"02\"}",
       "\"tls\" is not a string"},
      {"{\"format\": \"quiclab-h3-session\", \"version\": 2, \"tls\": \"01\", \"transport_params\": \"\"}",
       "\"transport_params\" is empty"},
      {"{\"format\": \"quiclab-h3-session\", \"version\": 2, \"tls\": \"01\", \"transport_params\": \"02\", "
       "\"token\": \"x\"}",
       "\"token\" is not hex"},
  };
  int i = 0;
  for (const auto& [text, why] : bad_files) {
    INFO(text);
    auto bad = quiclab::h3::load_session(write("bad" + std::to_string(i++), text));
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == EINVAL);
    CHECK(bad.error().domain == quiclab::ErrorDomain::config);
    INFO(bad.error().message);
    CHECK(bad.error().message.find(why) != std::string::npos);
    CHECK(bad.error().message.find("session file ") != std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("Session file is JSON with every field, stays 0600, and a stale wide temp file does not widen it",
          "[h3client]") {
  namespace fs = std::filesystem;
  auto dir = fs::temp_directory_path() /
             ("quiclab-h3session-json-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
  fs::create_directories(dir);
  auto file = dir / "session";
  // A leftover temp file readable by everyone, as an interrupted run might leave.
  { std::ofstream(dir / "session.tmp") << "junk"; }
  fs::permissions(dir / "session.tmp", fs::perms::all);
  quiclab::h3::StoredSession s;
  s.tls_session = {0xde, 0xad};
  s.transport_params = {0x01};
  s.token = {0xbe, 0xef, 0x00};
  REQUIRE(quiclab::h3::save_session(file, s).ok());
  CHECK((fs::status(file).permissions() & fs::perms::mask) == (fs::perms::owner_read | fs::perms::owner_write));
  std::ifstream in(file);
  auto j = nlohmann::json::parse(in);
  CHECK(j["format"] == "quiclab-h3-session");
  CHECK(j["version"] == 2);
  CHECK(j["tls"] == "dead");
  CHECK(j["transport_params"] == "01");
  CHECK(j["token"] == "beef00");
  auto back = quiclab::h3::load_session(file);
  REQUIRE(back.ok());
  CHECK(back->tls_session == s.tls_session);
  CHECK(back->transport_params == s.transport_params);
  CHECK(back->token == s.token);
  fs::remove_all(dir);
}
