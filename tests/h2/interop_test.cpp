// Our server with real HTTP/2 peers from Debian: curl (built on nghttp2),
// nghttp and h2load, all over loopback TLS.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <random>
#include <thread>

#include "tests/h2/support.hpp"
#include "transport/http/message.hpp"

using namespace quiclab;
using namespace quiclab::test;

namespace {

std::vector<std::string> curl(const test::Server& srv, std::vector<std::string> args) {
  std::vector<std::string> v = {"curl", "--http2", "-sS", "--cacert", srv.cert().string(), "--max-time", "300"};
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

void write_random_file(const fs::path& file, std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string data(n, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  std::ofstream(file, std::ios::binary).write(data.data(), static_cast<std::streamsize>(n));
}

// The value of one series in a Prometheus text exposition; -1 when it is missing.
long metric_value(const std::string& exposition, const std::string& series) {
  auto at = exposition.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stol(exposition.substr(at + series.size() + 2));
}

std::string sha256(const fs::path& file) {
  auto r = run({"sha256sum", file.string()});
  return r.out.substr(0, 64);
}

}  // namespace

TEST_CASE("curl --http2: GET /bytes/N byte-exact, HEAD, Alt-Svc, content-length", "[h2][interop][sanitize]") {
  test::Server srv({"--alt-svc", "h3=\":4433\""});
  REQUIRE(srv.ok());
  TempDir tmp;
  auto out = tmp.path / "body";
  auto r = run(curl(srv, {"-o", out.string(), "-D", (tmp.path / "headers").string(), "-w", "%{http_version}",
                          srv.url("/bytes/300000")}));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "2");
  CHECK(file_matches_generated(out, 300000));
  auto headers = read_text(tmp.path / "headers");
  CHECK(headers.find("content-length: 300000") != std::string::npos);
  CHECK(headers.find("alt-svc: h3=\":4433\"") != std::string::npos);

  // HEAD: the GET's status and content-length, no body.
  auto h = run(curl(srv, {"-I", srv.url("/bytes/12345")}));
  REQUIRE(h.exit_code == 0);
  CHECK(h.out.find("HTTP/2 200") != std::string::npos);
  CHECK(h.out.find("content-length: 12345") != std::string::npos);
}

TEST_CASE("curl --http2: POST /echo returns the body byte-exact, too large gets 413", "[h2][interop][sanitize]") {
  test::Server srv({"--max-request-body", "4000000"});
  REQUIRE(srv.ok());
  TempDir tmp;
  auto in = tmp.path / "in";
  auto out = tmp.path / "out";
  write_random_file(in, 3'000'000, 7);
  auto r =
      run(curl(srv, {"--data-binary", "@" + in.string(), "-o", out.string(), "-w", "%{http_code}", srv.url("/echo")}));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "200");
  CHECK(sha256(in) == sha256(out));

  write_random_file(in, 5'000'000, 8);
  auto big =
      run(curl(srv, {"--data-binary", "@" + in.string(), "-o", "/dev/null", "-w", "%{http_code}", srv.url("/echo")}));
  INFO(big.err);
  CHECK(big.out == "413");
  CHECK(srv.wait_for_log({"exceeds max request body", "answering 413"}));
}

TEST_CASE("static files under --root: sha256 equal, escapes refused with 4xx", "[h2][interop][sanitize]") {
  TempDir tmp;
  auto root = tmp.path / "root";
  fs::create_directories(root / "sub");
  write_random_file(root / "sub" / "file.bin", 1'500'000, 3);
  std::ofstream(tmp.path / "secret.txt") << "secret\n";
  fs::create_symlink(tmp.path / "secret.txt", root / "link.txt");
  test::Server srv({}, root);
  REQUIRE(srv.ok());

  auto out = tmp.path / "got";
  auto r = run(curl(srv, {"-o", out.string(), srv.url("/sub/file.bin")}));
  REQUIRE(r.exit_code == 0);
  CHECK(sha256(out) == sha256(root / "sub" / "file.bin"));

  const std::pair<std::string, std::string> refused[] = {
      {"/../secret.txt", "400"},     {"/sub/../../secret.txt", "400"},
      {"/%2e%2e/secret.txt", "400"}, {"/sub%2f..%2f..%2fsecret.txt", "400"},
      {"/link.txt", "403"},          {"/missing", "404"}};
  for (const auto& [path, status] : refused) {
    auto e = run(curl(srv, {"--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", srv.url(path)}));
    INFO(path << ": " << e.err);
    CHECK(e.out == status);
  }
}

TEST_CASE("nghttp: 100 concurrent streams on one connection", "[h2][interop][sanitize]") {
  test::Server srv({"--max-concurrent-streams", "100"});
  REQUIRE(srv.ok());
  // -m 100: the same URL 100 times, all in flight at once; -s prints one stats line per stream.
  auto r = run({"nghttp", "-n", "-s", "-m", "100", srv.url("/bytes/50000")});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::size_t responses = 0, pos = 0;
  while ((pos = r.out.find("/bytes/50000", pos)) != std::string::npos) {
    ++responses;
    ++pos;
  }
  CHECK(responses == 100);
  CHECK(r.out.find(" 200 ") != std::string::npos);
}

TEST_CASE("h2load: 20000 requests over 10 connections x 10 streams all succeed", "[h2][interop]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto r = run({"h2load", "-n", "20000", "-c", "10", "-m", "10", srv.url("/bytes/1k")}, 300);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("20000 succeeded, 0 failed, 0 errored, 0 timeout") != std::string::npos);
  CHECK(r.out.find("status codes: 20000 2xx") != std::string::npos);
}

