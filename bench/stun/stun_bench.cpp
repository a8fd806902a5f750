// stun_bench: Binding requests per second answered by `quiclab rendezvous` and
// by coturn's turnserver, measured in the same run by the same load generator
// in alternating rounds, plus the memory 10k registered peers cost.
//
// Everything is bounded: a fixed number of rounds of fixed length, a fixed
// window of requests in flight, traffic on 127.0.0.1 only.
#include <poll.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <regex>
#include <thread>

#include "p2p/rendezvous_client.hpp"
#include "p2p/stun.hpp"
#include "tests/p2p/process.hpp"
#include "transport/core/clock.hpp"

using namespace quiclab;

namespace {

Timestamp now_ns() { return SteadyClock::instance().now(); }

int udp_socket() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  auto any = SocketAddress::from_ip("127.0.0.1", 0).value();
  if (::bind(fd, any.sa(), any.size()) != 0) std::perror("bind");
  int size = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  return fd;
}

// A port P with P and P+1 free on 127.0.0.1 (coturn also binds P+1 for RFC 5780).
std::uint16_t free_port_pair() {
  for (std::uint16_t p = 41000; p < 60000; p = static_cast<std::uint16_t>(p + 2)) {
    int a = ::socket(AF_INET, SOCK_DGRAM, 0), b = ::socket(AF_INET, SOCK_DGRAM, 0);
    auto pa = SocketAddress::from_ip("127.0.0.1", p).value();
    auto pb = SocketAddress::from_ip("127.0.0.1", static_cast<std::uint16_t>(p + 1)).value();
    bool ok = ::bind(a, pa.sa(), pa.size()) == 0 && ::bind(b, pb.sa(), pb.size()) == 0;
    ::close(a);
    ::close(b);
    if (ok) return p;
  }
  return 0;
}

bool answers(const SocketAddress& server) {
  int fd = udp_socket();
  stun::Message req;
  req.transaction_id = stun::random_transaction_id();
  auto wire = stun::encode(req);
  bool ok = false;
  for (int i = 0; i < 50 && !ok; ++i) {
    ::sendto(fd, wire.data(), wire.size(), 0, server.sa(), server.size());
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) ok = true;
  }
  ::close(fd);
  return ok;
}

// Closed-loop load: `sockets` sockets keep `window` Binding requests each in
// flight; every answer triggers the next request. Returns answers per second.
double measure(const SocketAddress& server, int sockets, int window, double seconds) {
  std::vector<int> fds;
  for (int i = 0; i < sockets; ++i) fds.push_back(udp_socket());
  stun::Message req;
  req.transaction_id = stun::random_transaction_id();
  auto wire = stun::encode(req);
  auto send_one = [&](int fd) { ::sendto(fd, wire.data(), wire.size(), 0, server.sa(), server.size()); };
  std::vector<Timestamp> last_answer(fds.size(), now_ns());
  for (int fd : fds) {
    for (int w = 0; w < window; ++w) send_one(fd);
  }
  std::vector<pollfd> pfds;
  for (int fd : fds) pfds.push_back(pollfd{fd, POLLIN, 0});
  std::uint64_t count = 0;
  auto start = now_ns();
  auto end = start + static_cast<Timestamp>(seconds * 1e9);
  std::uint8_t buf[2048];
  while (now_ns() < end) {
    ::poll(pfds.data(), pfds.size(), 10);
    for (std::size_t i = 0; i < fds.size(); ++i) {
      for (;;) {
        auto n = ::recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) break;
        if (n >= 20 && buf[0] == 0x01 && buf[1] == 0x01) {
          count++;
          send_one(fds[i]);
          last_answer[i] = now_ns();
        }
      }
      // Refill a window that lost packets (socket buffers overflow under load).
      if (now_ns() - last_answer[i] > 200 * kNanosPerMilli) {
        for (int w = 0; w < window; ++w) send_one(fds[i]);
        last_answer[i] = now_ns();
      }
    }
  }
  double elapsed = static_cast<double>(now_ns() - start) / 1e9;
  for (int fd : fds) ::close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let stragglers drain
  return static_cast<double>(count) / elapsed;
}

