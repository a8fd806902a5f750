// RFC 9113 conformance for the MUSTs that our code, not nghttp2, is responsible
// for: what we advertise and what we send. docs/h2.md lists each case with its
// section. Everything goes through real TLS sockets to the real binary.
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <map>
#include <thread>

#include "tests/h2/support.hpp"
#include "transport/http/message.hpp"

using namespace quiclab;
using namespace quiclab::test;

namespace {

std::map<std::uint16_t, std::uint32_t> settings_of(const Frame& f) {
  std::map<std::uint16_t, std::uint32_t> out;
  for (std::size_t i = 0; i + 6 <= f.payload.size(); i += 6) {
    out[static_cast<std::uint16_t>((f.payload[i] << 8) | f.payload[i + 1])] = f.u32(i + 2);
  }
  return out;
}

struct Exchange {
  std::vector<std::pair<std::string, std::string>> headers;
  bool end_stream_on_headers = false;
  std::uint64_t data_bytes = 0;
  std::size_t largest_data_frame = 0;
  bool complete = false;
};

/// Reads one whole response on `stream` (HEADERS, then DATA until END_STREAM).
Exchange read_response(RawClient& c, std::uint32_t stream) {
  Exchange e;
  while (!e.complete) {
    auto f = c.read_frame(60000);
    if (!f) break;
    if (f->stream != stream) continue;
    if (f->type == NGHTTP2_HEADERS) {
      e.headers = c.decode_headers(*f);
      e.end_stream_on_headers = f->flags & NGHTTP2_FLAG_END_STREAM;
      e.complete = e.end_stream_on_headers;
    } else if (f->type == NGHTTP2_DATA) {
      e.data_bytes += f->payload.size();
      e.largest_data_frame = std::max<std::size_t>(e.largest_data_frame, f->length);
      e.complete = f->flags & NGHTTP2_FLAG_END_STREAM;
    } else if (f->type == NGHTTP2_RST_STREAM) {
      break;
    }
  }
  return e;
}

std::optional<std::string> field(const Exchange& e, const std::string& name) {
  for (const auto& [n, v] : e.headers) {
    if (n == name) return v;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("RFC 9113 3.4, 6.5.2: server preface is SETTINGS with the configured values, no ENABLE_PUSH=1",
          "[h2][conformance][sanitize]") {
  test::Server srv({"--max-concurrent-streams", "77", "--stream-window", "300000", "--max-header-list-size", "20000"});
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  REQUIRE(c->send_preface());
  auto first = c->read_frame();
  REQUIRE(first);
  CHECK(first->type == NGHTTP2_SETTINGS);
  CHECK(first->stream == 0);
  CHECK((first->flags & NGHTTP2_FLAG_ACK) == 0);
  CHECK(first->length % 6 == 0);
  auto s = settings_of(*first);
  CHECK(s[NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS] == 77);
  CHECK(s[NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE] == 300000);
  CHECK(s[NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE] == 20000);
  CHECK((s.count(NGHTTP2_SETTINGS_ENABLE_PUSH) == 0 || s[NGHTTP2_SETTINGS_ENABLE_PUSH] == 0));
  // Our SETTINGS is acknowledged by the client (auto_ack); the server ACKs ours.
  auto ack = c->read_until([](const Frame& f) { return f.type == NGHTTP2_SETTINGS && (f.flags & NGHTTP2_FLAG_ACK); });
  REQUIRE(ack);
  CHECK(ack->length == 0);
}

TEST_CASE(
    "RFC 9113 8.1.1, 8.2.1, 8.2.2, 8.3.2: content-length matches DATA, lower-case fields, no "
    "connection-specific fields, :status first",
    "[h2][conformance][sanitize]") {
  TempDir tmp;
  write_generated_file(tmp.path / "f.bin", 70000);
  test::Server srv({}, tmp.path);
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  REQUIRE(c->send_preface({{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}}));
  REQUIRE(c->send_window_update(0, 1 << 24));
  std::uint32_t id = 1;
  for (const std::string path :
       {"/bytes/0", "/bytes/1", "/bytes/16384", "/bytes/100000", "/f.bin", "/health", "/missing", "/metrics"}) {
    INFO(path);
    REQUIRE(c->send_request(id, "GET", path));
    auto e = read_response(*c, id);
    REQUIRE(e.complete);
    REQUIRE(!e.headers.empty());
    CHECK(e.headers[0].first == ":status");
    auto cl = field(e, "content-length");
    REQUIRE(cl);
    CHECK(std::stoull(*cl) == e.data_bytes);
    for (const auto& [n, v] : e.headers) {
      CHECK(std::none_of(n.begin(), n.end(), [](unsigned char ch) { return std::isupper(ch); }));
      if (n != e.headers[0].first) CHECK(n[0] != ':');
      for (const char* banned : {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}) {
        CHECK(n != banned);
      }
    }
    id += 2;
  }
}

TEST_CASE("RFC 9110 9.3.2 over RFC 9113 8.1: HEAD gets the GET's fields, END_STREAM on HEADERS, no DATA",
          "[h2][conformance][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  REQUIRE(c->send_preface());
  REQUIRE(c->send_request(1, "HEAD", "/bytes/5000"));
  auto e = read_response(*c, 1);
  REQUIRE(e.complete);
  CHECK(e.end_stream_on_headers);
  CHECK(e.data_bytes == 0);
  CHECK(field(e, ":status") == "200");
  CHECK(field(e, "content-length") == "5000");
}

TEST_CASE("RFC 9113 4.2: DATA frames never exceed the peer's SETTINGS_MAX_FRAME_SIZE", "[h2][conformance][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  SECTION("default 16384") {
    REQUIRE(c->send_preface());
    REQUIRE(c->send_request(1, "GET", "/bytes/60000"));
    auto e = read_response(*c, 1);
    REQUIRE(e.complete);
    CHECK(e.largest_data_frame <= 16384);
    CHECK(e.data_bytes == 60000);
  }
  SECTION("peer's larger value is never exceeded either") {
    REQUIRE(c->send_preface({{NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 20000}}));
    REQUIRE(c->send_request(1, "GET", "/bytes/60000"));
    auto e = read_response(*c, 1);
    REQUIRE(e.complete);
    CHECK(e.largest_data_frame <= 20000);
  }
}

TEST_CASE("RFC 9113 5.2.1, 6.9, 6.9.2: the server never sends more DATA than the windows allow",
          "[h2][conformance][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  REQUIRE(c->send_preface({{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1000}}));
  REQUIRE(c->send_request(1, "GET", "/bytes/100000"));
  REQUIRE(c->send_request(3, "GET", "/bytes/100000"));
  auto count_until_quiet = [&](std::map<std::uint32_t, std::uint64_t>& got) {
    // No more DATA within a second: the server is blocked on flow control.
    while (auto f = c->read_frame(1000)) {
      if (f->type == NGHTTP2_DATA) got[f->stream] += f->payload.size();
    }
  };
  std::map<std::uint32_t, std::uint64_t> got;
  count_until_quiet(got);
  REQUIRE(!c->closed());
  CHECK(got[1] == 1000);  // exactly the stream window, not a byte more
  CHECK(got[3] == 1000);
  // Opening stream 1's window by 5000 lets exactly 5000 more through on stream 1.
  REQUIRE(c->send_window_update(1, 5000));
  count_until_quiet(got);
  CHECK(got[1] == 6000);
  CHECK(got[3] == 1000);
  // The connection window (65535) caps the sum over streams.
  REQUIRE(c->send_window_update(1, 100000));
  REQUIRE(c->send_window_update(3, 100000));
  count_until_quiet(got);
  CHECK(got[1] + got[3] == 65535);
  // SETTINGS_INITIAL_WINDOW_SIZE changes apply to open streams (6.9.2): nothing
  // breaks, and after a connection WINDOW_UPDATE both streams complete.
  REQUIRE(c->send_window_update(0, 1'000'000));
  count_until_quiet(got);
  CHECK(got[1] == 100000);
  CHECK(got[3] == 100000);
}

TEST_CASE("RFC 9113 5.1.2: streams beyond our SETTINGS_MAX_CONCURRENT_STREAMS are refused",
          "[h2][conformance][sanitize]") {
  test::Server srv({"--max-concurrent-streams", "2"});
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  REQUIRE(c->send_preface({{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 10}}));
  // Wait for the server's SETTINGS ACK so that its limit is in force.
  REQUIRE(c->read_until([](const Frame& f) { return f.type == NGHTTP2_SETTINGS && (f.flags & NGHTTP2_FLAG_ACK); }));
  // Two streams stay open (window 10 bytes); the third exceeds the limit.
  REQUIRE(c->send_request(1, "GET", "/bytes/100000"));
  REQUIRE(c->send_request(3, "GET", "/bytes/100000"));
  REQUIRE(c->send_request(5, "GET", "/bytes/100000"));
  auto r = c->read_until([](const Frame& f) { return f.type == NGHTTP2_RST_STREAM || f.type == NGHTTP2_GOAWAY; });
  REQUIRE(r);
  INFO(describe(*r));
  if (r->type == NGHTTP2_RST_STREAM) {
    CHECK(r->stream == 5);
    CHECK((r->error_code() == NGHTTP2_REFUSED_STREAM || r->error_code() == NGHTTP2_PROTOCOL_ERROR));
  } else {
    // nghttp2 escalates to a connection error once our SETTINGS are acknowledged,
    // which 5.4.1 allows ("MAY choose to treat a stream error as a connection error").
    CHECK(r->type == NGHTTP2_GOAWAY);
    CHECK(r->error_code() == NGHTTP2_PROTOCOL_ERROR);
    CHECK(r->last_stream_id() == 3);
  }
}

TEST_CASE(
    "RFC 9113 6.8: SIGTERM mid-transfer: GOAWAY 2^31-1 + PING, then GOAWAY with the last stream, "
    "in-flight stream completes, exit 0",
    "[h2][conformance][shutdown][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  // A small stream window keeps the transfer in flight until we open it.
  REQUIRE(c->send_preface({{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16384}}));
  REQUIRE(c->send_request(1, "GET", "/bytes/5m"));
  REQUIRE(c->send_request(3, "GET", "/bytes/5m"));
  REQUIRE(c->read_until([](const Frame& f) { return f.type == NGHTTP2_DATA && f.stream == 3; }));

  ::kill(srv.pid(), SIGTERM);
  auto notice = c->read_until([](const Frame& f) { return f.type == NGHTTP2_GOAWAY; });
  REQUIRE(notice);
  CHECK(notice->last_stream_id() == 0x7fffffffu);
  CHECK(notice->error_code() == NGHTTP2_NO_ERROR);
  // The PING that follows is answered by auto_ack; then the final GOAWAY.
  auto final_goaway = c->read_until([](const Frame& f) { return f.type == NGHTTP2_GOAWAY; });
  REQUIRE(final_goaway);
  CHECK(final_goaway->last_stream_id() == 3);
  CHECK(final_goaway->error_code() == NGHTTP2_NO_ERROR);
  // Both in-flight streams still complete, byte-exact.
  std::map<std::uint32_t, std::uint64_t> got;
  for (const auto& f : c->frames()) {
    if (f.type == NGHTTP2_DATA) got[f.stream] += f.payload.size();
  }
  REQUIRE(c->send_window_update(0, 20'000'000));
  REQUIRE(c->send_window_update(1, 10'000'000));
  REQUIRE(c->send_window_update(3, 10'000'000));
  int ended = 0;
  bool exact = true;
  while (ended < 2) {
    auto f = c->read_frame(60000);
    if (!f) break;
    if (f->type != NGHTTP2_DATA) continue;
    exact = exact && http::check_generated(got[f->stream], f->payload);
    got[f->stream] += f->payload.size();
    if (f->flags & NGHTTP2_FLAG_END_STREAM) ++ended;
  }
  CHECK(ended == 2);
  CHECK(exact);
  CHECK(got[1] == 5u << 20);
  CHECK(got[3] == 5u << 20);
  CHECK(c->wait_closed());
  CHECK(srv.signal_and_wait(0) == 0);  // already exiting: just wait for it
  CHECK(srv.log().find("sent GOAWAY NO_ERROR last-stream-id 3") != std::string::npos);
  // The listener is gone.
  CHECK(RawClient::connect(srv.port(), false) == nullptr);
}

TEST_CASE("RFC 9113 5.1.1: HEADERS opening a stream below one already opened is a connection error PROTOCOL_ERROR",
          "[h2][conformance][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  REQUIRE(c->send_preface());
  REQUIRE(c->send_request(5, "GET", "/health"));
  REQUIRE(c->send_request(3, "GET", "/health"));  // 3 < 5: not a legal new stream
  auto g = c->read_until([](const Frame& f) { return f.type == NGHTTP2_GOAWAY; });
  REQUIRE(g);
  INFO(describe(*g));
  CHECK(g->error_code() == NGHTTP2_PROTOCOL_ERROR);
  CHECK(g->last_stream_id() == 5);
  // No response for the illegal stream, and the connection ends.
  CHECK(c->wait_closed(10000));
  for (const auto& f : c->frames()) CHECK(f.stream != 3);
  INFO(srv.log());
  CHECK(srv.wait_for_log({"HEADERS on stream 3 after the client opened stream 5"}));
}

TEST_CASE("RFC 9113 5.1.1 without false alarms: trailers on an older open stream and in-order streams are served",
          "[h2][conformance][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  REQUIRE(c->send_preface());
  // Stream 1 stays open (a POST with a body to come), stream 3 opens after it.
  REQUIRE(c->send_request(1, "POST", "/echo", /*end_stream=*/false));
  REQUIRE(c->send_request(3, "GET", "/health"));
  auto r3 = read_response(*c, 3);
  CHECK(r3.complete);
  const std::string body = "hello";
  REQUIRE(c->send_frame(NGHTTP2_DATA, 0, 1, as_bytes(body)));
  // Trailers: a HEADERS on stream 1 (< 3), which is legal because 1 is open.
  REQUIRE(c->send_headers(1, {{"x-checksum", "none"}}, /*end_stream=*/true));
  auto r1 = read_response(*c, 1);
  CHECK(r1.complete);
  CHECK(r1.data_bytes == body.size());
  REQUIRE(c->send_request(5, "GET", "/health"));
  CHECK(read_response(*c, 5).complete);
  for (const auto& f : c->frames()) CHECK(f.type != NGHTTP2_GOAWAY);
}
