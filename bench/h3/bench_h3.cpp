// quiclab_bench_h3: our HTTP/3 server beside Debian's gtlsserver, same run,
// alternating, over loopback (a program, not a test).
//
//   1. bulk: 100 MiB over one connection, each client against each server:
//        gtlsclient -> gtlsserver (the reference pair), gtlsclient -> quiclab,
//        quiclab get --h3 -> quiclab (also at 1452-byte datagrams),
//        quiclab get --h3 -> gtlsserver;
//      MB/s per round and the median, and ratios against the reference.
//   2. our HTTP/3 against our HTTP/2 on the same server process:
//      100 MiB bulk and 1 KiB requests/s (quiclab bench, 1 connection, 100 streams),
//      HTTP/3 both with loopback-sized datagrams (the default, up to 16 KiB)
//      and held to ngtcp2's default 1452 bytes (--max-udp-payload 1452).
//   3. server memory with N (default 1000) concurrent HTTP/3 connections
//      (quiclab bench --h3 -c N), ours and gtlsserver's: peak RSS minus idle RSS.
//
// Run: build/bench/h3/quiclab_bench_h3 [--rounds 3] [--size-mib 100] [--conns 1000] [--json]
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/compare/stats.hpp"
#include "transport/tls/tls.hpp"

extern char** environ;

namespace fs = std::filesystem;
namespace tls = quiclab::tls;
using Clock = std::chrono::steady_clock;