long rss_kib(pid_t pid) {
  auto status = test::read_file("/proc/" + std::to_string(pid) + "/status");
  std::smatch m;
  if (std::regex_search(status, m, std::regex("VmRSS:\\s+([0-9]+) kB"))) return std::stol(m[1].str());
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"STUN Binding throughput (quiclab vs coturn) and memory per 10k registered peers"};
  int rounds = 3, sockets = 4, window = 32, peers = 10000;
  double seconds = 3;
  app.add_option("--rounds", rounds, "alternating rounds per server")->capture_default_str();
  app.add_option("--seconds", seconds, "length of one round")->capture_default_str();
  app.add_option("--sockets", sockets, "client sockets")->capture_default_str();
  app.add_option("--window", window, "requests in flight per socket")->capture_default_str();
  app.add_option("--peers", peers, "registered peers for the memory figure")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  rounds = std::clamp(rounds, 1, 20);
  seconds = std::clamp(seconds, 0.5, 30.0);
  peers = std::clamp(peers, 1, 200000);

  // Our server: no per-source rate limit here, since all load comes from one IP.
  test::ChildProcess ours({QUICLAB_BIN, "--log-level", "warn", "rendezvous", "--listen", "127.0.0.1:0", "--rate",
                           "1e12", "--burst", "1e12", "--max-registrations-per-source", "1000000"});
  if (!ours.wait_for_stdout("listening primary=")) {
    std::fprintf(stderr, "quiclab rendezvous did not start\n");
    return 1;
  }
  std::smatch m;
  auto out = ours.stdout_text();
  std::regex_search(out, m, std::regex("primary=([0-9.]+:[0-9]+)"));
  auto our_addr = SocketAddress::parse(m[1].str()).value();

  char dir_template[] = "/tmp/quiclab-stun-bench-XXXXXX";
  std::string dir = mkdtemp(dir_template);
  auto port = free_port_pair();
  test::ChildProcess coturn({"/usr/bin/turnserver",
                             "-n",
                             "-z",
                             "-S",
                             "--listening-ip",
                             "127.0.0.1",
                             "-p",
                             std::to_string(port),
                             "--no-tcp",
                             "--no-tls",
                             "--no-dtls",
                             "--no-cli",
                             "--no-software-attribute",
                             "--log-file",
                             dir + "/turn.log",
                             "--simple-log",
                             "--pidfile",
                             dir + "/turn.pid",
                             "--userdb",
                             dir + "/turndb"});
  auto coturn_addr = SocketAddress::from_ip("127.0.0.1", port).value();
  if (!answers(our_addr) || !answers(coturn_addr)) {
    std::fprintf(stderr, "a server does not answer Binding requests\n");
    return 1;
  }

  std::printf("Binding requests/s on loopback, %d sockets x %d in flight, %d x %.1f s rounds, alternating\n", sockets,
              window, rounds, seconds);
  std::vector<double> ours_rps, coturn_rps;
  for (int r = 0; r < rounds; ++r) {
    ours_rps.push_back(measure(our_addr, sockets, window, seconds));
    coturn_rps.push_back(measure(coturn_addr, sockets, window, seconds));
    std::printf("  round %d: quiclab %.0f  coturn %.0f\n", r + 1, ours_rps.back(), coturn_rps.back());
    std::fflush(stdout);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  double mo = median(ours_rps), mc = median(coturn_rps);
  std::printf("median: quiclab %.0f req/s, coturn %.0f req/s, ratio quiclab/coturn %.2fx\n", mo, mc, mo / mc);

  // Memory: register `peers` names with the running server (each with a key
  // and one host candidate) and compare its resident set before and after.
  long before = rss_kib(ours.pid());
  int fd = udp_socket();
  int registered = 0, sent = 0;
  std::uint8_t buf[2048];
  auto deadline = now_ns() + 60 * kNanosPerSecond;
  while (registered < peers && now_ns() < deadline) {
    // Keep up to 64 registrations in flight; resend the rest if answers stall.
    while (sent < peers && sent - registered < 64) {
      stun::Message reg;
      reg.method = stun::method::kRegister;
      reg.transaction_id = stun::random_transaction_id();
      reg.add_string(stun::attr::kUsername, "peer-" + std::to_string(sent));
      Bytes key(32, static_cast<std::uint8_t>(sent));
      reg.add(stun::attr::kRegistrationKey, key);
      reg.add_u32(stun::attr::kLifetime, 3600);
      reg.add_xor_address(stun::attr::kHostCandidate, SocketAddress::from_ip("10.0.0.1", 5000).value());
      auto wire = stun::encode(reg, {std::nullopt, key, true});
      ::sendto(fd, wire.data(), wire.size(), 0, our_addr.sa(), our_addr.size());
      sent++;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) {
      sent = registered;  // lost some: re-send from the first unanswered name
      continue;
    }
    for (;;) {
      auto n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      auto r = stun::decode(ByteView(buf, static_cast<std::size_t>(n)));
      if (r && r->method == stun::method::kRegister && r->message_class == stun::MessageClass::SuccessResponse)
        registered++;
    }
  }
  ::close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  long after = rss_kib(ours.pid());
  std::printf("memory: %d peers registered, server RSS %ld KiB -> %ld KiB: %.1f KiB per 10k peers (%.0f bytes/peer)\n",
              registered, before, after, static_cast<double>(after - before) * 10000.0 / std::max(registered, 1),
              static_cast<double>(after - before) * 1024.0 / std::max(registered, 1));
  coturn.stop();
  ours.stop();
  std::remove((dir + "/turn.log").c_str());
  std::remove((dir + "/turn.pid").c_str());
  std::remove((dir + "/turndb").c_str());
  std::string cleanup = "rm -rf '" + dir + "'";
  (void)std::system(cleanup.c_str());
  return registered == peers ? 0 : 1;
}
