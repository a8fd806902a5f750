// One table of requests sent to the real `quiclab serve` over HTTP/2 and over
// HTTP/3 (same process, same port number, same App), through the project's own
// clients; status, the fields that matter and the bodies must be the same on
// both sides. Protocol differences are the experiment; app differences are noise.
#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/h2/support.hpp"
#include "transport/core/uv.hpp"
#include "transport/h2/client.hpp"
#include "transport/h2/server.hpp"
#include "transport/h3/client.hpp"
#include "transport/h3/server.hpp"
#include "transport/http/app.hpp"
#include "transport/tls/tls.hpp"

using namespace quiclab;
namespace fs = std::filesystem;

namespace {

struct Req {
  std::string name;
  std::string method = "GET";
  std::string path;
  std::vector<http::Header> headers = {};
  std::shared_ptr<http::BodySource> body = nullptr;
  std::string scheme = {};  // empty: the URL's ("https")
};

struct Outcome {
  int status = 0;
  std::map<std::string, std::string> fields;
  std::size_t field_count(const std::string& n) const { return fields.count(n); }
  std::string body;
  std::uint64_t body_bytes = 0;
  std::optional<std::string> error;
  http::RequestTiming timing;
  std::optional<std::string> field(const std::string& n) const {
    auto it = fields.find(n);
    if (it == fields.end()) return std::nullopt;
    return it->second;
  }
};

std::string describe(const Outcome& o) {
  std::string s = "status " + std::to_string(o.status);
  for (const auto& [n, v] : o.fields) s += "\n  " + n + ": " + v.substr(0, 80);
  if (o.error) s += "\n  error: " + *o.error;
  s += "\n  body (" + std::to_string(o.body_bytes) + " bytes): " + o.body.substr(0, 120);
  return s;
}

std::unique_ptr<http::Client> make_client(http::Protocol p, uv::Loop& loop, std::uint16_t port, bool keep_body = true) {
  http::ClientOptions opt;
  opt.insecure = true;
  opt.keep_body = keep_body;
  opt.timeout_ms = 20000;
  auto origin = *http::Url::parse("https://127.0.0.1:" + std::to_string(port) + "/");
  if (p == http::Protocol::h2) return std::make_unique<h2::Client>(loop, origin, opt);
  return std::make_unique<h3::Client>(loop, origin, opt);
}

/// Sends every request on one connection of protocol p (all in flight at once)
/// and returns the outcomes in order.
std::vector<Outcome> fetch_all(http::Protocol p, std::uint16_t port, const std::vector<Req>& reqs,
                               bool keep_body = true) {
  uv::Loop loop;
  auto client = make_client(p, loop, port, keep_body);
  std::vector<Outcome> out(reqs.size());
  std::size_t left = reqs.size();
  client->connect([](Status) {});
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    http::ClientRequest r;
    r.method = reqs[i].method;
    r.url = *http::Url::parse("https://127.0.0.1:" + std::to_string(port) + reqs[i].path);
    if (!reqs[i].scheme.empty()) r.url.scheme = reqs[i].scheme;
    r.headers = reqs[i].headers;
    r.body = reqs[i].body;
    client->submit(std::move(r), nullptr, [&, i](http::ClientResponse&& resp) {
      auto& o = out[i];
      o.status = resp.status;
      for (auto& h : resp.headers) {
        if (o.fields.count(h.name))
          o.fields[h.name] += ", " + h.value;  // repeated: joined, so counts show
        else
          o.fields[h.name] = h.value;
      }
      o.body.assign(resp.body.begin(), resp.body.end());
      o.body_bytes = resp.body_bytes;
      if (resp.error) o.error = resp.error->message;
      o.timing = resp.timing;
      if (--left == 0) client->close([] {});
    });
  }
  loop.run();
  client.reset();
  loop.close();
  return out;
}

