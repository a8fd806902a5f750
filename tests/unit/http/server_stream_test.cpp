// The shared server-stream pipeline, driven without a transport: what both the
// HTTP/2 and the HTTP/3 server answer is decided here.
#include "transport/http/server_stream.hpp"

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "transport/http/app.hpp"

using namespace quiclab;
using namespace quiclab::http;

namespace {

struct Fixture {
  explicit Fixture(AppConfig config = {}) : app(std::move(config), metrics) {
    app.route("GET", "/nocontent", [](const Request&) {
      Response r = Response::text(204, "ignored body");
      return r;
    });
    app.route("GET", "/notmodified", [](const Request&) { return Response::text(304, "ignored"); });
    app.route("GET", "/hopbyhop", [](const Request&) {
      Response r = Response::text(200, "x");
      r.headers.push_back({"Connection", "close"});
      r.headers.push_back({"keep-alive", "timeout=5"});
      r.headers.push_back({"Transfer-Encoding", "chunked"});
      r.headers.push_back({"upgrade", "h2c"});
      r.headers.push_back({"proxy-connection", "x"});
      r.headers.push_back({"te", "trailers"});
      r.headers.push_back({"content-length", "999"});
      r.headers.push_back({"X-Kept", "yes"});
      return r;
    });
  }
  Metrics metrics;
  App app;
  StreamPolicy policy;
};

using Fields = std::vector<std::pair<std::string, std::string>>;

std::unique_ptr<ServerStream> request(Fixture& f, ConnectionBudget* budget, const std::string& method,
                                      const std::string& path, const Fields& extra = {}, bool end = true) {
  auto s = std::make_unique<ServerStream>(f.app, f.policy, budget, Protocol::h3, SocketAddress{});
  s->header(":method", method);
  s->header(":scheme", "https");
  s->header(":authority", "localhost");
  s->header(":path", path);
  for (const auto& [n, v] : extra) s->header(n, v);
  s->headers_done(end);
  return s;
}

std::optional<std::string> field(const OutgoingResponse& r, const std::string& name) {
  for (const auto& h : r.fields) {
    if (h.name == name) return h.value;
  }
  return std::nullopt;
}

std::size_t count(const OutgoingResponse& r, const std::string& name) {
  std::size_t n = 0;
  for (const auto& h : r.fields) n += h.name == name;
  return n;
}

ByteView bytes(const std::string& s) { return as_bytes(s); }

}  // namespace

TEST_CASE("pipeline: HEAD is the GET's status and fields, content-length kept, no body", "[http][pipeline]") {
  Fixture f;
  auto get = request(f, nullptr, "GET", "/bytes/1k");
  auto head = request(f, nullptr, "HEAD", "/bytes/1k");
  REQUIRE(get->response_ready());
  REQUIRE(head->response_ready());
  auto g = get->take_response();
  auto h = head->take_response();
  CHECK(g.status == 200);
  CHECK(h.status == 200);
  CHECK(field(h, "content-length") == std::optional<std::string>("1024"));
  CHECK(field(h, "content-type") == field(g, "content-type"));
  CHECK(g.body != nullptr);
  CHECK(h.body == nullptr);
  CHECK(head->request().method == "HEAD");
}

TEST_CASE("pipeline: 204 and 304 carry neither content-length nor a body", "[http][pipeline]") {
  Fixture f;
  for (const char* path : {"/nocontent", "/notmodified"}) {
    auto s = request(f, nullptr, "GET", path);
    REQUIRE(s->response_ready());
    auto r = s->take_response();
    INFO(path);
    CHECK((r.status == 204 || r.status == 304));
    CHECK(count(r, "content-length") == 0);
    CHECK(r.body == nullptr);
  }
}

