// App's open-file cache for static files: hits, invalidation on change and
// deletion (seen through the open fd's fstat), revalidation interval on
// simulated time, bounds, and that path checks still run before any caching.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "transport/http/app.hpp"

using namespace quiclab;
using namespace quiclab::http;
namespace fs = std::filesystem;

namespace {
struct CacheRoot {
  fs::path base;
  fs::path root;
  CacheRoot() {
    base = fs::temp_directory_path() / ("quiclab-cache-test-" + std::to_string(::getpid()));
    fs::remove_all(base);
    root = base / "root";
    fs::create_directories(root / "sub");
    write("a.txt", "alpha\n");
    write("b.html", "<b>");
    write("c.txt", "gamma\n");
    write("sub/index.html", "<p>index</p>");
    std::ofstream(base / "secret.txt") << "secret";
    fs::create_symlink(base / "secret.txt", root / "escape");
  }
  ~CacheRoot() { fs::remove_all(base); }
  void write(const std::string& rel, const std::string& text) const {
    std::ofstream(root / rel, std::ios::binary | std::ios::trunc) << text;
  }
};

Request get(std::string path) {
  Request r;
  r.method = "GET";
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

AppConfig config_for(const CacheRoot& t, const Clock* clock, Timestamp revalidate = 0) {
  AppConfig c;
  c.root = t.root;
  c.clock = clock;
  c.static_cache_revalidate_ns = revalidate;
  return c;
}
}  // namespace

TEST_CASE("static cache: second request is a hit with the same bytes and type", "[http][cache]") {
  CacheRoot t;
  Metrics m;
  ManualClock clock;
  App app(config_for(t, &clock), m);
  auto r1 = app.handle(get("/a.txt"));
  auto r2 = app.handle(get("/a.txt?q=1"));
  CHECK(r1.status == 200);
  CHECK(r2.status == 200);
  CHECK(body_of(r1) == "alpha\n");
  CHECK(body_of(r2) == "alpha\n");
  CHECK(find_header(r2.headers, "content-type") == std::optional<std::string_view>("text/plain; charset=utf-8"));
  REQUIRE(r2.body->stable_view(0, 100).size() == 6);  // served from memory, zero-copy
  auto s = app.static_cache_stats();
  CHECK(s.misses == 1);
  CHECK(s.hits == 1);
  CHECK(s.entries == 1);
  CHECK(s.bytes == 6);
  // Directory index through the cache.
  CHECK(body_of(app.handle(get("/sub"))) == "<p>index</p>");
  auto r3 = app.handle(get("/sub"));
  CHECK(body_of(r3) == "<p>index</p>");
  CHECK(find_header(r3.headers, "content-type") == std::optional<std::string_view>("text/html; charset=utf-8"));
  CHECK(app.static_cache_stats().hits == 2);
}

TEST_CASE("static cache: modification and deletion invalidate", "[http][cache]") {
  CacheRoot t;
  Metrics m;
  ManualClock clock;
  App app(config_for(t, &clock), m);
  CHECK(body_of(app.handle(get("/a.txt"))) == "alpha\n");
  auto held = app.handle(get("/a.txt"));  // a body still in flight keeps its bytes

  SECTION("rewritten in place with a new size") {
    t.write("a.txt", "alpha, longer\n");
    CHECK(body_of(app.handle(get("/a.txt"))) == "alpha, longer\n");
    CHECK(app.static_cache_stats().invalidations == 1);
    CHECK(body_of(held) == "alpha\n");
  }
  SECTION("same size, new mtime") {
    t.write("a.txt", "ALPHA\n");
    fs::last_write_time(t.root / "a.txt", fs::last_write_time(t.root / "a.txt") + std::chrono::seconds(5));
    CHECK(body_of(app.handle(get("/a.txt"))) == "ALPHA\n");
    CHECK(app.static_cache_stats().invalidations == 1);
  }
  SECTION("replaced by rename") {
    t.write("new.txt", "replacement\n");
    fs::rename(t.root / "new.txt", t.root / "a.txt");
    CHECK(body_of(app.handle(get("/a.txt"))) == "replacement\n");
    CHECK(app.static_cache_stats().invalidations == 1);
  }
  SECTION("deleted") {
    fs::remove(t.root / "a.txt");
    CHECK(app.handle(get("/a.txt")).status == 404);
    CHECK(app.static_cache_stats().invalidations == 1);
    CHECK(app.static_cache_stats().entries == 0);
    CHECK(body_of(held) == "alpha\n");
  }
}

TEST_CASE("static cache: changes are seen once the revalidation interval passed", "[http][cache]") {
  CacheRoot t;
  Metrics m;
  ManualClock clock;
  App app(config_for(t, &clock, kNanosPerSecond), m);
  CHECK(body_of(app.handle(get("/a.txt"))) == "alpha\n");
  fs::remove(t.root / "a.txt");
  clock.advance(kNanosPerSecond / 2);
  CHECK(app.handle(get("/a.txt")).status == 200);  // within the interval: not re-checked
  clock.advance(kNanosPerSecond / 2);
  CHECK(app.handle(get("/a.txt")).status == 404);
  CHECK(app.static_cache_stats().invalidations == 1);
}

TEST_CASE("static cache: entries and bytes stay within bounds (least recently used goes)", "[http][cache]") {
  CacheRoot t;
  Metrics m;
  ManualClock clock;
  SECTION("entry bound") {
    auto c = config_for(t, &clock);
    c.static_cache_entries = 2;
    App app(std::move(c), m);
    app.handle(get("/a.txt"));
    app.handle(get("/b.html"));
    app.handle(get("/a.txt"));  // a is now the most recent
    app.handle(get("/c.txt"));  // evicts b
    auto s = app.static_cache_stats();
    CHECK(s.entries == 2);
    CHECK(s.evictions == 1);
    auto hits = s.hits;
    CHECK(body_of(app.handle(get("/a.txt"))) == "alpha\n");
    CHECK(app.static_cache_stats().hits == hits + 1);
    CHECK(body_of(app.handle(get("/b.html"))) == "<b>");
    CHECK(app.static_cache_stats().hits == hits + 1);  // b was a miss
  }
  SECTION("byte bound and large files") {
    auto c = config_for(t, &clock);
    c.static_cache_bytes = 10;
    c.static_cache_max_file_bytes = 8;
    App app(std::move(c), m);
    app.handle(get("/a.txt"));  // 6 bytes
    app.handle(get("/c.txt"));  // 6 more: over 10, a goes
    auto s = app.static_cache_stats();
    CHECK(s.bytes == 6);
    CHECK(s.entries == 1);
    CHECK(s.evictions == 1);
    // Over max_file_bytes: cached as an open file, read with pread, no bytes held.
    t.write("big.txt", std::string(100, 'x'));
    CHECK(body_of(app.handle(get("/big.txt"))) == std::string(100, 'x'));
    auto r = app.handle(get("/big.txt"));
    CHECK(r.body->stable_view(0, 10).empty());
    CHECK(body_of(r) == std::string(100, 'x'));
    CHECK(app.static_cache_stats().bytes == 6);
    CHECK(app.static_cache_stats().hits == 1);
  }
  SECTION("disabled") {
    auto c = config_for(t, &clock);
    c.static_cache_entries = 0;
    App app(std::move(c), m);
    CHECK(body_of(app.handle(get("/a.txt"))) == "alpha\n");
    CHECK(body_of(app.handle(get("/a.txt"))) == "alpha\n");
    CHECK(app.static_cache_stats().entries == 0);
    CHECK(app.static_cache_stats().hits == 0);
  }
}

TEST_CASE("static cache: path checks run before the cache", "[http][cache]") {
  CacheRoot t;
  Metrics m;
  ManualClock clock;
  App app(config_for(t, &clock), m);
  for (int i = 0; i < 2; ++i) {
    CHECK(app.handle(get("/escape")).status == 403);
    CHECK(app.handle(get("/../secret.txt")).status == 400);
    CHECK(app.handle(get("/%2e%2e/secret.txt")).status == 400);
    CHECK(app.handle(get("/missing")).status == 404);
  }
  CHECK(app.static_cache_stats().entries == 0);
  CHECK(app.static_cache_stats().hits == 0);
}

TEST_CASE("mime types from the extension without filesystem::path", "[http][cache]") {
  CHECK(mime_type_of("/a/b.HTML") == "text/html; charset=utf-8");
  CHECK(mime_type_of("x.json") == "application/json");
  CHECK(mime_type_of("/a.d/noext") == "application/octet-stream");
  CHECK(mime_type_of("/.profile") == "application/octet-stream");
  CHECK(mime_type_of("") == "application/octet-stream");
  CHECK(mime_type(fs::path("/x/y.png")) == "image/png");
}
