// h2::Client against h2::Server on one loop over real loopback sockets: request
// semantics, the concurrency cap, REFUSED_STREAM retry, callback rules
// (destroying the client from a callback) and that the loop closes with no live
// handle in every case.
#include "transport/h2/client.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "transport/core/uv.hpp"
#include "transport/h2/server.hpp"
#include "transport/http/app.hpp"
#include "transport/tls/tls.hpp"

using namespace quiclab;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  fs::path dir;
  tls::CertificatePaths cert;
  uv::Loop loop;
  http::Metrics metrics;
  http::App app{http::AppConfig{}, metrics};
  std::unique_ptr<h2::Server> server;
  http::Url base;

  explicit Fixture(std::uint32_t server_streams = 100) {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("quiclab-h2client-unit-" + std::to_string(::getpid()) + "-" + std::to_string(++counter));
    auto c = tls::generate_self_signed(dir, {"localhost", "127.0.0.1"});
    REQUIRE(c.ok());
    cert = *c;
    h2::ServerConfig config;
    config.listen = *SocketAddress::parse("127.0.0.1:0");
    config.cert = cert.cert;
    config.key = cert.key;
    config.max_concurrent_streams = server_streams;
    server = std::make_unique<h2::Server>(loop, app, config);
    auto st = server->start();
    REQUIRE(st.ok());
    base = *http::Url::parse("https://127.0.0.1:" + std::to_string(server->local_address().port()) + "/");
  }
  ~Fixture() {
    server.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  http::ClientOptions options() const {
    http::ClientOptions o;
    o.ca_file = cert.cert;  // verification on, against our own CA
    o.timeout_ms = 20000;
    return o;
  }

  http::ClientRequest request(const std::string& path) const {
    http::ClientRequest r;
    r.url = base;
    r.url.path = path;
    return r;
  }

  // Stops the server once the client closed, runs the loop dry, checks no handle is left.
  void finish() {
    server->close_now();
    loop.run();
    server.reset();
    CHECK(loop.close().empty());
  }
};

}  // namespace

TEST_CASE("h2 client: concurrent GETs, verified bodies, POST echo, graceful close", "[h2client]") {
  Fixture f;
  auto opts = f.options();
  opts.max_concurrent_streams = 8;
  auto client_ptr = std::make_unique<h2::Client>(f.loop, f.base, opts);
  auto& client = *client_ptr;
  bool ready = false, closed = false;
  client.connect([&](Status st) {
    CHECK(st.ok());
    ready = true;
  });
  constexpr int kGets = 40;
  constexpr std::uint64_t kSize = 300 * 1000;
  int done = 0, good_bodies = 0;
  std::size_t max_in_flight = 0;
  auto maybe_close = [&] {
    if (++done == kGets + 1) {
      client.close([&] {
        closed = true;
        f.server->close_now();  // lets loop.run() return
      });
    }
  };
  for (int i = 0; i < kGets; ++i) {
    auto offset = std::make_shared<std::uint64_t>(0);
    auto ok = std::make_shared<bool>(true);
    client.submit(
        f.request("/bytes/" + std::to_string(kSize)),
        [&, offset, ok](ByteView chunk) {
          *ok = *ok && http::check_generated(*offset, chunk);
          *offset += chunk.size();
          max_in_flight = std::max(max_in_flight, client.streams_in_flight());
        },
        [&, ok](http::ClientResponse&& r) {
          CHECK_FALSE(r.error.has_value());
          CHECK(r.status == 200);
          CHECK(r.body_bytes == kSize);
          const auto& t = r.timing;
          CHECK(t.start <= t.connected);
          CHECK(t.connected <= t.handshake_done);
          CHECK(t.handshake_done <= t.request_sent);
          CHECK(t.request_sent <= t.first_byte);
          CHECK(t.first_byte <= t.complete);
          if (*ok && r.body_bytes == kSize) ++good_bodies;
          maybe_close();
        });
  }
  // A 2 MB upload: larger than the server's initial windows, so it needs WINDOW_UPDATEs.
  Bytes upload(2 * 1024 * 1024);
  for (std::size_t i = 0; i < upload.size(); ++i) upload[i] = static_cast<std::uint8_t>(i * 7 + 3);
  auto post = f.request("/echo");
  post.method = "POST";
  post.body = std::make_shared<http::MemoryBody>(upload);
  Bytes echoed;
  client.submit(
      std::move(post), [&](ByteView chunk) { append(echoed, chunk); },
      [&](http::ClientResponse&& r) {
        CHECK_FALSE(r.error.has_value());
        CHECK(r.status == 200);
        maybe_close();
      });
  f.loop.run();
  CHECK(ready);
  CHECK(closed);
  CHECK(good_bodies == kGets);
  CHECK(echoed == upload);
  CHECK(max_in_flight <= 8);
  CHECK(max_in_flight >= 2);
  CHECK(client.info().protocol == "h2");
  client_ptr.reset();
  f.finish();
}

