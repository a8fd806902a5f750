// Bad input through real sockets: each case gets what RFC 9113 prescribes
// (GOAWAY with the right error code, RST_STREAM, or close), the server logs a
// line naming the peer and the reason, and a well-behaved client connected
// at the same time keeps being served.
#include <catch2/catch.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "tests/h2/support.hpp"

using namespace quiclab;
using namespace quiclab::test;

namespace {

/// A well-behaved client that made its first request before the bad peer came.
struct GoodClient {
  std::unique_ptr<RawClient> c;
  std::uint32_t next_stream = 1;

  explicit GoodClient(const test::Server& srv) {
    c = RawClient::connect(srv.port());
    REQUIRE(c);
    REQUIRE(c->send_preface());
    served();
  }
  /// GET /health on a new stream of the same connection: 200 and "ok\n".
  void served() {
    auto id = next_stream;
    next_stream += 2;
    REQUIRE(c->send_request(id, "GET", "/health"));
    auto h = c->read_until([&](const Frame& f) { return f.type == NGHTTP2_HEADERS && f.stream == id; });
    REQUIRE(h);
    auto fields = c->decode_headers(*h);
    REQUIRE(!fields.empty());
    CHECK(fields[0] == std::pair<std::string, std::string>{":status", "200"});
    auto d = c->read_until([&](const Frame& f) { return f.type == NGHTTP2_DATA && f.stream == id; });
    REQUIRE(d);
    CHECK(as_string(d->payload) == "ok\n");
  }
};

/// True once one line of the server log contains all needles.
bool log_line_with(const test::Server& srv, const std::vector<std::string>& needles, int timeout_s = 20) {
  for (int i = 0; i < timeout_s * 20; ++i) {
    std::istringstream in(srv.log());
    std::string line;
    while (std::getline(in, line)) {
      bool all = true;
      for (const auto& n : needles) all = all && line.find(n) != std::string::npos;
      if (all) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::unique_ptr<RawClient> connected_with_preface(const test::Server& srv) {
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  REQUIRE(c->send_preface());
  // The server preface: SETTINGS first.
  auto s = c->read_frame();
  REQUIRE(s);
  REQUIRE(s->type == NGHTTP2_SETTINGS);
  return c;
}

std::optional<Frame> goaway(RawClient& c) {
  return c.read_until([](const Frame& f) { return f.type == NGHTTP2_GOAWAY; });
}

}  // namespace

TEST_CASE("random bytes instead of a ClientHello: closed and logged, others served", "[h2][bad-input][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  GoodClient good(srv);

  auto bad = RawClient::connect(srv.port(), /*tls=*/false);
  REQUIRE(bad);
  std::mt19937 rng(42);
  Bytes junk(600);
  for (auto& b : junk) b = static_cast<std::uint8_t>(rng());
  junk[0] = 'X';  // never a TLS handshake record (0x16)
  REQUIRE(bad->send(junk));
  CHECK(bad->wait_closed());
  CHECK(log_line_with(srv, {bad->local_address(), "TLS handshake failed"}));
  good.served();
}

TEST_CASE("bad connection preface: GOAWAY PROTOCOL_ERROR, close", "[h2][bad-input][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  GoodClient good(srv);

  auto bad = RawClient::connect(srv.port());
  REQUIRE(bad);
  REQUIRE(bad->send(as_bytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")));
  auto g = goaway(*bad);
  REQUIRE(g);
  CHECK(g->error_code() == NGHTTP2_PROTOCOL_ERROR);
  CHECK(bad->wait_closed());
  CHECK(log_line_with(srv, {bad->local_address(), "bad client magic"}));
  good.served();
}

TEST_CASE("frame larger than SETTINGS_MAX_FRAME_SIZE: GOAWAY FRAME_SIZE_ERROR", "[h2][bad-input][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  GoodClient good(srv);

  auto bad = connected_with_preface(srv);
  Bytes big(16384 + 1, 0);  // one byte over the default 16384 we never raised
  REQUIRE(bad->send_frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, big));
  auto g = goaway(*bad);
  REQUIRE(g);
  CHECK(g->error_code() == NGHTTP2_FRAME_SIZE_ERROR);
  CHECK(bad->wait_closed());
  CHECK(log_line_with(srv, {bad->local_address(), "GOAWAY FRAME_SIZE_ERROR"}));
  good.served();
}

TEST_CASE("HEADERS with broken HPACK: GOAWAY COMPRESSION_ERROR", "[h2][bad-input][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  GoodClient good(srv);

  auto bad = connected_with_preface(srv);
  // An indexed header field with index 0 is a decoding error (RFC 7541 6.1).
  const std::uint8_t block[] = {0x82, 0x80};
  REQUIRE(bad->send_frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, block));
  auto g = goaway(*bad);
  REQUIRE(g);
  CHECK(g->error_code() == NGHTTP2_COMPRESSION_ERROR);
  CHECK(bad->wait_closed());
  CHECK(log_line_with(srv, {bad->local_address(), "GOAWAY COMPRESSION_ERROR"}));
  good.served();
}

TEST_CASE("DATA on a closed stream: STREAM_CLOSED", "[h2][bad-input][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  GoodClient good(srv);

  auto bad = connected_with_preface(srv);
  REQUIRE(bad->send_request(1, "GET", "/health"));
  REQUIRE(bad->read_until([](const Frame& f) {
    return f.stream == 1 && (f.type == NGHTTP2_DATA || f.type == NGHTTP2_HEADERS) &&
           (f.flags & NGHTTP2_FLAG_END_STREAM);
  }));
  // Stream 1 is closed on both sides: we sent END_STREAM, so did the server.
  REQUIRE(bad->send_frame(NGHTTP2_DATA, 0, 1, as_bytes("late")));
  // RFC 9113 5.1 ("closed"): frames after END_STREAM are a connection error of
  // type STREAM_CLOSED.
  auto g = goaway(*bad);
  REQUIRE(g);
  CHECK(g->error_code() == NGHTTP2_STREAM_CLOSED);
  CHECK(g->last_stream_id() == 1);
  CHECK(bad->wait_closed());
  CHECK(log_line_with(srv, {bad->local_address(), "GOAWAY STREAM_CLOSED"}));
  good.served();
}

TEST_CASE("WINDOW_UPDATE overflowing the connection window: GOAWAY FLOW_CONTROL_ERROR", "[h2][bad-input][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  GoodClient good(srv);

  auto bad = connected_with_preface(srv);
  // 65535 + (2^31 - 1) exceeds 2^31 - 1 (RFC 9113 6.9.1).
  REQUIRE(bad->send_window_update(0, 0x7fffffff));
  auto g = goaway(*bad);
  REQUIRE(g);
  CHECK(g->error_code() == NGHTTP2_FLOW_CONTROL_ERROR);
  CHECK(bad->wait_closed());
  CHECK(log_line_with(srv, {bad->local_address(), "GOAWAY FLOW_CONTROL_ERROR"}));
  good.served();
}

TEST_CASE("WINDOW_UPDATE overflowing a stream window: RST_STREAM FLOW_CONTROL_ERROR, connection lives",
          "[h2][bad-input][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  GoodClient good(srv);

  auto c = connected_with_preface(srv);
  REQUIRE(c->send_request(1, "GET", "/bytes/1m"));
  REQUIRE(c->send_window_update(1, 0x7fffffff));
  REQUIRE(c->send_window_update(1, 0x7fffffff));
  auto r = c->read_until([](const Frame& f) { return f.type == NGHTTP2_RST_STREAM || f.type == NGHTTP2_GOAWAY; });
  REQUIRE(r);
  INFO(describe(*r));
  CHECK(r->type == NGHTTP2_RST_STREAM);
  CHECK(r->stream == 1);
  CHECK(r->error_code() == NGHTTP2_FLOW_CONTROL_ERROR);
  CHECK(log_line_with(srv, {c->local_address(), "RST_STREAM FLOW_CONTROL_ERROR"}));
  // A stream error leaves the connection usable (RFC 9113 5.4.2).
  REQUIRE(c->send_request(3, "GET", "/health"));
  auto h = c->read_until([](const Frame& f) { return f.type == NGHTTP2_HEADERS && f.stream == 3; });
  REQUIRE(h);
  CHECK(c->decode_headers(*h).at(0).second == "200");
  good.served();
}

TEST_CASE("slowloris: silent, TLS-only and partial-header clients are closed by the header-read timeout",
          "[h2][bad-input][sanitize]") {
  test::Server srv({"--header-timeout", "1000"});
  REQUIRE(srv.ok());
  GoodClient good(srv);

  auto silent = RawClient::connect(srv.port(), /*tls=*/false);  // never speaks
  REQUIRE(silent);
  auto tls_only = RawClient::connect(srv.port());  // handshake, then nothing
  REQUIRE(tls_only);
  // Not even a SETTINGS ACK: an ACK sent when wait_closed reads the server's
  // SETTINGS would reach the server as a bad preface, racing the timer.
  tls_only->auto_ack = false;
  auto partial = connected_with_preface(srv);  // HEADERS without END_HEADERS, no CONTINUATION ever
  const std::uint8_t block[] = {0x82, 0x87};   // :method GET, :scheme https
  REQUIRE(partial->send_frame(NGHTTP2_HEADERS, 0, 1, block));

  CHECK(silent->wait_closed(30000));
  CHECK(tls_only->wait_closed(30000));
  CHECK(partial->wait_closed(30000));
  const std::pair<const char*, RawClient*> clients[] = {
      {"silent", silent.get()}, {"TLS only", tls_only.get()}, {"partial headers", partial.get()}};
  for (const auto& [what, c] : clients) {
    bool logged = log_line_with(srv, {c->local_address(), "header-read timeout"});
    if (!logged) {
      // Say which client and what the server did log about it.
      std::istringstream in(srv.log());
      std::string line, about;
      while (std::getline(in, line))
        if (line.find(c->local_address()) != std::string::npos) about += line + "\n";
      INFO("client: " << what << " (" << c->local_address() << "); server lines about it:\n" << about);
      CHECK(logged);
    }
  }
  good.served();
}

TEST_CASE("request header list above SETTINGS_MAX_HEADER_LIST_SIZE: 431, connection lives",
          "[h2][bad-input][sanitize]") {
  test::Server srv({"--max-header-list-size", "4096"});
  REQUIRE(srv.ok());
  auto c = connected_with_preface(srv);
  auto s = c->frames().front();
  // SETTINGS_MAX_HEADER_LIST_SIZE (0x6) = 4096 is advertised.
  bool advertised = false;
  for (std::size_t i = 0; i + 6 <= s.payload.size(); i += 6) {
    if (s.payload[i] == 0 && s.payload[i + 1] == 6) advertised = s.u32(i + 2) == 4096;
  }
  CHECK(advertised);
  REQUIRE(c->send_request(1, "GET", "/health", true, {{"x-big", std::string(5000, 'a')}}));
  auto h = c->read_until([](const Frame& f) { return f.type == NGHTTP2_HEADERS && f.stream == 1; });
  REQUIRE(h);
  CHECK(c->decode_headers(*h).at(0).second == "431");
  CHECK(log_line_with(srv, {c->local_address(), "exceeds our limit", "431"}));
  REQUIRE(c->send_request(3, "GET", "/health"));
  auto ok = c->read_until([](const Frame& f) { return f.type == NGHTTP2_HEADERS && f.stream == 3; });
  REQUIRE(ok);
  CHECK(c->decode_headers(*ok).at(0).second == "200");
}