/// The h2 side of the oversized-header row: our h2 client (nghttp2) honours the
/// server's SETTINGS_MAX_HEADER_LIST_SIZE and never sends such a request
/// (REFUSED_STREAM locally), so raw frames carry it; then a GET /health on the
/// same connection. Returns {the row's outcome, the health outcome}.
std::vector<Outcome> raw_h2(std::uint16_t port, const std::string& path, const std::vector<http::Header>& extra) {
  std::vector<Outcome> out(2);
  std::string why;
  auto c = test::RawClient::connect(port, true, &why);
  if (!c || !c->send_preface()) {
    out[0].error = out[1].error = "raw h2 connect failed: " + why;
    return out;
  }
  std::vector<std::pair<std::string, std::string>> fields;
  for (const auto& h : extra) fields.emplace_back(h.name, h.value);
  c->send_request(1, "GET", path, true, fields);
  c->send_request(3, "GET", "/health", true);
  for (int i = 0; i < 200; ++i) {
    auto f = c->read_frame(10000);
    if (!f) break;
    if (f->stream != 1 && f->stream != 3) continue;
    auto& o = out[f->stream == 1 ? 0 : 1];
    if (f->type == NGHTTP2_HEADERS) {
      for (auto& [n, v] : c->decode_headers(*f)) {
        if (n == ":status")
          o.status = std::stoi(v);
        else
          o.fields[n] = v;
      }
    } else if (f->type == NGHTTP2_DATA) {
      o.body.append(f->payload.begin(), f->payload.end());
      o.body_bytes += f->payload.size();
    } else if (f->type == NGHTTP2_RST_STREAM) {
      o.error = "RST_STREAM " + std::to_string(f->error_code());
    }
    bool end = (f->flags & NGHTTP2_FLAG_END_STREAM) || f->type == NGHTTP2_RST_STREAM;
    if (end && f->stream == 1) out[0].timing.complete = 1;
    if (end && f->stream == 3) out[1].timing.complete = 1;
    if (out[0].timing.complete && out[1].timing.complete) break;
  }
  return out;
}

std::shared_ptr<http::BodySource> text_body(std::string_view s) { return std::make_shared<http::MemoryBody>(s); }

std::string port_text(const test::Server& s) { return std::to_string(s.port()); }

}  // namespace

