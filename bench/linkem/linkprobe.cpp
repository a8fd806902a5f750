// linkprobe: measures what a lab path really does, for `scripts/netlab.sh check`.
//
//   linkprobe serve   --port P [--duration S]
//       UDP echo + sink in the server namespace.
//   linkprobe measure --to ADDR:PORT [--count N] [--interval-ms I] [--rate-mbit R] [--seconds S]
//       From the client namespace: N sequence-numbered probes (RTT, loss per
//       direction), then, with --rate-mbit, a paced UDP blast at 1.1x the cap
//       for S seconds (goodput behind the bottleneck). Prints ONE JSON object.
//
// A measurement tool, not a protocol core: plain blocking sockets with poll(),
// so the timing is ours and not the event loop's. Every loop is bounded in
// count and time. The server answers only on the lab's own addresses because
// it runs inside the lab's server namespace.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench/compare/stats.hpp"

namespace {

constexpr std::uint32_t kMagic = 0x514c5042;  // "QLPB"
enum Type : std::uint8_t { kProbe = 1, kEcho = 2, kBlast = 3, kStatsRequest = 4, kStatsReply = 5 };

// Wire header (host byte order: both ends are this program on one machine).
struct Header {
  std::uint32_t magic;
  std::uint8_t type;
  std::uint8_t pad[3];
  std::uint64_t session;
  std::uint64_t seq;
  std::uint64_t send_ns;
};
struct StatsBody {
  std::uint64_t probes_received;
  std::uint64_t blast_packets;
  std::uint64_t blast_bytes;        // UDP payload bytes
  std::uint64_t blast_first_bytes;  // payload of the first blast packet
  std::uint64_t blast_span_ns;      // last arrival - first arrival
};

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

void sleep_until_ns(std::uint64_t t) {
  timespec ts{static_cast<time_t>(t / 1'000'000'000ULL), static_cast<long>(t % 1'000'000'000ULL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

int die(const std::string& what) {
  std::fprintf(stderr, "linkprobe: %s: %s\n", what.c_str(), std::strerror(errno));
  return 3;
}

// ---- server ---------------------------------------------------------------

struct Session {
  std::uint64_t probes = 0;
  std::uint64_t blast_packets = 0;
  std::uint64_t blast_bytes = 0;
  std::uint64_t blast_first_bytes = 0;
  std::uint64_t first_ns = 0;
  std::uint64_t last_ns = 0;
  std::uint64_t touched_ns = 0;
};

int serve(int port, double duration_s) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return die("socket");
  int big = 4 << 20;
  // Root may exceed rmem_max: a blast must not be lost in our own socket buffer.
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return die("bind");
  std::fprintf(stderr, "linkprobe: serving on UDP port %d for at most %.0f s\n", port, duration_s);

  std::unordered_map<std::uint64_t, Session> sessions;
  // recvmmsg in batches: at a gigabit, one syscall per datagram is what
  // overflows the socket buffer first.
  constexpr std::size_t kBatch = 32;
  std::vector<std::vector<std::uint8_t>> bufs(kBatch, std::vector<std::uint8_t>(65536));
  std::vector<mmsghdr> msgs(kBatch);
  std::vector<iovec> iovs(kBatch);
  std::vector<sockaddr_in> froms(kBatch);
  const std::uint64_t end = now_ns() + static_cast<std::uint64_t>(duration_s * 1e9);
  bool drained = true;
  while (now_ns() < end) {
    if (drained) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
    }
    for (std::size_t k = 0; k < kBatch; ++k) {
      iovs[k] = iovec{bufs[k].data(), bufs[k].size()};
      msgs[k] = mmsghdr{};
      msgs[k].msg_hdr.msg_name = &froms[k];
      msgs[k].msg_hdr.msg_namelen = sizeof froms[k];
      msgs[k].msg_hdr.msg_iov = &iovs[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    int got = ::recvmmsg(fd, msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    const std::uint64_t t = now_ns();
    drained = got < static_cast<int>(kBatch);
    for (int k = 0; k < got; ++k) {
      auto& buf = bufs[static_cast<std::size_t>(k)];
      const auto n = static_cast<ssize_t>(msgs[static_cast<std::size_t>(k)].msg_len);
      sockaddr_in& from = froms[static_cast<std::size_t>(k)];
      const socklen_t fromlen = sizeof from;
      if (n < static_cast<ssize_t>(sizeof(Header))) continue;
      Header h{};
      std::memcpy(&h, buf.data(), sizeof h);
      if (h.magic != kMagic) continue;
      if (sessions.size() > 4096 && !sessions.count(h.session)) {
        // Bounded memory: forget the stalest session.
        auto oldest = std::min_element(sessions.begin(), sessions.end(), [](const auto& a, const auto& b) {
          return a.second.touched_ns < b.second.touched_ns;
        });
        sessions.erase(oldest);
      }
      Session& s = sessions[h.session];
      s.touched_ns = t;
      switch (h.type) {
        case kProbe: {
          s.probes++;
          h.type = kEcho;
          std::memcpy(buf.data(), &h, sizeof h);
          ::sendto(fd, buf.data(), static_cast<std::size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), fromlen);
          break;
        }
        case kBlast:
          if (s.blast_packets == 0) {
            s.first_ns = t;
            s.blast_first_bytes = static_cast<std::uint64_t>(n);
          }
          s.blast_packets++;
          s.blast_bytes += static_cast<std::uint64_t>(n);
          s.last_ns = t;
          break;
        case kStatsRequest: {
          StatsBody b{s.probes, s.blast_packets, s.blast_bytes, s.blast_first_bytes, s.last_ns - s.first_ns};
          h.type = kStatsReply;
          std::uint8_t out[sizeof(Header) + sizeof(StatsBody)];
          std::memcpy(out, &h, sizeof h);
          std::memcpy(out + sizeof h, &b, sizeof b);
          ::sendto(fd, out, sizeof out, 0, reinterpret_cast<sockaddr*>(&from), fromlen);
          break;
        }
        default:
          break;
      }
    }
  }
  ::close(fd);
  return 0;
}

// ---- client ---------------------------------------------------------------

// One definition of percentiles and intervals for every benchmark and report
// (bench/compare/stats.hpp): R-7 percentiles, Wilson intervals.
double quantile(const std::vector<double>& v, double q) { return quiclab::stats::percentile(v, 100.0 * q).value_or(0); }

std::pair<double, double> wilson95(std::uint64_t losses, std::uint64_t trials) {
  if (trials == 0) return {0.0, 1.0};
  auto i = quiclab::stats::wilson_interval(losses, trials, 0.95);
  return {i.low, i.high};
}

struct Client {
  int fd = -1;
  sockaddr_in to{};
  std::uint64_t session = 0;
};

bool query_stats(Client& c, StatsBody& out) {
  // The stats exchange crosses the impaired path too: retry, bounded.
  std::vector<std::uint8_t> buf(65536);
  for (int attempt = 0; attempt < 40; ++attempt) {
    Header h{kMagic, kStatsRequest, {}, c.session, static_cast<std::uint64_t>(attempt), now_ns()};
    ::sendto(c.fd, &h, sizeof h, 0, reinterpret_cast<sockaddr*>(&c.to), sizeof c.to);
    const std::uint64_t until = now_ns() + 250'000'000ULL;
    while (now_ns() < until) {
      pollfd p{c.fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
      if (n < static_cast<ssize_t>(sizeof(Header) + sizeof(StatsBody))) continue;
      Header r{};
      std::memcpy(&r, buf.data(), sizeof r);
      if (r.magic != kMagic || r.type != kStatsReply || r.session != c.session) continue;
      std::memcpy(&out, buf.data() + sizeof r, sizeof out);
      return true;
    }
  }
  return false;
}

nlohmann::json loss_json(std::uint64_t losses, std::uint64_t trials) {
  auto [lo, hi] = wilson95(losses, trials);
  return {{"lost", losses},
          {"trials", trials},
          {"loss_pct", trials ? 100.0 * static_cast<double>(losses) / static_cast<double>(trials) : 0.0},
          {"loss_ci95", {100.0 * lo, 100.0 * hi}}};
}

struct Expect {
  double rtt_ms = -1;        // < 0: no RTT target
  double loss_pct = -1;      // < 0: no loss target
  double loss_autocorr = 0;  // lag-1 correlation of losses (bursty models), widens the verdict's interval
};

int measure(const std::string& target, int count, double interval_ms, int size, double rate_mbit, double seconds,
            int blast_size, const Expect& expect) {
  Client c;
  auto colon = target.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "linkprobe: --to needs ADDR:PORT\n");
    return 2;
  }
  c.to.sin_family = AF_INET;
  c.to.sin_port = htons(static_cast<std::uint16_t>(std::stoi(target.substr(colon + 1))));
  if (::inet_pton(AF_INET, target.substr(0, colon).c_str(), &c.to.sin_addr) != 1) {
    std::fprintf(stderr, "linkprobe: '%s' is not an IPv4 address\n", target.substr(0, colon).c_str());
    return 2;
  }
  c.fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (c.fd < 0) return die("socket");
  int big = 4 << 20;
  ::setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  ::setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  std::random_device rd;
  c.session = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  size = std::max<int>(size, sizeof(Header));

  // Phase 1: probes. Echoes are collected while sending and for a while after.
  std::vector<std::uint8_t> buf(65536);
  std::vector<std::uint8_t> probe(static_cast<std::size_t>(size), 0);
  std::vector<double> rtts;
  std::vector<bool> echoed(static_cast<std::size_t>(count), false);
  std::uint64_t duplicates = 0;
  // Reads echoes until `until_ns` (monotonic); returns early only at the deadline.
  auto drain_until = [&](std::uint64_t until_ns) {
    for (;;) {
      const std::uint64_t t_now = now_ns();
      const std::uint64_t left = t_now >= until_ns ? 0 : until_ns - t_now;
      timespec ts{static_cast<time_t>(left / 1'000'000'000ULL), static_cast<long>(left % 1'000'000'000ULL)};
      pollfd p{c.fd, POLLIN, 0};
      if (::ppoll(&p, 1, &ts, nullptr) <= 0) {
        if (now_ns() >= until_ns) return;
        continue;
      }
      ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
      const std::uint64_t t = now_ns();
      if (n < static_cast<ssize_t>(sizeof(Header))) continue;
      Header h{};
      std::memcpy(&h, buf.data(), sizeof h);
      if (h.magic != kMagic || h.type != kEcho || h.session != c.session || h.seq >= echoed.size()) continue;
      if (echoed[h.seq]) {
        duplicates++;
        continue;
      }
      echoed[h.seq] = true;
      rtts.push_back(static_cast<double>(t - h.send_ns) / 1e6);
    }
  };
  const std::uint64_t start = now_ns();
  const auto gap = static_cast<std::uint64_t>(interval_ms * 1e6);
  for (int i = 0; i < count; ++i) {
    const std::uint64_t due = start + static_cast<std::uint64_t>(i) * gap;
    // Collect echoes until shortly before the send time, then sleep precisely.
    if (due > 300'000) drain_until(due - 300'000);
    sleep_until_ns(due);
    Header h{kMagic, kProbe, {}, c.session, static_cast<std::uint64_t>(i), now_ns()};
    std::memcpy(probe.data(), &h, sizeof h);
    ::sendto(c.fd, probe.data(), probe.size(), 0, reinterpret_cast<sockaddr*>(&c.to), sizeof c.to);
  }
  // Stragglers: wait three times the slowest RTT seen (at least 500 ms, at most 5 s).
  double worst = rtts.empty() ? 1000.0 : *std::max_element(rtts.begin(), rtts.end());
  drain_until(now_ns() + static_cast<std::uint64_t>(std::clamp(3 * worst, 500.0, 5000.0) * 1e6));

  StatsBody stats{};
  if (!query_stats(c, stats)) {
    std::fprintf(stderr, "linkprobe: the server did not answer the stats request (is it running?)\n");
    return 3;
  }
  const auto sent = static_cast<std::uint64_t>(count);
  const std::uint64_t got = rtts.size();
  const std::uint64_t at_server = std::min(stats.probes_received, sent);
  const std::uint64_t c2s_lost = sent - at_server;
  const std::uint64_t s2c_lost = at_server >= got ? at_server - got : 0;

  nlohmann::json m;
  m["probes"] = {{"sent", sent},       {"at_server", at_server},    {"echoed", got}, {"duplicates", duplicates},
                 {"size_bytes", size}, {"interval_ms", interval_ms}};
  m["rtt_ms_median"] = quantile(rtts, 0.5);
  m["rtt_ms_p99"] = quantile(rtts, 0.99);
  m["rtt_ms_min"] = rtts.empty() ? 0.0 : *std::min_element(rtts.begin(), rtts.end());
  m["rtt_ms_max"] = rtts.empty() ? 0.0 : *std::max_element(rtts.begin(), rtts.end());
  // One-way loss, pooled over both directions (each direction is one trial per packet).
  const std::uint64_t trials = sent + at_server;
  const std::uint64_t lost = c2s_lost + s2c_lost;
  auto pooled = loss_json(lost, trials);
  m["loss_pct"] = pooled["loss_pct"];
  m["loss_ci95"] = pooled["loss_ci95"];
  m["loss_c2s"] = loss_json(c2s_lost, sent);
  m["loss_s2c"] = loss_json(s2c_lost, at_server);

  // Phase 2: goodput behind the rate cap.
  if (rate_mbit > 0) {
    const int payload = std::clamp(blast_size, static_cast<int>(sizeof(Header)), 65507);
    const double offered_mbit = rate_mbit * 1.1;
    // Pace IP packet bytes (payload + 28 bytes of IPv4/UDP header) at 1.1x the cap.
    const auto gap_ns = static_cast<std::uint64_t>((payload + 28) * 8 / (offered_mbit * 1e6) * 1e9);
    const auto total =
        static_cast<std::uint64_t>(seconds * 1e9 / static_cast<double>(std::max<std::uint64_t>(gap_ns, 1)));
    Client b = c;
    b.session = c.session ^ 0x5a5a5a5a5a5a5a5aULL;
    std::vector<std::uint8_t> pkt(static_cast<std::size_t>(payload), 0xab);
    const std::uint64_t t0 = now_ns();
    std::uint64_t send_errors = 0;
    // Everything already due goes out in one sendmmsg (at most 64), so a
    // sender that falls behind catches up instead of capping the offered load.
    // Bounded in count and in time (the planned length plus 50 %).
    constexpr std::size_t kBatch = 64;
    std::vector<std::vector<std::uint8_t>> bufs(kBatch, pkt);
    std::vector<mmsghdr> msgs(kBatch);
    std::vector<iovec> iovs(kBatch);
    const std::uint64_t hard_end = t0 + static_cast<std::uint64_t>(seconds * 1.5e9);
    std::uint64_t i = 0;
    while (i < total && now_ns() < hard_end) {
      const std::uint64_t due = t0 + i * gap_ns;
      std::uint64_t t = now_ns();
      if (t < due) {
        sleep_until_ns(due);
        t = now_ns();
      }
      std::size_t n = 0;
      while (n < kBatch && i + n < total && t0 + (i + n) * gap_ns <= t) {
        Header h{kMagic, kBlast, {}, b.session, i + n, t};
        std::memcpy(bufs[n].data(), &h, sizeof h);
        iovs[n] = iovec{bufs[n].data(), bufs[n].size()};
        msgs[n] = mmsghdr{};
        msgs[n].msg_hdr.msg_name = &b.to;
        msgs[n].msg_hdr.msg_namelen = sizeof b.to;
        msgs[n].msg_hdr.msg_iov = &iovs[n];
        msgs[n].msg_hdr.msg_iovlen = 1;
        ++n;
      }
      int sent_now = ::sendmmsg(b.fd, msgs.data(), static_cast<unsigned>(n), 0);
      if (sent_now < static_cast<int>(n)) send_errors += n - static_cast<std::size_t>(std::max(sent_now, 0));
      i += n;
    }
    const std::uint64_t sent_total = i;
    const double send_s = static_cast<double>(now_ns() - t0) / 1e9;
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(std::clamp(3 * worst, 300.0, 3000.0))));
    StatsBody bs{};
    if (!query_stats(b, bs)) {
      std::fprintf(stderr, "linkprobe: no stats after the blast\n");
      return 3;
    }
    double goodput = 0;
    if (bs.blast_packets > 1 && bs.blast_span_ns > 0) {
      // Bytes after the first arrival over the span they took.
      goodput = static_cast<double>(bs.blast_bytes - bs.blast_first_bytes) * 8 /
                (static_cast<double>(bs.blast_span_ns) / 1e9) / 1e6;
    }
    m["goodput_mbit"] = goodput;
    m["goodput_ip_mbit"] = goodput * (payload + 28) / payload;
    m["blast"] = {
        {"payload_bytes", payload},
        {"offered_mbit", offered_mbit},
        {"sent", sent_total},
        {"sent_mbit", static_cast<double>(sent_total * static_cast<std::uint64_t>(payload + 28) * 8) / send_s / 1e6},
        {"send_errors", send_errors},
        {"send_seconds", send_s},
        {"received", bs.blast_packets},
        {"span_seconds", static_cast<double>(bs.blast_span_ns) / 1e9}};
  }
  // Verdict against the fidelity targets: RTT median within +-1 ms, the
  // configured loss inside the measured 95 % interval, goodput within 5 % of the cap.
  nlohmann::json v = nlohmann::json::object();
  bool pass = true;
  if (expect.rtt_ms >= 0) {
    const double err = m["rtt_ms_median"].get<double>() - expect.rtt_ms;
    v["rtt_median_error_ms"] = err;
    v["rtt_ok"] = std::fabs(err) <= 1.0;
    pass = pass && std::fabs(err) <= 1.0;
  }
  if (expect.loss_pct >= 0) {
    auto ci = m["loss_ci95"];
    if (expect.loss_autocorr > 0) {
      // Correlated (bursty) losses carry less information than independent
      // ones: the variance of the mean grows by (1 + rho) / (1 - rho), so the
      // interval is computed on that many fewer trials.
      const double rho = std::min(expect.loss_autocorr, 0.999);
      const double factor = (1 + rho) / (1 - rho);
      const auto n_eff = static_cast<std::uint64_t>(std::max(1.0, static_cast<double>(trials) / factor));
      const auto l_eff = static_cast<std::uint64_t>(std::llround(static_cast<double>(lost) / factor));
      auto [lo, hi] = wilson95(std::min(l_eff, n_eff), n_eff);
      ci = {100.0 * lo, 100.0 * hi};
      m["loss_ci95_bursty"] = ci;
    }
    const bool ok = expect.loss_pct >= ci[0].get<double>() && expect.loss_pct <= ci[1].get<double>();
    v["loss_ok"] = ok;
    pass = pass && ok;
  }
  if (rate_mbit > 0) {
    const double err = (m["goodput_mbit"].get<double>() - rate_mbit) / rate_mbit;
    v["goodput_error_pct"] = 100.0 * err;
    v["goodput_ok"] = std::fabs(err) <= 0.05;
    pass = pass && std::fabs(err) <= 0.05;
  }
  v["pass"] = pass;
  nlohmann::json out = {{"measured", m}, {"verdict", v}};
  std::printf("%s\n", out.dump().c_str());
  ::close(c.fd);
  return 0;
}

}  // namespace

