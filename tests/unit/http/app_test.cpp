#include "transport/http/app.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

using namespace quiclab;
using namespace quiclab::http;
namespace fs = std::filesystem;

namespace {
struct TempRoot {
  fs::path base;
  fs::path root;
  TempRoot() {
    base = fs::temp_directory_path() / ("quiclab-app-test-" + std::to_string(::getpid()));
    fs::remove_all(base);
    root = base / "root";
    fs::create_directories(root / "sub");
    std::ofstream(root / "hello.txt") << "hello\n";
    std::ofstream(root / "sub" / "index.html") << "<p>index</p>";
    std::ofstream(base / "secret.txt") << "secret";
    fs::create_symlink(base / "secret.txt", root / "escape");
    fs::create_symlink(root / "hello.txt", root / "inside-link");
  }
  ~TempRoot() { fs::remove_all(base); }
};

Request get(std::string path, std::string method = "GET") {
  Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  return r;
}

std::string body_of(const Response& r) {
  if (!r.body) return {};
  std::string out(r.body->size(), '\0');
  auto n = r.body->read(0, MutableByteView(reinterpret_cast<uint8_t*>(out.data()), out.size()));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}
}  // namespace

TEST_CASE("static paths resolve inside the root only", "[http][path]") {
  TempRoot t;
  auto ok = [&](std::string_view p) { return std::holds_alternative<fs::path>(resolve_static_path(t.root, p)); };
  auto status = [&](std::string_view p) {
    auto r = resolve_static_path(t.root, p);
    return std::holds_alternative<PathError>(r) ? std::get<PathError>(r).status : 200;
  };
  CHECK(ok("/hello.txt"));
  CHECK(ok("/hello.txt?x=1"));
  CHECK(ok("/sub/"));
  CHECK(ok("/sub"));
  CHECK(ok("/inside-link"));
  CHECK(ok("/hell%6f.txt"));
  CHECK(status("/../secret.txt") == 400);
  CHECK(status("/sub/../hello.txt") == 400);
  CHECK(status("/%2e%2e/secret.txt") == 400);
  CHECK(status("/%2E%2E/secret.txt") == 400);
  CHECK(status("/..%2fsecret.txt") == 400);
  CHECK(status("/sub%2f..%2f..%2fsecret.txt") == 400);
  CHECK(status("/hello.txt%00") == 400);
  CHECK(status("/a%zz") == 400);
  CHECK(status("/a%4") == 400);
  CHECK(status("relative") == 400);
  CHECK(status("/escape") == 403);
  CHECK(status("/missing") == 404);
  CHECK(status("/") == 404);  // no index.html at the top
}

TEST_CASE("sizes parse with suffixes and bounds", "[http]") {
  CHECK(parse_size("0") == 0u);
  CHECK(parse_size("1024") == 1024u);
  CHECK(parse_size("1k") == 1024u);
  CHECK(parse_size("100m") == 100u * 1024 * 1024);
  CHECK(parse_size("2G") == 2ull * 1024 * 1024 * 1024);
  CHECK_FALSE(parse_size(""));
  CHECK_FALSE(parse_size("k"));
  CHECK_FALSE(parse_size("-1"));
  CHECK_FALSE(parse_size("1x"));
  CHECK_FALSE(parse_size("99999999999999999999"));
  CHECK_FALSE(parse_size("18014398509481984g"));  // overflows
}

TEST_CASE("routes: bytes, echo, health, metrics, static", "[http][app]") {
  TempRoot t;
  Metrics m;
  AppConfig cfg;
  cfg.root = t.root;
  cfg.max_generated_bytes = 1 << 20;
  App app(cfg, m);

  auto r = app.handle(get("/bytes/100"));
  CHECK(r.status == 200);
  REQUIRE(r.body);
  CHECK(r.body->size() == 100);
  auto b = body_of(r);
  CHECK(check_generated(0, as_bytes(b)));

  CHECK(app.handle(get("/bytes/2m")).status == 413);
  CHECK(app.handle(get("/bytes/abc")).status == 400);
  CHECK(app.handle(get("/bytes")).status == 400);

  Request echo = get("/echo", "POST");
  echo.body = Bytes{'a', 'b', 'c'};
  auto e = app.handle(echo);
  CHECK(e.status == 200);
  CHECK(body_of(e) == "abc");
  CHECK(app.handle(get("/echo")).status == 405);

  CHECK(body_of(app.handle(get("/health"))) == "ok\n");

  m.of(Protocol::h2).connections_total = 3;
  m.count_response(Protocol::h3, 404);
  auto metrics = body_of(app.handle(get("/metrics")));
  CHECK(metrics.find("quiclab_connections_total{protocol=\"h2\"} 3") != std::string::npos);
  CHECK(metrics.find("quiclab_responses_total{protocol=\"h3\",class=\"4xx\"} 1") != std::string::npos);
  CHECK(metrics.find("# TYPE quiclab_connections_active gauge") != std::string::npos);

  auto s = app.handle(get("/hello.txt"));
  CHECK(s.status == 200);
  CHECK(body_of(s) == "hello\n");
  CHECK(*find_header(s.headers, "Content-Type") == "text/plain; charset=utf-8");
  CHECK(app.handle(get("/escape")).status == 403);
  CHECK(app.handle(get("/%2e%2e/secret.txt")).status == 400);
  CHECK(app.handle(get("/nope", "DELETE")).status == 405);
}

TEST_CASE("without a root only the built-in routes exist", "[http][app]") {
  Metrics m;
  App app(AppConfig{}, m);
  CHECK(app.handle(get("/hello.txt")).status == 404);
  CHECK(app.handle(get("/health")).status == 200);
}

TEST_CASE("generated bodies are consistent across reads", "[http]") {
  GeneratedBody g(200000);
  Bytes buf(70000);
  uint64_t off = 0;
  while (off < g.size()) {
    auto n = g.read(off, buf);
    REQUIRE(n > 0);
    CHECK(check_generated(off, ByteView(buf.data(), static_cast<size_t>(n))));
    off += static_cast<uint64_t>(n);
  }
  CHECK(off == 200000);
  Bytes wrong(10, 'x');
  CHECK_FALSE(check_generated(0, wrong));
}

#include "transport/http/client.hpp"

TEST_CASE("URLs parse, with clear errors for bad ones", "[http][url]") {
  auto u = Url::parse("https://localhost:8443/bytes/1k?x=1#frag");
  REQUIRE(u.ok());
  CHECK(u->host == "localhost");
  CHECK(u->port == 8443);
  CHECK(u->path == "/bytes/1k?x=1");
  CHECK(u->authority() == "localhost:8443");
  auto v6 = Url::parse("https://[::1]:4433");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->path == "/");
  CHECK(v6->authority() == "[::1]:4433");
  CHECK(Url::parse("https://example.org")->port == 443);
  CHECK_FALSE(Url::parse("http://x/").ok());
  CHECK_FALSE(Url::parse("localhost:1/").ok());
  CHECK_FALSE(Url::parse("https://:1/").ok());
  CHECK_FALSE(Url::parse("https://h:0/").ok());
  CHECK_FALSE(Url::parse("https://h:70000/").ok());
  CHECK_FALSE(Url::parse("https://h:/").ok());
  CHECK_FALSE(Url::parse("https://[::1/").ok());
  CHECK_FALSE(Url::parse("https://h/a b").ok());
  CHECK_FALSE(Url::parse("https://u@h/").ok());
}