TEST_CASE("parity h2 and h3: one table of requests, the same answers field by field", "[parity][sanitize]") {
  test::TempDir root;
  std::ofstream(root.path / "hello.txt") << "hello, parity\n";
  // A small header limit (for both protocols) keeps the oversized request in one HEADERS frame.
  test::Server srv({"--max-request-body", "1048576", "--max-header-list-size", "4096"}, root.path);
  REQUIRE(srv.ok());
  const std::string alt_svc = "h3=\":" + port_text(srv) + "\"";

  const std::string big(5000, 'h');  // over the 4096-byte header section limit, on both
  std::vector<Req> table = {
      {"GET /bytes/1k", "GET", "/bytes/1k"},
      {"HEAD /bytes/1k", "HEAD", "/bytes/1k"},
      {"GET static file", "GET", "/hello.txt"},
      {"HEAD static file", "HEAD", "/hello.txt"},
      {"POST /echo", "POST", "/echo", {{"content-type", "text/x-parity"}}, text_body("echo me, both ways")},
      {"404", "GET", "/no/such/file"},
      {"path escape", "GET", "/%2e%2e/%2e%2e/etc/passwd"},
      {"path escape, plain dots", "GET", "/a/../../etc/passwd"},
      {"/bytes over the limit", "GET", "/bytes/17g"},
      {"bad /bytes size", "GET", "/bytes/12q"},
      {"method not allowed", "DELETE", "/echo"},
      {"oversized header", "GET", "/health", {{"x-big", big}}},
      {"body over --max-request-body", "POST", "/echo", {}, std::make_shared<http::GeneratedBody>(3 * 1024 * 1024)},
      {"content-length larger than the body", "POST", "/echo", {{"content-length", "5"}}},
      {"/health", "GET", "/health"},
      {"/metrics", "GET", "/metrics"},
  };
  // Every request shares its connection with a GET /health sent with it: a bad
  // request must cost its stream only, never the connection.
  std::vector<Outcome> h2, h3;
  for (const auto& row : table) {
    auto a = row.name == "oversized header"
                 ? raw_h2(srv.port(), row.path, row.headers)
                 : fetch_all(http::Protocol::h2, srv.port(), {row, {"health", "GET", "/health"}});
    auto b = fetch_all(http::Protocol::h3, srv.port(), {row, {"health", "GET", "/health"}});
    INFO(row.name << "\n h2 health: " << describe(a[1]) << "\n h3 health: " << describe(b[1]));
    CHECK(a[1].status == 200);
    CHECK(b[1].status == 200);
    h2.push_back(a[0]);
    h3.push_back(b[0]);
  }
  INFO(srv.log().substr(srv.log().size() > 6000 ? srv.log().size() - 6000 : 0));

  for (std::size_t i = 0; i < table.size(); ++i) {
    const auto& a = h2[i];
    const auto& b = h3[i];
    INFO(table[i].name << "\n--- h2: " << describe(a) << "\n--- h3: " << describe(b));
    CHECK(a.status == b.status);
    CHECK(a.error.has_value() == b.error.has_value());
    CHECK(a.field("content-length") == b.field("content-length"));
    CHECK(a.field("content-type") == b.field("content-type"));
    CHECK(a.field("alt-svc") == b.field("alt-svc"));
    CHECK(a.field("server") == b.field("server"));
    if (a.status != 0) CHECK(a.field("alt-svc") == std::optional<std::string>(alt_svc));
    if (table[i].path != "/metrics") CHECK(a.body == b.body);
  }

  auto row = [&](const std::string& name) -> std::size_t {
    for (std::size_t i = 0; i < table.size(); ++i) {
      if (table[i].name == name) return i;
    }
    FAIL("no row " << name);
    return 0;
  };
  // What each row must be, on both sides.
  for (const auto* side : {&h2, &h3}) {
    const auto& o = *side;
    const char* which = side == &h2 ? "h2" : "h3";
    INFO(which);
    {
      const auto& r = o[row("GET /bytes/1k")];
      CHECK(r.status == 200);
      CHECK(r.field("content-length") == std::optional<std::string>("1024"));
      CHECK(r.field("content-type") == std::optional<std::string>("application/octet-stream"));
      CHECK(r.body.size() == 1024);
      CHECK(http::check_generated(0, as_bytes(r.body)));
    }
    {
      const auto& r = o[row("HEAD /bytes/1k")];
      INFO(describe(r));
      CHECK(r.status == 200);
      CHECK(!r.error);
      CHECK(r.field("content-length") == std::optional<std::string>("1024"));
      CHECK(r.body_bytes == 0);
    }
    {
      const auto& r = o[row("HEAD static file")];
      CHECK(r.status == 200);
      CHECK(r.field("content-length") == std::optional<std::string>("14"));
      CHECK(r.field("content-type") == std::optional<std::string>("text/plain; charset=utf-8"));
      CHECK(r.body_bytes == 0);
    }
    CHECK(o[row("GET static file")].body == "hello, parity\n");
    {
      const auto& r = o[row("POST /echo")];
      CHECK(r.status == 200);
      CHECK(r.body == "echo me, both ways");
      CHECK(r.field("content-type") == std::optional<std::string>("text/x-parity"));
    }
    CHECK(o[row("404")].status == 404);
    CHECK(o[row("path escape")].status == 400);
    CHECK(o[row("path escape, plain dots")].status >= 400);
    CHECK(o[row("/bytes over the limit")].status == 413);
    CHECK(o[row("bad /bytes size")].status == 400);
    CHECK(o[row("method not allowed")].status == 405);
    CHECK(o[row("oversized header")].status == 431);
    {
      // 413 before the upload ended: the response came first, and the client was
      // told to stop (it never finished sending the 3 MiB).
      const auto& r = o[row("body over --max-request-body")];
      INFO(describe(r));
      CHECK(r.status == 413);
      CHECK(r.timing.first_byte != 0);
      CHECK((r.timing.request_sent == 0 || r.timing.first_byte <= r.timing.request_sent));
    }
    {
      // A body shorter than its content-length: the stream's error (RST_STREAM
      // PROTOCOL_ERROR / H3_MESSAGE_ERROR) or 400, never a response to the request.
      const auto& r = o[row("content-length larger than the body")];
      INFO(describe(r));
      CHECK((r.error.has_value() || r.status == 400));
      CHECK(r.status != 200);
    }
    {
      const auto& r = o[row("/metrics")];
      CHECK(r.status == 200);
      CHECK(r.field("content-type") == std::optional<std::string>("text/plain; version=0.0.4; charset=utf-8"));
      CHECK(r.body.find("quiclab_requests_total{protocol=\"h3\"}") != std::string::npos);
      CHECK(r.body.find("quiclab_requests_total{protocol=\"h2\"}") != std::string::npos);
    }
  }
}