void go_realtime(int priority) {
  if (priority <= 0) return;
  sched_param sp{};
  sp.sched_priority = priority;
  if (::sched_setscheduler(0, SCHED_FIFO, &sp) < 0) {
    std::fprintf(stderr, "linkprobe: SCHED_FIFO %d refused (%s); timing may be noisier\n", priority,
                 std::strerror(errno));
  }
}

int main(int argc, char** argv) {
  // Precise sleeps: pacing and probe spacing want sub-100 us wake-ups.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  int realtime = 0;
  CLI::App app{"linkprobe: measure RTT, loss and goodput of a lab path (see scripts/netlab.sh check)"};
  app.require_subcommand(1);
  app.fallthrough();  // --realtime may follow the subcommand
  app.add_option("--realtime", realtime, "SCHED_FIFO priority (0 = normal)")->check(CLI::Range(0, 99));
  int port = 9000;
  double duration = 300;
  auto* srv = app.add_subcommand("serve", "UDP echo and sink");
  srv->add_option("--port", port, "UDP port")->capture_default_str();
  srv->add_option("--duration", duration, "exit after SECONDS")->capture_default_str();

  std::string to;
  int count = 1000, size = 64, blast_size = 1472;
  double interval_ms = 2, rate_mbit = 0, seconds = 3;
  auto* mes = app.add_subcommand("measure", "probe RTT and loss, then goodput; prints one JSON object");
  mes->add_option("--to", to, "server ADDR:PORT")->required();
  mes->add_option("--count", count, "probes to send")->capture_default_str()->check(CLI::Range(1, 1000000));
  mes->add_option("--interval-ms", interval_ms, "gap between probes")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 10000.0));
  mes->add_option("--size", size, "probe size in bytes (UDP payload)")
      ->capture_default_str()
      ->check(CLI::Range(32, 65507));
  mes->add_option("--rate-mbit", rate_mbit, "configured cap; 0 skips the goodput phase")->capture_default_str();
  mes->add_option("--seconds", seconds, "length of the goodput blast")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 60.0));
  Expect expect;
  std::string model = "bernoulli";
  mes->add_option("--expect-rtt-ms", expect.rtt_ms, "configured RTT, for the verdict");
  mes->add_option("--expect-loss-pct", expect.loss_pct, "configured one-way loss in percent, for the verdict");
  mes->add_option("--loss-model", model, "bernoulli or gilbert (informational)");
  mes->add_option("--loss-autocorr", expect.loss_autocorr,
                  "lag-1 correlation of the configured loss process (Gilbert-Elliott: 1 - p - r), for the verdict")
      ->check(CLI::Range(0.0, 1.0));
  mes->add_option("--blast-size", blast_size, "blast UDP payload bytes (1472 fills a 1500-byte MTU)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  go_realtime(realtime);
  if (srv->parsed()) return serve(port, duration);
  return measure(to, count, interval_ms, size, rate_mbit, seconds, blast_size, expect);
}
