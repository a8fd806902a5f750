// Our HTTP/3 server against Debian's gtlsclient (ngtcp2 0.12.1 + GnuTLS), one
// case per QUIC interop-runner test, over loopback. Each case checks what the
// client downloaded (byte-exact against the /bytes/N generator) and what the
// server counted (handshakes, Retry, resumption, 0-RTT, key updates, path
// validations, the amplification ratio).
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "tests/h3/support.hpp"

using namespace quiclab;
using namespace quiclab::test;
namespace fs = std::filesystem;

namespace {

constexpr double kClientTimeout = 120;  // generous: never fail because the machine is slow

std::string size_path(std::uint64_t n) { return "/bytes/" + std::to_string(n); }

void require_clean_stop(H3ServerHarness& server) {
  server.stop();
  CHECK(server.leaked_handles().empty());
  CHECK(server.stats().amplification_violations == 0);
}

}  // namespace

TEST_CASE("h3 interop: handshake", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-handshake");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  auto r = run_process(gtlsclient(server, {"--download=" + dl.string()}, {"/health"}), kClientTimeout,
                       tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  std::ifstream in(dl / "health");
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(body.rfind("ok", 0) == 0);
  require_clean_stop(server);
  CHECK(server.stats().handshakes_completed == 1);
  CHECK(server.h3_counters().requests_total == 1);
  CHECK(server.h3_counters().responses_2xx == 1);
}

