// `quiclab serve` as a process: HTTP/3 on the TCP port number, Alt-Svc on
// HTTP/2 responses, --retry and --qlog-dir wired through, graceful exit on SIGTERM.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/h3/support.hpp"

using namespace quiclab;
using namespace quiclab::test;
namespace fs = std::filesystem;

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Waits (up to 30 s) for `quiclab serve`'s "listening <what> 127.0.0.1:PORT"
/// line in its log ("h2 tcp" or "h3 udp") and returns PORT, or "" with the log
/// in `log_text` for the failure message.
std::string listening_port(const fs::path& log, const std::string& what, std::string& log_text) {
  const std::regex line("listening " + what + " 127\\.0\\.0\\.1:([0-9]+)");
  std::smatch m;
  for (int i = 0; i < 1500; ++i) {
    log_text = slurp(log);
    if (std::regex_search(log_text, m, line)) return m[1];
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return {};
}
}  // namespace

TEST_CASE("h3 serve: one port number for h2 and h3, Alt-Svc, --retry, --qlog-dir, SIGTERM drains", "[serve]") {
  TempDir tmp("h3-serve");
  auto qlog = tmp.path() / "qlog";
  auto log = tmp.path() / "serve.log";
  int pid =
      spawn_process({QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--retry", "--qlog-dir", qlog.string()}, log);
  REQUIRE(pid > 0);
  std::string text;
  const std::string port = listening_port(log, "h3 udp", text);
  const std::string h2_port = listening_port(log, "h2 tcp", text);
  INFO(text);
  REQUIRE(!port.empty());
  REQUIRE(!h2_port.empty());
  CHECK(h2_port == port);

  // HTTP/2 advertises HTTP/3 on the same port.
  auto curl =
      run_process({"curl", "-sk", "--http2", "-o", "/dev/null", "-D", "-", "https://127.0.0.1:" + port + "/health"}, 60,
                  tmp.path() / "curl.log");
  INFO(curl.log);
  CHECK(curl.exit_code == 0);
  CHECK(curl.log.find("alt-svc: h3=\":" + port + "\"") != std::string::npos);

  // HTTP/3 on that port, through a Retry, with a qlog file written.
  auto dl = tmp.path() / "dl";
  fs::create_directory(dl);
  auto r = run_process({"gtlsclient", "-q", "--exit-on-all-streams-close", "--no-http-dump",
                        "--download=" + dl.string(), "127.0.0.1", port, "https://127.0.0.1:" + port + "/bytes/200000"},
                       120, tmp.path() / "client.log");
  INFO(r.log);
  CHECK(r.exit_code == 0);
  CHECK(is_generated_body(dl / "200000", 200000));
  auto metrics =
      run_process({"curl", "-sk", "--http2", "https://127.0.0.1:" + port + "/metrics"}, 60, tmp.path() / "metrics.log");
  CHECK(metrics.log.find("protocol=\"h3\"") != std::string::npos);
  std::size_t qlogs = 0;
  for (const auto& e : fs::directory_iterator(qlog)) qlogs += e.path().extension() == ".sqlog" ? 1 : 0;
  CHECK(qlogs >= 1);

  // SIGTERM: both servers drain, the process exits 0.
  ::kill(pid, SIGTERM);
  auto done = wait_process(pid, 60, log);
  INFO(done.log);
  CHECK(!done.timed_out);
  CHECK(done.exit_code == 0);
}

TEST_CASE("h3 serve: --cc picks ngtcp2's congestion controller, a bad name is a usage error", "[serve]") {
  TempDir tmp("h3-serve-cc");
  auto bad =
      run_process({QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--cc", "vegas"}, 60, tmp.path() / "bad.log");
  INFO(bad.log);
  CHECK(bad.exit_code == 2);
  CHECK(bad.log.find("--cc") != std::string::npos);

  for (std::string cc : {"bbr2", "reno"}) {
    auto log = tmp.path() / ("serve-" + cc + ".log");
    int pid = spawn_process({QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--cc", cc}, log);
    REQUIRE(pid > 0);
    std::string text;
    const std::string port = listening_port(log, "h3 udp", text);
    INFO(text);
    REQUIRE(!port.empty());
    auto dl = tmp.path() / ("dl-" + cc);
    fs::create_directory(dl);
    auto r =
        run_process({"gtlsclient", "-q", "--exit-on-all-streams-close", "--no-http-dump", "--download=" + dl.string(),
                     "127.0.0.1", port, "https://127.0.0.1:" + port + "/bytes/3000000"},
                    120, tmp.path() / ("client-" + cc + ".log"));
    INFO(r.log);
    CHECK(r.exit_code == 0);
    CHECK(is_generated_body(dl / "3000000", 3000000));
    ::kill(pid, SIGTERM);
    auto done = wait_process(pid, 60, log);
    CHECK(done.exit_code == 0);
  }
}

TEST_CASE("serve: --tcp-cc sets HTTP/2's TCP congestion control, an unknown one is refused", "[serve]") {
  TempDir tmp("serve-tcp-cc");
  auto bad = run_process({QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--tcp-cc", "no-such-cc"}, 60,
                         tmp.path() / "bad.log");
  INFO(bad.log);
  CHECK(bad.exit_code != 0);
  CHECK(bad.log.find("cannot use TCP congestion control 'no-such-cc'") != std::string::npos);

  // reno is built into every Linux kernel; the machine's default is often cubic or bbr.
  auto log = tmp.path() / "serve.log";
  int pid = spawn_process({QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--no-h3", "--tcp-cc", "reno"}, log);
  REQUIRE(pid > 0);
  std::string text;
  const std::string port = listening_port(log, "h2 tcp", text);
  INFO(text);
  REQUIRE(!port.empty());
  // A rate-limited download (more than the socket buffers hold) keeps the
  // connection open while ss looks at its congestion control.
  auto r = run_process({"bash", "-c",
                        "curl -sk --http2 --limit-rate 1M -o /dev/null https://127.0.0.1:" + port +
                            "/bytes/64m & c=$!; for i in $(seq 100); do ss -tin state established '( sport = :" + port +
                            " )' | grep -q reno && { echo CC-RENO; break; }; sleep 0.1; done; kill $c; wait"},
                       60, tmp.path() / "ss.log");
  INFO(r.log);
  CHECK(r.log.find("CC-RENO") != std::string::npos);
  ::kill(pid, SIGTERM);
  auto done = wait_process(pid, 60, log);
  CHECK(done.exit_code == 0);
}

TEST_CASE(
    "serve: --conn-log records what each connection's transport did, --tcp-pacing and --quic-pacing in the record",
    "[serve]") {
  TempDir tmp("serve-conn-log");
  auto bad = run_process({QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--tcp-pacing", "maybe"}, 60,
                         tmp.path() / "bad.log");
  INFO(bad.log);
  CHECK(bad.exit_code == 2);
  CHECK(bad.log.find("--tcp-pacing") != std::string::npos);
  auto nodir = run_process({QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--conn-log", "/nonexistent/dir/c.jsonl"},
                           60, tmp.path() / "nodir.log");
  INFO(nodir.log);
  CHECK(nodir.exit_code == 2);
  CHECK(nodir.log.find("--conn-log /nonexistent/dir/c.jsonl") != std::string::npos);

  auto conn_log = tmp.path() / "conn.jsonl";
  auto log = tmp.path() / "serve.log";
  int pid = spawn_process({QUICLAB_BIN, "serve", "--listen", "127.0.0.1:0", "--tcp-cc", "reno", "--tcp-pacing", "on",
                           "--quic-pacing", "off", "--conn-log", conn_log.string()},
                          log);
  REQUIRE(pid > 0);
  std::string text;
  const std::string port = listening_port(log, "h3 udp", text);
  INFO(text);
  REQUIRE(!port.empty());
  const std::string url = "https://127.0.0.1:" + port + "/bytes/1m";
  auto h2 = run_process({"curl", "-sk", "--http2", "-o", "/dev/null", url}, 60, tmp.path() / "curl.log");
  CHECK(h2.exit_code == 0);
  auto h3 = run_process({QUICLAB_BIN, "get", "--h3", "-k", "-o", "/dev/null", url}, 60, tmp.path() / "get.log");
  CHECK(h3.exit_code == 0);
  std::vector<nlohmann::json> recs;
  for (int i = 0; i < 250 && recs.size() < 2; ++i) {
    recs.clear();
    std::istringstream lines(slurp(conn_log));
    for (std::string line; std::getline(lines, line);) recs.push_back(nlohmann::json::parse(line));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  INFO(slurp(conn_log));
  REQUIRE(recs.size() == 2);
  for (const auto& r : recs) {
    INFO(r.dump());
    CHECK(r["bytes_sent"].get<std::uint64_t>() >= 1'000'000);
    CHECK(r["segment_bytes"].get<std::uint64_t>() >= 1200);
    CHECK(r["initial_cwnd_packets"].get<std::uint64_t>() >= 2);
    CHECK(r["initial_cwnd_bytes"].get<std::uint64_t>() >= r["segment_bytes"].get<std::uint64_t>() * 2);
    CHECK(r["min_rtt_ms"].get<double>() >= 0);
    CHECK(r["timer_ms"].get<double>() > 0);
    CHECK(r["peer"].get<std::string>().rfind("127.0.0.1:", 0) == 0);
    CHECK(r["start_unix_ms"].get<std::int64_t>() > 1'700'000'000'000);  // wall clock, after 2023
    if (r["protocol"] == "h2") {
      CHECK(r["congestion_control"] == "reno");
      CHECK(r["paced"] == true);
      CHECK(r["pacing_ss_pct"].is_number());
      CHECK(r["retransmitted_packets"] == 0);  // loopback loses nothing
      CHECK(r["tls_records_full"].get<std::uint64_t>() > 0);
      CHECK(r["congestion_events"].is_null());    // TCP_INFO has no such count
      CHECK(r["timer_ms"].get<double>() >= 200);  // Linux's RTO floor
    } else {
      CHECK(r["protocol"] == "h3");
      CHECK(r["congestion_control"] == "cubic");
      CHECK(r["paced"] == false);
      CHECK(r["pacing_ss_pct"].is_null());
      CHECK(r["retransmitted_packets"].is_null());
      CHECK(r["congestion_events"] == 0);
      CHECK(r["timeouts"] == 0);
      CHECK(r["early_data"] == false);
      CHECK(r["packets_sent"].get<std::uint64_t>() >= 1'000'000 / r["segment_bytes"].get<std::uint64_t>());
    }
  }
  CHECK(recs[0]["protocol"] != recs[1]["protocol"]);
  ::kill(pid, SIGTERM);
  auto done = wait_process(pid, 60, log);
  CHECK(done.exit_code == 0);
}