namespace {

struct Child {
  pid_t pid = -1;
  fs::path log;
};

Child spawn(const std::vector<std::string>& argv, const fs::path& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  Child c;
  c.log = log;
  if (posix_spawnp(&c.pid, args[0], &fa, nullptr, args.data(), environ) != 0) c.pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return c;
}

// Waits up to timeout_s; kills on timeout. Returns the exit code (-1 on timeout).
int wait_for(Child& c, double timeout_s) {
  auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  while (::waitpid(c.pid, &status, WNOHANG) != c.pid) {
    if (Clock::now() > deadline) {
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void stop(Child& c) {
  if (c.pid <= 0) return;
  ::kill(c.pid, SIGTERM);
  if (wait_for(c, 10) == -1) ::kill(c.pid, SIGKILL);
  c.pid = -1;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::size_t rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  return 0;
}

std::uint16_t free_udp_port() {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// The one median of every benchmark and report (bench/compare/stats.hpp).
double median(const std::vector<double>& v) { return quiclab::stats::median(v).value_or(0); }

struct Servers {
  Child ours, theirs;
  std::uint16_t our_port = 0, their_port = 0;
};

// Starts `quiclab serve` and waits for its "listening h3 udp" line.
bool start_ours(Servers& s, const fs::path& dir, const tls::CertificatePaths& cert) {
  s.ours = spawn({QUICLAB_BIN, "--log-level", "warn", "serve", "--listen", "127.0.0.1:0", "--cert", cert.cert.string(),
                  "--key", cert.key.string()},
                 dir / "ours.log");
  for (int i = 0; i < 500; ++i) {
    auto text = slurp(dir / "ours.log");
    auto at = text.find("listening h3 udp 127.0.0.1:");
    if (at != std::string::npos) {
      s.our_port = static_cast<std::uint16_t>(std::stoul(text.substr(at + 27)));
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool start_theirs(Servers& s, const fs::path& dir, const tls::CertificatePaths& cert) {
  s.their_port = free_udp_port();
  s.theirs = spawn({"gtlsserver", "-q", "-d", (dir / "htdocs").string(), "127.0.0.1", std::to_string(s.their_port),
                    cert.key.string(), cert.cert.string()},
                   dir / "theirs.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return s.theirs.pid > 0 && ::waitpid(s.theirs.pid, nullptr, WNOHANG) == 0;
}

// Seconds for one command to finish (nullopt on failure).
std::optional<double> timed(const std::vector<std::string>& argv, const fs::path& log, double timeout_s = 300) {
  auto t0 = Clock::now();
  auto c = spawn(argv, log);
  if (c.pid <= 0) return std::nullopt;
  int rc = wait_for(c, timeout_s);
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (rc != 0) {
    std::cerr << "  failed (exit " << rc << "): " << argv[0] << " ... see " << log << "\n";
    return std::nullopt;
  }
  return s;
}

std::vector<std::string> gtlsclient(std::uint16_t port, const std::string& path) {
  return {"gtlsclient",
          "-q",
          "--exit-on-all-streams-close",
          "--no-http-dump",
          "127.0.0.1",
          std::to_string(port),
          "https://127.0.0.1:" + std::to_string(port) + path};
}

std::vector<std::string> our_get(std::uint16_t port, const std::string& path, const std::string& payload = "auto") {
  return {QUICLAB_BIN,
          "--log-level",
          "warn",
          "get",
          "--h3",
          "-k",
          "--max-udp-payload",
          payload,
          "https://127.0.0.1:" + std::to_string(port) + path};
}

// quiclab bench --json: returns the parsed summary.
std::optional<nlohmann::json> our_bench(const std::vector<std::string>& extra, const fs::path& log) {
  std::vector<std::string> argv{QUICLAB_BIN, "--log-level", "warn", "bench", "-k", "--json"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto c = spawn(argv, log);
  if (wait_for(c, 600) != 0) return std::nullopt;
  auto text = slurp(log);
  auto at = text.find('{');
  if (at == std::string::npos) return std::nullopt;
  try {
    return nlohmann::json::parse(text.substr(at));
  } catch (...) {
    return std::nullopt;
  }
}

// Peak RSS growth of a server while `quiclab bench --h3 -c conns` holds that many connections.
std::optional<std::pair<double, double>> memory_with_connections(pid_t server, std::uint16_t port,
                                                                 const std::string& path, unsigned conns,
                                                                 const fs::path& log) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto idle = rss_kib(server);
  auto c = spawn({QUICLAB_BIN, "--log-level", "error", "bench", "--h3", "-k", "-c", std::to_string(conns), "-m", "1",
                  "-d", "6", "https://127.0.0.1:" + std::to_string(port) + path},
                 log);
  std::size_t peak = idle;
  int status = 0;
  auto deadline = Clock::now() + std::chrono::seconds(120);
  while (::waitpid(c.pid, &status, WNOHANG) != c.pid) {
    peak = std::max(peak, rss_kib(server));
    if (Clock::now() > deadline) {
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, &status, 0);
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return std::make_pair(static_cast<double>(idle) / 1024.0, static_cast<double>(peak - idle) / 1024.0);
}

std::string machine() {
  std::string cpu;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  return cpu + ", " + std::to_string(std::thread::hardware_concurrency()) + " CPUs";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"HTTP/3: quiclab serve vs gtlsserver (and our client vs gtlsclient), same run"};
  unsigned rounds = 3, size_mib = 100, conns = 1000;
  bool json = false, skip_memory = false;
  app.add_option("--rounds", rounds, "alternating rounds per pair")->capture_default_str();
  app.add_option("--size-mib", size_mib, "bulk body size, MiB")->capture_default_str();
  app.add_option("--conns", conns, "connections for the memory test")->capture_default_str();
  app.add_flag("--skip-memory", skip_memory, "skip the memory test");
  app.add_flag("--json", json, "one JSON object at the end");
  CLI11_PARSE(app, argc, argv);

  std::random_device rd;
  fs::path dir = fs::temp_directory_path() / ("quiclab-bench-h3-" + std::to_string(rd()));
  fs::create_directories(dir / "htdocs");
  auto cert = tls::generate_self_signed(dir / "cert");
  if (!cert) {
    std::cerr << cert.error().message << "\n";
    return 1;
  }
  const std::uint64_t size = std::uint64_t{size_mib} << 20;
  {
    // gtlsserver serves files: the same byte count, from the page cache.
    std::ofstream f(dir / "htdocs" / "bulk", std::ios::binary);
    std::vector<char> block(1 << 20, 'x');
    for (unsigned i = 0; i < size_mib; ++i) f.write(block.data(), static_cast<std::streamsize>(block.size()));
    std::ofstream(dir / "htdocs" / "health") << "ok\n";
  }
  const std::string our_path = "/bytes/" + std::to_string(size);

  Servers s;
  if (!start_ours(s, dir, *cert) || !start_theirs(s, dir, *cert)) {
    std::cerr << "could not start the servers (see " << dir << ")\n";
    return 1;
  }
  std::cerr << "machine: " << machine() << "\n";
  std::cerr << "bulk: " << size_mib << " MiB per transfer, " << rounds << " alternating rounds\n";

  struct Pair {
    std::string name;
    std::vector<std::string> argv;
    std::vector<double> mbps;
  };
  std::vector<Pair> pairs{
      {"gtlsclient -> gtlsserver", gtlsclient(s.their_port, "/bulk"), {}},
      {"gtlsclient -> quiclab serve", gtlsclient(s.our_port, our_path), {}},
      {"quiclab get --h3 -> quiclab serve", our_get(s.our_port, our_path), {}},
      // The same pair held to ngtcp2's default datagram size (the client's
      // --max-udp-payload is also its transport parameter, so the server
      // keeps to it too): how much of the gap is datagram size.
      {"  same, 1452-byte datagrams", our_get(s.our_port, our_path, "1452"), {}},
      {"quiclab get --h3 -> gtlsserver", our_get(s.their_port, "/bulk"), {}},
  };
  for (unsigned r = 0; r < rounds; ++r) {
    for (auto& p : pairs) {
      auto t = timed(p.argv, dir / "client.log");
      if (t) {
        double mbps = static_cast<double>(size) / 1e6 / *t;
        p.mbps.push_back(mbps);
        std::cerr << "  round " << r + 1 << "  " << p.name << ": " << mbps << " MB/s\n";
      }
    }
  }

  // Our H3 vs our H2 on the same server process; H3 also at 1452-byte datagrams.
  struct Variant {
    std::string label;
    std::vector<std::string> args;
  };
  const std::vector<Variant> variants{
      {"--h2", {"--h2"}}, {"--h3", {"--h3"}}, {"--h3 (1452 B datagrams)", {"--h3", "--max-udp-payload", "1452"}}};
  std::map<std::string, double> ours_h2h3;
  const std::string base = "https://127.0.0.1:" + std::to_string(s.our_port);
  for (unsigned r = 0; r < rounds; ++r) {
    for (const auto& v : variants) {
      auto bulk = v.args;
      bulk.insert(bulk.end(), {"-n", "1", base + our_path});
      auto j = our_bench(bulk, dir / "bench.log");
      if (j && j->contains("mb_per_s")) {
        auto key = "bulk " + v.label;
        ours_h2h3[key] = std::max(ours_h2h3[key], (*j)["mb_per_s"].get<double>());
      }
      auto small = v.args;
      small.insert(small.end(), {"-c", "1", "-m", "100", "-d", "3", base + "/bytes/1024"});
      auto k = our_bench(small, dir / "bench.log");
      if (k && k->contains("req_per_s")) {
        auto key = "1KiB req/s " + v.label;
        ours_h2h3[key] = std::max(ours_h2h3[key], (*k)["req_per_s"].get<double>());
      }
    }
  }

  std::optional<std::pair<double, double>> mem_ours, mem_theirs;
  if (!skip_memory) {
    // Fresh server processes so earlier runs do not colour the numbers.
    stop(s.ours);
    stop(s.theirs);
    if (start_ours(s, dir, *cert))
      mem_ours = memory_with_connections(s.ours.pid, s.our_port, "/health", conns, dir / "mem.log");
    if (start_theirs(s, dir, *cert))
      mem_theirs = memory_with_connections(s.theirs.pid, s.their_port, "/health", conns, dir / "mem.log");
  }
  stop(s.ours);
  stop(s.theirs);

  const double reference = median(pairs[0].mbps);
  nlohmann::json out;
  out["machine"] = machine();
  out["size_mib"] = size_mib;
  out["rounds"] = rounds;
  std::printf("\nHTTP/3 bulk, %u MiB over one connection (median of %u rounds, MB = 10^6 bytes)\n", size_mib, rounds);
  for (auto& p : pairs) {
    double m = median(p.mbps);
    double ratio = reference > 0 ? m / reference : 0;
    std::printf("  %-36s %8.1f MB/s   x%.2f vs gtlsclient->gtlsserver\n", p.name.c_str(), m, ratio);
    out["bulk"][p.name] = {{"median_mb_per_s", m}, {"runs", p.mbps}, {"ratio_vs_reference", ratio}};
  }
  if (!ours_h2h3.empty()) {
    std::printf("\nquiclab serve, HTTP/3 vs HTTP/2 (quiclab bench, best of %u)\n", rounds);
    for (auto& [k, v] : ours_h2h3) std::printf("  %-36s %10.1f\n", k.c_str(), v);
    auto h2 = ours_h2h3["bulk --h2"], h3 = ours_h2h3["bulk --h3"];
    auto h3_1452 = ours_h2h3["bulk --h3 (1452 B datagrams)"];
    if (h2 > 0) {
      std::printf("  %-36s %10.2f\n", "bulk H3/H2 ratio", h3 / h2);
      std::printf("  %-36s %10.2f\n", "bulk H3/H2 ratio, 1452 B datagrams", h3_1452 / h2);
    }
    out["ours_h2_vs_h3"] = ours_h2h3;
  }
  if (mem_ours || mem_theirs) {
    std::printf("\nserver memory with %u concurrent HTTP/3 connections (peak RSS - idle RSS)\n", conns);
    auto line = [&](const char* name, const std::optional<std::pair<double, double>>& m, const char* key) {
      if (!m) {
        std::printf("  %-36s failed\n", name);
        return;
      }
      std::printf("  %-36s %8.1f MiB (%.1f KiB/conn; idle %.1f MiB)\n", name, m->second, m->second * 1024.0 / conns,
                  m->first);
      out["memory"][key] = {{"idle_mib", m->first}, {"growth_mib", m->second}, {"connections", conns}};
    };
    line("quiclab serve", mem_ours, "quiclab");
    line("gtlsserver", mem_theirs, "gtlsserver");
  }
  if (json) std::cout << out.dump(2) << "\n";
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
