// `quiclab get -H`: one value per -H, as curl users expect, and options
// anywhere on the line, so a URL after -H is never taken for a header.
#include <catch2/catch.hpp>

#include "tests/h2/support.hpp"

using namespace quiclab;
using namespace quiclab::test;

namespace {

std::vector<std::string> get(const test::Server& srv, std::vector<std::string> args) {
  std::vector<std::string> v = {QUICLAB_BIN, "get", "--cacert", srv.cert().string()};
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("quiclab get: -H takes one value, the URL after it stays a URL", "[h2][cli][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  const auto url = srv.url("/health");

  SECTION("-H 'x-a: 1' URL --json") {
    auto r = run(get(srv, {"-H", "x-a: 1", url, "--json"}), 60);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(count(r.out, "\"status\":200") == 1);
    CHECK(r.out.find(url) != std::string::npos);
  }
  SECTION("URL -H 'x-a: 1' -H 'x-b: 2' --json") {
    auto r = run(get(srv, {url, "-H", "x-a: 1", "-H", "x-b: 2", "--json"}), 60);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(count(r.out, "\"status\":200") == 1);
  }
  SECTION("-H between two URLs: both are fetched") {
    auto r = run(get(srv, {url, "-H", "x-a: 1", srv.url("/bytes/10"), "--json"}), 60);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(count(r.out, "\"status\":200") == 2);
  }
  SECTION("-H and other options after the URL: POST /echo round trip") {
    test::TempDir tmp;
    auto r = run(get(srv, {srv.url("/echo"), "-H", "content-type: text/plain", "-X", "POST", "-d", "hello", "-o",
                           (tmp.path / "body").string(), "--json"}),
                 60);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(read_text(tmp.path / "body") == "hello");
  }
}