TEST_CASE("parity h2 and h3: the server sees one user-agent and the URL's :scheme from both clients",
          "[parity][sanitize]") {
  // In process, on one loop: both servers with a route that shows the request.
  test::TempDir dir;
  auto certs = tls::generate_self_signed(dir.path / "cert");
  REQUIRE(certs.ok());
  uv::Loop loop;
  http::Metrics metrics;
  http::App app({}, metrics);
  app.route("GET", "/request", [](const http::Request& r) {
    std::string text = "scheme=" + r.scheme + "\n";
    for (const auto& h : r.headers) text += h.name + "=" + h.value + "\n";
    return http::Response::text(200, text);
  });
  h3::ServerConfig c3;
  c3.cert_file = certs->cert;
  c3.key_file = certs->key;
  c3.quic.shutdown_timeout = kNanosPerSecond;
  auto u3 = quic::open_udp(loop, *SocketAddress::from_ip("127.0.0.1", 0));
  REQUIRE(u3);
  h3::Server s3(loop, app, c3, **u3);
  REQUIRE(s3.start().ok());
  h2::ServerConfig c2;
  c2.cert = certs->cert;
  c2.key = certs->key;
  c2.listen = *SocketAddress::from_ip("127.0.0.1", s3.local_address().port());
  h2::Server s2(loop, app, c2);
  REQUIRE(s2.start().ok());
  const auto port = s3.local_address().port();

  std::map<std::string, std::string> seen;  // protocol + case -> body
  std::size_t left = 0;
  std::vector<std::unique_ptr<http::Client>> clients;
  for (auto p : {http::Protocol::h2, http::Protocol::h3}) {
    clients.push_back(make_client(p, loop, port));
    auto* c = clients.back().get();
    c->connect([](Status) {});
    for (int with_ua = 0; with_ua < 2; ++with_ua) {
      http::ClientRequest r;
      r.url = *http::Url::parse("https://127.0.0.1:" + std::to_string(port) + "/request");
      r.url.scheme = with_ua ? "https" : "http";  // what the request says, not what the client assumes
      if (with_ua) r.headers.push_back({"user-agent", "parity-test/1"});
      std::string key = std::string(http::to_string(p)) + (with_ua ? " own ua" : " default ua");
      ++left;
      c->submit(std::move(r), nullptr, [&, key, c](http::ClientResponse&& resp) {
        seen[key] = resp.error ? "error: " + resp.error->message
                               : std::to_string(resp.status) + "\n" + std::string(resp.body.begin(), resp.body.end());
        if (--left == 0) {
          for (auto& cl : clients) cl->close([] {});
          s2.shutdown([] {});
          s3.shutdown([] {});
        }
      });
    }
  }
  loop.run();
  clients.clear();
  for (const auto& [key, body] : seen) {
    INFO(key << ":\n" << body);
    auto count = [&](const std::string& needle) {
      std::size_t n = 0;
      for (auto at = body.find(needle); at != std::string::npos; at = body.find(needle, at + 1)) ++n;
      return n;
    };
    CHECK(body.rfind("200\n", 0) == 0);
    CHECK(count("\nuser-agent=") == 1);
    if (key.find("own ua") != std::string::npos) {
      CHECK(count("\nuser-agent=parity-test/1\n") == 1);
      CHECK(count("scheme=https\n") == 1);
    } else {
      CHECK(count("scheme=http\n") == 1);
    }
  }
  CHECK(seen.size() == 4);
}