TEST_CASE("h2 client: the server's SETTINGS_MAX_CONCURRENT_STREAMS caps streams", "[h2client]") {
  Fixture f(/*server_streams=*/2);
  auto opts = f.options();
  opts.max_concurrent_streams = 50;
  auto client_ptr = std::make_unique<h2::Client>(f.loop, f.base, opts);
  auto& client = *client_ptr;
  client.connect([](Status st) { CHECK(st.ok()); });
  int ok = 0, done = 0;
  constexpr int kRequests = 30;
  for (int i = 0; i < kRequests; ++i) {
    client.submit(f.request("/bytes/100000"), nullptr, [&](http::ClientResponse&& r) {
      // Streams beyond the server's limit before its SETTINGS arrived were
      // refused and retried: every request still succeeds.
      INFO((r.error ? r.error->message : std::string()));
      if (!r.error && r.status == 200) ++ok;
      if (++done == kRequests) client.close([&] { f.server->close_now(); });
    });
  }
  f.loop.run();
  CHECK(ok == kRequests);
  client_ptr.reset();
  f.finish();
}

TEST_CASE("h2 client: destroying the client from a completion callback", "[h2client]") {
  Fixture f;
  auto client = std::make_unique<h2::Client>(f.loop, f.base, f.options());
  client->connect(nullptr);
  int completions = 0;
  for (int i = 0; i < 20; ++i) {
    client->submit(f.request("/bytes/1000"), nullptr, [&](http::ClientResponse&&) {
      ++completions;
      client.reset();  // no further callback may run, nothing may touch freed memory
      f.server->close_now();
    });
  }
  f.loop.run();
  CHECK(completions == 1);
  CHECK_FALSE(client);
  f.finish();
}

TEST_CASE("h2 client: errors are values", "[h2client]") {
  SECTION("connection refused") {
    uv::Loop loop;
    // Bind a port, then free it: nobody listens there afterwards.
    std::uint16_t port = 0;
    {
      uv::TcpServer probe(loop);
      REQUIRE(probe.listen(*SocketAddress::parse("127.0.0.1:0"), 1, [](uv::TcpStream) {}).ok());
      port = probe.local_address().port();
    }
    loop.run();
    http::ClientOptions opts;
    opts.insecure = true;
    auto url = *http::Url::parse("https://127.0.0.1:" + std::to_string(port) + "/");
    auto client = std::make_unique<h2::Client>(loop, url, opts);
    std::optional<Status> ready;
    std::optional<http::ClientResponse> resp;
    client->connect([&](Status st) { ready = st; });
    http::ClientRequest req;
    req.url = url;
    client->submit(req, nullptr, [&](http::ClientResponse&& r) { resp = std::move(r); });
    loop.run();
    client.reset();
    REQUIRE(ready);
    CHECK_FALSE(ready->ok());
    REQUIRE(resp);
    REQUIRE(resp->error);
    CHECK(resp->error->message.find("ECONNREFUSED") != std::string::npos);
    CHECK(loop.close().empty());
  }
  SECTION("certificate not trusted") {
    Fixture f;
    http::ClientOptions opts;  // system trust store: our self-signed cert is unknown
    auto client = std::make_unique<h2::Client>(f.loop, f.base, opts);
    std::optional<http::ClientResponse> resp;
    client->connect(nullptr);
    client->submit(f.request("/health"), nullptr, [&](http::ClientResponse&& r) {
      resp = std::move(r);
      f.server->close_now();
    });
    f.loop.run();
    client.reset();
    REQUIRE(resp);
    REQUIRE(resp->error);
    CHECK(resp->error->message.find("certificate verify failed") != std::string::npos);
    CHECK(resp->status == 0);
    f.finish();
  }
  SECTION("abort fails requests in flight and reports the close") {
    Fixture f;
    auto client_ptr = std::make_unique<h2::Client>(f.loop, f.base, f.options());
    auto& client = *client_ptr;
    client.connect(nullptr);
    int failed = 0;
    bool closed = false;
    for (int i = 0; i < 5; ++i) {
      client.submit(f.request("/bytes/50m"), nullptr, [&](http::ClientResponse&& r) {
        if (r.error) ++failed;
      });
    }
    // Abort once the first body bytes arrive.
    bool aborted = false;
    client.submit(
        f.request("/bytes/10m"),
        [&](ByteView) {
          if (!aborted) {
            aborted = true;
            client.close(
                [&] {
                  closed = true;
                  f.server->close_now();
                },
                /*abort=*/true);
          }
        },
        [&](http::ClientResponse&& r) {
          if (r.error) ++failed;
        });
    f.loop.run();
    CHECK(aborted);
    CHECK(closed);
    CHECK(failed == 6);
    client_ptr.reset();
    f.finish();
  }
}