TEST_CASE("100 MB body: byte-exact through curl, nghttp with 64 KB windows", "[h2][interop]") {
  test::Server srv;
  REQUIRE(srv.ok());
  TempDir tmp;
  auto out = tmp.path / "body";
  auto r = run(curl(srv, {"-o", out.string(), srv.url("/bytes/100m")}), 300);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(file_matches_generated(out, 100ULL << 20));
  fs::remove(out);
  // -w/-W 16: 2^16-1 byte stream and connection windows: the server must pace
  // 100 MB through ~1600 window updates.
  auto n = run({"nghttp", "-n", "-s", "-w", "16", "-W", "16", srv.url("/bytes/100m")}, 300);
  INFO(n.err);
  CHECK(n.exit_code == 0);
  CHECK(n.out.find("/bytes/100m") != std::string::npos);
}

TEST_CASE("a slow reader of 100 MB does not balloon server memory", "[h2][interop]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto c = RawClient::connect(srv.port());
  REQUIRE(c);
  // Windows as large as HTTP/2 allows: only the socket back-pressure can stop the server.
  REQUIRE(c->send_preface({{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0x7fffffff}}));
  REQUIRE(c->send_window_update(0, 0x7fffffff - 65535));
  long before = srv.rss_kib();
  REQUIRE(c->send_request(1, "GET", "/bytes/100m"));
  // Read nothing for a while: the server must stop producing, not queue 100 MB.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  long during = srv.rss_kib();
  INFO("server RSS before " << before << " KiB, while stalled " << during << " KiB");
  CHECK(during - before < 32 * 1024);
  // Then read it all, checking every byte.
  std::uint64_t got = 0;
  bool exact = true, ended = false;
  while (!ended) {
    auto f = c->read_frame(60000);
    if (!f) break;
    if (f->type == NGHTTP2_DATA && f->stream == 1) {
      exact = exact && http::check_generated(got, f->payload);
      got += f->payload.size();
      ended = f->flags & NGHTTP2_FLAG_END_STREAM;
    }
  }
  CHECK(ended);
  CHECK(exact);
  CHECK(got == 100ULL << 20);
}

TEST_CASE("/metrics counts h2 connections, streams, requests and bytes", "[h2][interop][sanitize]") {
  test::Server srv;
  REQUIRE(srv.ok());
  auto r = run({"nghttp", "-n", "-m", "5", srv.url("/bytes/1000")});
  REQUIRE(r.exit_code == 0);
  auto m = run(curl(srv, {srv.url("/metrics")}));
  REQUIRE(m.exit_code == 0);
  INFO(m.out);
  auto value = [&](const std::string& metric) { return metric_value(m.out, metric); };
  CHECK(value("quiclab_connections_total{protocol=\"h2\"}") == 2);
  CHECK(value("quiclab_connections_active{protocol=\"h2\"}") >= 1);
  CHECK(value("quiclab_streams_total{protocol=\"h2\"}") == 6);
  CHECK(value("quiclab_requests_total{protocol=\"h2\"}") >= 5);
  CHECK(value("quiclab_responses_total{protocol=\"h2\",class=\"2xx\"}") >= 5);
  CHECK(value("quiclab_response_body_bytes_total{protocol=\"h2\"}") >= 5000);
  CHECK(value("quiclab_protocol_errors_total{protocol=\"h2\"}") == 0);
}

TEST_CASE("TLS records: one segment each for the first MiB of a connection, 16 KiB after, --tls-records full",
          "[h2][interop][sanitize]") {
  auto records = [](test::Server& srv) {
    auto m = run(curl(srv, {srv.url("/metrics")}));
    REQUIRE(m.exit_code == 0);
    return std::pair(metric_value(m.out, "quiclab_tls_records_total{protocol=\"h2\",size=\"small\"}"),
                     metric_value(m.out, "quiclab_tls_records_total{protocol=\"h2\",size=\"full\"}"));
  };
  TempDir tmp;
  // Loopback's MSS (about 64 KiB) holds a full record: --tcp-mss 1460 gives
  // Ethernet's segments (1448 bytes with timestamps), so records of 1426 bytes.
  {
    test::Server srv({"--tcp-mss", "1460"});
    REQUIRE(srv.ok());
    auto out = tmp.path / "dyn";
    auto r = run(curl(srv, {"-o", out.string(), srv.url("/bytes/3000000")}));
    REQUIRE(r.exit_code == 0);
    CHECK(file_matches_generated(out, 3000000));
    auto [small, full] = records(srv);
    INFO("small " << small << ", full " << full);
    // 1 MiB of plaintext (DATA frames and their headers) in 1426-byte records: 736.
    CHECK(small >= 730);
    CHECK(small <= 760);  // plus the few small writes (SETTINGS, HEADERS)
    // The remaining ~1.95 MB in 16 KiB records.
    CHECK(full >= 115);
    CHECK(full <= 150);  // a batch's last record may be short
  }
  {
    test::Server srv({"--tcp-mss", "1460", "--tls-records", "full"});
    REQUIRE(srv.ok());
    auto out = tmp.path / "full";
    auto r = run(curl(srv, {"-o", out.string(), srv.url("/bytes/3000000")}));
    REQUIRE(r.exit_code == 0);
    CHECK(file_matches_generated(out, 3000000));
    auto [small, full] = records(srv);
    CHECK(small == 0);
    CHECK(full >= 3000000 / 16384);
  }
  // A bad MSS is a clear start-up error.
  auto bad = run({QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--no-h3", "--tcp-mss", "50"});
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("TCP_MAXSEG 50"));
}