namespace {
/// A field of /proc/PID/status in KiB (VmRSS, VmHWM), 0 if unknown.
long proc_status_kib(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  }
  return 0;
}
}  // namespace

TEST_CASE("parity h2 and h3: over the body budget new bodies get 503, the server stays up, memory bounded",
          "[parity][budget][sanitize]") {
  // 16 streams x 8 MiB declared per connection would pin 128 MiB (twice, with
  // /echo's copy); the budget admits 24 MiB at a time.
  constexpr std::uint64_t kBody = 8 * 1024 * 1024;
  constexpr std::uint64_t kBudget = 24 * 1024 * 1024;
  constexpr int kStreams = 16;
  test::Server srv({"--max-request-body", std::to_string(2 * kBody), "--max-buffered-bodies", std::to_string(kBudget),
                    "--max-buffered-bodies-per-connection", std::to_string(kBudget)});
  REQUIRE(srv.ok());
  const long rss_before = proc_status_kib(srv.pid(), "VmRSS");
  auto body = std::make_shared<http::GeneratedBody>(kBody);  // shared, read-only: no client copies
  for (auto p : {http::Protocol::h2, http::Protocol::h3}) {
    INFO(http::to_string(p));
    std::vector<Req> reqs;
    for (int i = 0; i < kStreams; ++i) reqs.push_back({"echo", "POST", "/echo", {}, body});
    auto out = fetch_all(p, srv.port(), reqs, false);
    int ok = 0, busy = 0, other = 0;
    for (const auto& o : out) {
      INFO(describe(o));
      if (o.status == 200 && o.body_bytes == kBody)
        ++ok;
      else if (o.status == 503)
        ++busy;
      else
        ++other;
    }
    INFO(ok << " x 200, " << busy << " x 503, " << other << " other");
    CHECK(ok >= 1);
    CHECK(busy >= 1);
    CHECK(other == 0);
    // Still up, and the budget came back: one more body fits.
    auto after = fetch_all(p, srv.port(), {{"echo", "POST", "/echo", {}, body}, {"health", "GET", "/health"}}, false);
    CHECK(after[0].status == 200);
    CHECK(after[0].body_bytes == kBody);
    CHECK(after[1].status == 200);
  }
  const long peak = proc_status_kib(srv.pid(), "VmHWM");
  // Without the budget the peak grows by about 2 x 16 x 8 MiB = 256 MiB per protocol.
  INFO("server VmRSS before " << rss_before << " KiB, peak (VmHWM) " << peak << " KiB");
  CHECK(peak > 0);
#ifndef __SANITIZE_ADDRESS__
  // Not under ASan: its quarantine keeps freed memory resident (quiclab serve is
  // built the same way as this test).
  CHECK(peak - rss_before < 3 * static_cast<long>(kBudget / 1024) + 32 * 1024);
#endif
  WARN("budget test: server RSS before " << rss_before / 1024 << " MiB, peak " << peak / 1024 << " MiB");
  CHECK(srv.signal_and_wait(SIGTERM) == 0);
}