TEST_CASE("pipeline: connection-specific and our own fields never pass from a handler", "[http][pipeline]") {
  Fixture f;
  f.policy.alt_svc = "h3=\":4433\"";
  auto s = request(f, nullptr, "GET", "/hopbyhop");
  auto r = s->take_response();
  for (const char* n : {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te"}) {
    INFO(n);
    CHECK(count(r, n) == 0);
  }
  CHECK(count(r, "content-length") == 1);
  CHECK(field(r, "content-length") == std::optional<std::string>("1"));
  CHECK(field(r, "x-kept") == std::optional<std::string>("yes"));  // lower-cased, kept
  CHECK(field(r, "alt-svc") == std::optional<std::string>("h3=\":4433\""));
  CHECK(count(r, "server") == 1);
}

TEST_CASE("pipeline: a header section over the limit gets 431, one at the limit passes", "[http][pipeline]") {
  Fixture f;
  f.policy.max_header_list_size = 1000;
  // Pseudo-fields: 7+3+32 + 7+5+32 + 10+9+32 + 5+7+32 = 181 bytes.
  const std::size_t pseudo = 181;
  std::string fits(1000 - pseudo - 32 - 3, 'a');
  auto ok = request(f, nullptr, "GET", "/health", {{"x-a", fits}});
  CHECK(ok->take_response().status == 200);
  auto big = request(f, nullptr, "GET", "/health", {{"x-a", fits + "b"}});
  CHECK(big->take_response().status == 431);
  // Many small fields count too (32 bytes of overhead each).
  Fields many(40, {"x", "y"});
  CHECK(request(f, nullptr, "GET", "/health", many)->take_response().status == 431);
}

TEST_CASE("pipeline: malformed requests get 400", "[http][pipeline]") {
  Fixture f;
  CHECK(request(f, nullptr, "GET", "/health", {{"connection", "close"}})->take_response().status == 400);
  CHECK(request(f, nullptr, "GET", "/health", {{"transfer-encoding", "chunked"}})->take_response().status == 400);
  CHECK(request(f, nullptr, "GET", "/health", {{"te", "gzip"}})->take_response().status == 400);
  CHECK(request(f, nullptr, "GET", "/health", {{"te", "trailers"}})->take_response().status == 200);
  CHECK(request(f, nullptr, "POST", "/echo", {{"content-length", "abc"}})->take_response().status == 400);
  CHECK(request(f, nullptr, "POST", "/echo", {{"content-length", "1"}, {"content-length", "2"}})
            ->take_response()
            .status == 400);
  auto missing = std::make_unique<ServerStream>(f.app, f.policy, nullptr, Protocol::h2, SocketAddress{});
  missing->header(":method", "GET");
  missing->headers_done(true);
  CHECK(missing->take_response().status == 400);

  // The body must match its content-length: shorter, longer.
  auto shorter = request(f, nullptr, "POST", "/echo", {{"content-length", "5"}}, false);
  shorter->data(bytes("abc"));
  CHECK(!shorter->response_ready());
  shorter->end_stream();
  CHECK(shorter->take_response().status == 400);
  auto longer = request(f, nullptr, "POST", "/echo", {{"content-length", "2"}}, false);
  longer->data(bytes("abc"));
  CHECK(longer->take_response().status == 400);
  CHECK(longer->body_unwanted());
  auto exact = request(f, nullptr, "POST", "/echo", {{"content-length", "3"}, {"content-length", "3"}}, false);
  exact->data(bytes("abc"));
  exact->end_stream();
  auto r = exact->take_response();
  CHECK(r.status == 200);
  CHECK(r.body_size == 3);
}

TEST_CASE("pipeline: 413 as soon as the declared or the received length passes the limit", "[http][pipeline]") {
  AppConfig config;
  config.max_request_body = 100;
  Fixture f(config);
  auto declared = request(f, nullptr, "POST", "/echo", {{"content-length", "101"}}, false);
  REQUIRE(declared->response_ready());  // before any body byte
  CHECK(declared->take_response().status == 413);
  CHECK(declared->body_unwanted());
  declared->data(bytes(std::string(50, 'x')));
  CHECK(declared->discarded() == 50);

  auto streamed = request(f, nullptr, "POST", "/echo", {}, false);
  streamed->data(bytes(std::string(100, 'x')));
  CHECK(!streamed->response_ready());
  streamed->data(bytes("y"));
  REQUIRE(streamed->response_ready());  // before the end of the request
  CHECK(streamed->take_response().status == 413);
  CHECK(streamed->body_unwanted());
  streamed->end_stream();
  CHECK(!streamed->body_unwanted());
}

TEST_CASE("pipeline: body budgets per connection and per server give 503 and come back", "[http][pipeline][budget]") {
  AppConfig config;
  config.max_request_body = 1000;
  config.max_buffered_body_bytes = 2500;
  config.max_buffered_body_bytes_per_connection = 1500;
  Fixture f(config);
  auto& server = f.app.body_budget();
  ConnectionBudget conn_a(server, config.max_buffered_body_bytes_per_connection);
  ConnectionBudget conn_b(server, config.max_buffered_body_bytes_per_connection);
  ConnectionBudget conn_c(server, config.max_buffered_body_bytes_per_connection);
  auto cl = [](int n) { return Fields{{"content-length", std::to_string(n)}}; };

  // Declared lengths are reserved up front: the second 1000 on one connection does not fit.
  auto a1 = request(f, &conn_a, "POST", "/echo", cl(1000), false);
  CHECK(!a1->response_ready());
  auto a2 = request(f, &conn_a, "POST", "/echo", cl(1000), false);
  REQUIRE(a2->response_ready());
  CHECK(a2->take_response().status == 503);
  CHECK(a2->body_unwanted());
  CHECK(conn_a.in_use() == 1000);

  // Without a declared length, bytes are charged as they arrive.
  auto b1 = request(f, &conn_b, "POST", "/echo", {}, false);
  b1->data(bytes(std::string(900, 'b')));
  CHECK(!b1->response_ready());
  CHECK(server.in_use() == 1900);
  // The server-wide budget (2500) is what refuses here, not conn_c's own.
  auto c1 = request(f, &conn_c, "POST", "/echo", {}, false);
  c1->data(bytes(std::string(500, 'c')));
  CHECK(!c1->response_ready());
  c1->data(bytes(std::string(200, 'c')));
  REQUIRE(c1->response_ready());
  CHECK(c1->take_response().status == 503);
  CHECK(server.in_use() == 1900);  // c1's bytes were given back at once
  CHECK(server.refusals() >= 1);

  // Completed streams keep their share until they end (the /echo copy), then return it.
  a1->data(bytes(std::string(1000, 'a')));
  a1->end_stream();
  auto ra = a1->take_response();
  CHECK(ra.status == 200);
  CHECK(ra.body_size == 1000);
  CHECK(server.in_use() == 1900);
  a1.reset();
  CHECK(server.in_use() == 900);
  auto a3 = request(f, &conn_a, "POST", "/echo", cl(1000), false);
  CHECK(!a3->response_ready());
  b1.reset();
  a3.reset();
  CHECK(server.in_use() == 0);
  CHECK(server.peak() <= 2500);
}

TEST_CASE("pipeline: a connection gone returns what its streams held", "[http][pipeline][budget]") {
  Fixture f;
  BodyBudget server(1000);
  {
    ConnectionBudget conn(server, 1000);
    CHECK(conn.try_take(600));
    CHECK_FALSE(conn.try_take(600));
    CHECK(server.in_use() == 600);
  }
  CHECK(server.in_use() == 0);
}
