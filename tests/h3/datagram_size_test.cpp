// Datagram sizes (transport/quic/path_mtu.hpp) through real sockets: between
// our client binary and our server on loopback both directions use datagrams
// above ngtcp2's 1452-byte default; --max-udp-payload (or the server's forced
// size) caps what each side sends and, through the max_udp_payload_size
// transport parameter, what the other side sends too. Bodies stay byte-exact.
#include <catch2/catch.hpp>
#include <fstream>

#include "tests/h3/support.hpp"
#include "transport/http/message.hpp"
#include "transport/quic/path_mtu.hpp"

using namespace quiclab;
using namespace quiclab::test;
namespace fs = std::filesystem;

namespace {

constexpr double kClientTimeout = 120;
constexpr std::uint64_t kDown = 2'000'000;
constexpr std::uint64_t kUp = 1'000'000;

/// Writes the /bytes/N body to `file` (the echoed upload is then checked against the generator).
void write_generated(const fs::path& file, std::uint64_t n) {
  std::vector<char> body(n);
  for (std::uint64_t i = 0; i < n; ++i) body[i] = static_cast<char>(http::generated_byte(i));
  std::ofstream out(file, std::ios::binary);
  out.write(body.data(), static_cast<std::streamsize>(n));
}

/// One download and one upload (POST /echo) with our client; returns the server's stats.
quic::ServerCoreStats run_pair(const h3::ServerConfig& config, const std::vector<std::string>& client_options,
                               const std::string& name) {
  H3ServerHarness server(config);
  REQUIRE(server.ok());
  TempDir tmp("h3-dgram-" + name);
  auto up = tmp.path() / "up";
  write_generated(up, kUp);
  std::vector<std::string> get{QUICLAB_BIN, "get", "--h3", "--insecure", "-o", (tmp.path() / "down").string()};
  get.insert(get.end(), client_options.begin(), client_options.end());
  get.push_back(server.url("/bytes/" + std::to_string(kDown)));
  auto r = run_process(get, kClientTimeout, tmp.path() / "get.log");
  INFO(r.log);
  REQUIRE(r.exit_code == 0);
  CHECK(is_generated_body(tmp.path() / "down", kDown));

  std::vector<std::string> post{QUICLAB_BIN,   "get",       "--h3", "--insecure",
                                "--data-file", up.string(), "-o",   (tmp.path() / "echo").string()};
  post.insert(post.end(), client_options.begin(), client_options.end());
  post.push_back(server.url("/echo"));
  auto p = run_process(post, kClientTimeout, tmp.path() / "post.log");
  INFO(p.log);
  REQUIRE(p.exit_code == 0);
  CHECK(is_generated_body(tmp.path() / "echo", kUp));
  server.stop();
  CHECK(server.leaked_handles().empty());
  CHECK(server.stats().handshakes_completed == 2);
  return server.stats();
}

}  // namespace

TEST_CASE("h3 datagrams: loopback peers use datagrams above 1452 bytes both ways", "[mtu]") {
  auto s = run_pair({}, {}, "auto");
  INFO("largest in " << s.max_datagram_in << ", out " << s.max_datagram_out << "; most per GSO send "
                     << s.max_batch_datagrams);
  CHECK(s.max_datagram_out > NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE);
  CHECK(s.max_datagram_out <= quic::kMaxLocalUdpPayload);
  CHECK(s.max_datagram_in > NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE);  // the upload
  CHECK(s.max_datagram_in <= quic::kMaxLocalUdpPayload);
}

TEST_CASE("h3 datagrams: a client's --max-udp-payload caps both directions", "[mtu]") {
  auto s = run_pair({}, {"--max-udp-payload", "1400"}, "client-cap");
  INFO("largest in " << s.max_datagram_in << ", out " << s.max_datagram_out << "; most per GSO send "
                     << s.max_batch_datagrams);
  CHECK(s.max_datagram_in <= 1400);
  CHECK(s.max_datagram_in >= 1200);   // Initials are padded to at least 1200
  CHECK(s.max_datagram_out <= 1400);  // the server obeys the client's transport parameter
  // ... and sizes its GSO batches by the packets it really builds: sized by
  // its own 16 KiB limit a batch would stop at 65507 / 16384 = 3 packets.
  CHECK(s.max_batch_datagrams > 3);
}

TEST_CASE("h3 datagrams: a server's forced size caps both directions", "[mtu]") {
  h3::ServerConfig config;
  config.quic.udp_payload = quic::UdpPayloadPolicy{1300};
  auto s = run_pair(config, {}, "server-cap");
  INFO("largest in " << s.max_datagram_in << ", out " << s.max_datagram_out << "; most per GSO send "
                     << s.max_batch_datagrams);
  CHECK(s.max_datagram_out <= 1300);
  CHECK(s.max_datagram_out >= 1200);
  // Our client sends 1200-byte datagrams until the handshake completes (it
  // does not know the server's limit yet), then keeps to the server's
  // max_udp_payload_size.
  CHECK(s.max_datagram_in <= 1300);
  CHECK(s.max_datagram_in >= 1200);
}

TEST_CASE("h3 datagrams: a bad --max-udp-payload is a usage error naming the value", "[mtu]") {
  TempDir tmp("h3-dgram-bad");
  struct Case {
    std::string value;
    std::vector<std::string> argv;
  };
  const std::vector<Case> cases{
      {"100", {QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--max-udp-payload", "100"}},
      {"big", {QUICLAB_BIN, "get", "--h3", "--max-udp-payload", "big", "https://127.0.0.1:9/"}},
      {"70000", {QUICLAB_BIN, "bench", "--h3", "-n", "1", "--max-udp-payload", "70000", "https://127.0.0.1:9/"}},
  };
  int i = 0;
  for (const auto& [value, argv] : cases) {
    auto r = run_process(argv, 60, tmp.path() / ("bad" + std::to_string(i++) + ".log"));
    INFO(r.log);
    CHECK(r.exit_code == 2);
    CHECK(r.log.find("--max-udp-payload") != std::string::npos);
    CHECK(r.log.find("expected 'auto' or a UDP payload size in bytes from 1200 to 65507, got '" + value + "'") !=
          std::string::npos);
  }
}