TEST_CASE("h3 interop: transfer (several streams, small flow-control windows)", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-transfer");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  std::vector<std::string> paths;
  for (int i = 0; i < 4; ++i) paths.push_back(size_path(2'000'000 + i));
  // 64 KiB per stream and 256 KiB per connection: the server must wait for
  // MAX_STREAM_DATA / MAX_DATA many times.
  auto r = run_process(gtlsclient(server,
                                  {"--download=" + dl.string(), "--max-data=256K", "--max-stream-data-bidi-local=64K",
                                   "--max-window=256K", "--max-stream-window=64K"},
                                  paths),
                       kClientTimeout, tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  for (int i = 0; i < 4; ++i) CHECK(is_generated_body(dl / std::to_string(2'000'000 + i), 2'000'000 + i));
  require_clean_stop(server);
}

TEST_CASE("h3 interop: multiplexing (2000 small requests on one connection)", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-multiplexing");
  auto r = run_process(gtlsclient(server, {"-n", "2000"}, {"/bytes/1000"}), kClientTimeout, tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  require_clean_stop(server);
  CHECK(server.stats().handshakes_completed == 1);
  CHECK(server.h3_counters().requests_total == 2000);
  CHECK(server.h3_counters().responses_2xx == 2000);
}

TEST_CASE("h3 interop: 100 concurrent streams, byte-exact", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-100streams");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  std::vector<std::string> paths;
  for (int i = 0; i < 100; ++i) paths.push_back(size_path(100'000 + i));
  auto r =
      run_process(gtlsclient(server, {"--download=" + dl.string()}, paths), kClientTimeout, tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  int good = 0;
  for (int i = 0; i < 100; ++i) good += is_generated_body(dl / std::to_string(100'000 + i), 100'000 + i) ? 1 : 0;
  CHECK(good == 100);
  require_clean_stop(server);
  CHECK(server.h3_counters().requests_total == 100);
}

TEST_CASE("h3 interop: a 50 MB body arrives byte-exact", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-50m");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  auto r = run_process(gtlsclient(server, {"--download=" + dl.string()}, {"/bytes/50m"}), kClientTimeout,
                       tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  CHECK(is_generated_body(dl / "50m", 50ULL * 1024 * 1024));
  require_clean_stop(server);
  CHECK(server.h3_counters().response_body_bytes == 50ULL * 1024 * 1024);
}

TEST_CASE("h3 interop: retry", "[interop]") {
  h3::ServerConfig config;
  config.quic.retry = true;
  H3ServerHarness server(config);
  REQUIRE(server.ok());
  TempDir tmp("h3-retry");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  auto r = run_process(gtlsclient(server, {"--download=" + dl.string()}, {"/bytes/10000"}), kClientTimeout,
                       tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  CHECK(is_generated_body(dl / "10000", 10000));
  require_clean_stop(server);
  CHECK(server.stats().retries_sent == 1);
  CHECK(server.stats().tokens_accepted == 1);
  CHECK(server.stats().handshakes_completed == 1);
}

TEST_CASE("h3 interop: resumption, 0-RTT and NEW_TOKEN", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-zerortt");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  std::vector<std::string> opts{"--download=" + dl.string(), "--session-file=" + (tmp.path() / "session").string(),
                                "--tp-file=" + (tmp.path() / "tp").string(),
                                "--token-file=" + (tmp.path() / "token").string()};
  auto first = run_process(gtlsclient(server, opts, {"/bytes/1000"}), kClientTimeout, tmp.path() / "first.log");
  INFO(first.log);
  REQUIRE(first.exit_code == 0);
  REQUIRE(fs::exists(tmp.path() / "session"));
  REQUIRE(fs::exists(tmp.path() / "tp"));
  // gtlsclient writes the token file when a NEW_TOKEN frame arrives. (It
  // cannot read that file back in 0.12.1, so token reuse is not checked here.)
  CHECK(fs::file_size(tmp.path() / "token") > 0);
  auto second = run_process(gtlsclient(server, opts, {"/bytes/2000"}), kClientTimeout, tmp.path() / "second.log");
  INFO(second.log);
  REQUIRE(second.exit_code == 0);
  CHECK(is_generated_body(dl / "2000", 2000));
  require_clean_stop(server);
  CHECK(server.stats().handshakes_completed == 2);
  CHECK(server.stats().resumed == 1);
  CHECK(server.stats().early_data_accepted == 1);
}

TEST_CASE("h3 interop: http3 (several files, byte-exact)", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-http3");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  auto r = run_process(gtlsclient(server, {"--download=" + dl.string()}, {"/bytes/1", "/bytes/70000", "/bytes/1m"}),
                       kClientTimeout, tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  CHECK(is_generated_body(dl / "1", 1));
  CHECK(is_generated_body(dl / "70000", 70000));
  CHECK(is_generated_body(dl / "1m", 1024 * 1024));
  require_clean_stop(server);
}

TEST_CASE("h3 interop: keyupdate (client-initiated key update mid-transfer)", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-keyupdate");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  // The update comes 1 ms after the handshake, into a transfer held back by
  // small windows. On a quiet machine 8 MB at 128 KiB windows took under
  // 20 ms, so a later update found the transfer over; 32 MB at 64 KiB lasts
  // long enough however fast the machine.
  auto r = run_process(gtlsclient(server,
                                  {"--download=" + dl.string(), "--key-update=1ms", "--max-data=64K",
                                   "--max-window=64K", "--max-stream-data-bidi-local=64K", "--max-stream-window=64K"},
                                  {"/bytes/32m"}),
                       kClientTimeout, tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  CHECK(is_generated_body(dl / "32m", 32 * 1024 * 1024));
  require_clean_stop(server);
  CHECK(server.stats().key_updates >= 1);
}

TEST_CASE("h3 interop: rebind-port (NAT rebinding) and a changed client address", "[interop]") {
  // The client changes its local port 20 ms into an 8 MB upload (POST /echo):
  // with --nat-rebinding silently (the server sees the new address and must
  // validate it), else as an active migration with its own path validation.
  // An upload keeps the client sending after the change; a download would
  // leave the server talking to the old port, unheard.
  for (bool nat_rebinding : {true, false}) {
    DYNAMIC_SECTION((nat_rebinding ? "nat rebinding" : "client migration")) {
      H3ServerHarness server;
      REQUIRE(server.ok());
      TempDir tmp("h3-rebind");
      auto dl = tmp.path() / "dl";
      fs::create_directory(dl);
      const std::uint64_t size = 8 * 1024 * 1024;
      {
        std::vector<std::uint8_t> body(size);
        for (std::uint64_t i = 0; i < size; ++i) body[i] = http::generated_byte(i);
        std::ofstream(tmp.path() / "upload", std::ios::binary)
            .write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size()));
      }
      std::vector<std::string> opts{"--download=" + dl.string(), "--change-local-addr=20ms", "-m", "POST",
                                    "--data=" + (tmp.path() / "upload").string()};
      if (nat_rebinding) opts.push_back("--nat-rebinding");
      auto r = run_process(gtlsclient(server, opts, {"/echo"}), kClientTimeout, tmp.path() / "client.log");
      INFO(r.log);
      REQUIRE(r.exit_code == 0);
      CHECK(is_generated_body(dl / "echo", size));
      require_clean_stop(server);
      // The server validated the new path before trusting it.
      CHECK(server.stats().path_validations >= 1);
    }
  }
}

TEST_CASE("h3 interop: transferloss and handshakeloss", "[interop]") {
  // The server drops a half-open connection after 10 s by default (a bound on
  // handshake state); at 30 % loss each way about one handshake in a hundred
  // needs longer (PTO backoff), and the server's CONNECTION_CLOSE then ends
  // it. Here the point is recovery, so both ends get a minute. Both ends also
  // start from a 20 ms RTT estimate instead of RFC 9002's 333 ms: from 333 ms
  // the doubling PTO allows only about six retransmissions of a flight in that
  // minute, and 1 run in 10 to 15 had one handshake that never completed
  // (measured with 1452- and 16384-byte datagrams alike); from 20 ms there is
  // room for about ten.
  h3::ServerConfig config;
  config.quic.handshake_timeout = 60 * kNanosPerSecond;
  config.quic.initial_rtt = 20 * NGTCP2_MILLISECONDS;
  H3ServerHarness server(config);
  REQUIRE(server.ok());
  TempDir tmp("h3-loss");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  SECTION("transferloss: 2% each way during a 4 MB transfer") {
    auto r = run_process(
        gtlsclient(server, {"--download=" + dl.string(), "--tx-loss=0.02", "--rx-loss=0.02"}, {"/bytes/4m"}),
        kClientTimeout, tmp.path() / "client.log");
    INFO(r.log);
    REQUIRE(r.exit_code == 0);
    CHECK(is_generated_body(dl / "4m", 4 * 1024 * 1024));
  }
  SECTION("handshakeloss: 30% each way, 10 short connections") {
    int ok = 0;
    for (int i = 0; i < 10; ++i) {
      // gtlsclient also gives up on a handshake after 10 s by default.
      auto r = run_process(gtlsclient(server,
                                      {"--download=" + dl.string(), "--tx-loss=0.3", "--rx-loss=0.3",
                                       "--handshake-timeout=60s", "--timeout=60s", "--initial-rtt=20ms"},
                                      {size_path(1000 + i)}),
                           kClientTimeout, tmp.path() / "client.log");
      if (r.exit_code == 0 && is_generated_body(dl / std::to_string(1000 + i), 1000 + i)) {
        ++ok;
      } else {
        UNSCOPED_INFO("connection " << i << " failed (exit " << r.exit_code << "):\n" << r.log);
      }
    }
    CHECK(ok == 10);
  }
  require_clean_stop(server);
}

TEST_CASE("h3 interop: amplificationlimit (never more than 3x before validation)", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-amplification");
  // The client hears nothing from the server (100% receive loss): the server
  // keeps retransmitting its first flight to an unvalidated address and must
  // stay within 3x of what the client sent.
  auto r = run_process(gtlsclient(server, {"--rx-loss=1", "--handshake-timeout=3s", "--timeout=3s"}, {"/health"}),
                       kClientTimeout, tmp.path() / "client.log");
  INFO(r.log);
  CHECK(!r.timed_out);
  server.stop();
  CHECK(server.stats().handshakes_completed == 0);
  CHECK(server.stats().max_unvalidated_ratio > 1.0);  // the check measured a real first flight
  CHECK(server.stats().max_unvalidated_ratio <= 3.0);
  CHECK(server.stats().amplification_violations == 0);
}

TEST_CASE("h3 interop: IPv6 on ::1", "[interop]") {
  H3ServerHarness server({}, "::1");
  REQUIRE(server.ok());
  TempDir tmp("h3-ipv6");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  auto r = run_process(gtlsclient(server, {"--download=" + dl.string()}, {"/bytes/300000"}), kClientTimeout,
                       tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  CHECK(is_generated_body(dl / "300000", 300000));
  require_clean_stop(server);
  CHECK(server.stats().handshakes_completed == 1);
}

TEST_CASE("h3 interop: version negotiation", "[interop]") {
  H3ServerHarness server;
  REQUIRE(server.ok());
  TempDir tmp("h3-vn");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  // The client starts with a reserved version, learns v1 from our Version
  // Negotiation packet and connects with it.
  auto r = run_process(
      gtlsclient(server, {"--download=" + dl.string(), "-v", "0x1a2a3a4a", "--preferred-versions=v1"}, {"/bytes/1000"}),
      kClientTimeout, tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  CHECK(is_generated_body(dl / "1000", 1000));
  require_clean_stop(server);
  CHECK(server.stats().version_negotiations_sent >= 1);
}

TEST_CASE("h3 interop: static files from a root (copied through a bounded buffer)", "[interop]") {
  TempDir root("h3-root");
  // Files have no stable view: the server reads them in chunks and frees each
  // chunk when the client acknowledges it. Random content, compared exactly.
  std::mt19937 rng(99);
  Bytes content(3 * 1024 * 1024 + 17);
  for (auto& b : content) b = static_cast<std::uint8_t>(rng());
  std::ofstream(root.path() / "blob.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
  http::AppConfig app;
  app.root = root.path();
  H3ServerHarness server({}, "127.0.0.1", app);
  REQUIRE(server.ok());
  TempDir tmp("h3-static");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  auto r =
      run_process(gtlsclient(server, {"--download=" + dl.string()}, {"/blob.bin", "/missing.txt", "/../etc/passwd"}),
                  kClientTimeout, tmp.path() / "client.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  std::ifstream in(dl / "blob.bin", std::ios::binary);
  Bytes got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(got == content);
  require_clean_stop(server);
  CHECK(server.h3_counters().responses_2xx == 1);
  CHECK(server.h3_counters().responses_4xx == 2);
}

TEST_CASE("h3: our client keeps the NEW_TOKEN token and skips Retry next time", "[interop]") {
  // gtlsclient 0.12.1 cannot read a token back, so this runs our client: the
  // first connection to a --retry server goes through a Retry round trip and
  // receives NEW_TOKEN; the second presents that token in its Initial and the
  // server accepts it without a Retry.
  h3::ServerConfig config;
  config.quic.retry = true;
  H3ServerHarness server(config);
  REQUIRE(server.ok());
  TempDir tmp("h3-newtoken");
  auto session = (tmp.path() / "session").string();
  for (int i = 0; i < 2; ++i) {
    auto r = run_process({QUICLAB_BIN, "get", "--h3", "--insecure", "--json", "--session-file", session, "-o",
                          (tmp.path() / "body").string(), server.url("/bytes/3000")},
                         kClientTimeout, tmp.path() / ("client" + std::to_string(i) + ".log"));
    INFO(r.log);
    REQUIRE(r.exit_code == 0);
    CHECK(is_generated_body(tmp.path() / "body", 3000));
  }
  std::ifstream in(session);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("\"token\": \"") != std::string::npos);  // the JSON session file holds the token
  require_clean_stop(server);
  CHECK(server.stats().handshakes_completed == 2);
  CHECK(server.stats().retries_sent == 1);     // only the first connection
  CHECK(server.stats().tokens_accepted == 2);  // its Retry token, then the NEW_TOKEN token
}

TEST_CASE("h3: the idle timeout closes a silent connection and the server serves the next", "[interop]") {
  // The server offers a 1 s max_idle_timeout; gtlsclient completes the
  // handshake, then holds its request back for 4 s (--delay-stream), so the
  // connection carries nothing after the handshake and both ends must drop it.
  h3::ServerConfig config;
  config.quic.idle_timeout = 1 * kNanosPerSecond;
  H3ServerHarness server(config);
  REQUIRE(server.ok());
  TempDir tmp("h3-idle");
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  auto silent = run_process(gtlsclient(server, {"--download=" + dl.string(), "--delay-stream=4s"}, {"/bytes/1000"}),
                            kClientTimeout, tmp.path() / "silent.log");
  INFO(silent.log);
  CHECK_FALSE(fs::exists(dl / "1000"));  // the request never went out on that connection
  // The server's own idle timer ends its side (not the shutdown below).
  for (int i = 0; i < 1500 && server.connections_now() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(server.connections_now() == 0);
  // The next client is served as usual.
  auto next = run_process(gtlsclient(server, {"--download=" + dl.string()}, {"/bytes/2000"}), kClientTimeout,
                          tmp.path() / "next.log");
  INFO(next.log);
  CHECK(next.exit_code == 0);
  CHECK(is_generated_body(dl / "2000", 2000));
  require_clean_stop(server);
  CHECK(server.stats().idle_timeouts == 1);
  CHECK(server.stats().handshakes_completed == 2);
  CHECK(server.h3_counters().requests_total == 1);
}
