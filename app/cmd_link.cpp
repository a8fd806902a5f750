// quiclab link: the userspace link emulator, for kernels without sch_netem.
//
// Two TUN devices in the router namespace, one per direction; policy routing
// (set up by scripts/netlab.sh) sends client->server packets into the c2s TUN
// and server->client packets into the s2c TUN. We read each packet, run it
// through that direction's linkem::LinkDirection (the sans-IO scheduler) and,
// at its delivery time, write it back into the same TUN, from where the
// kernel forwards it on. One libuv loop: a uv::Poll on each TUN fd and on a
// timerfd that is armed (absolute, CLOCK_MONOTONIC, ns resolution) for the
// earliest delivery.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "bench/linkem/link_emulator.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/log.hpp"
#include "transport/core/uv.hpp"

namespace quiclab {
namespace {

struct Options {
  std::string tun_c2s;
  std::string tun_s2c;
  std::string link_spec;
  std::string c2s_spec;
  std::string s2c_spec;
  std::uint64_t seed = 0;
  bool seed_given = false;
  std::string event_log;
  std::string ready_file;
  std::string epoch_file;
  double duration_s = 0;
  int realtime = 0;
};

/// A file descriptor that closes itself.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Result<int> open_tun(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return make_error(ErrorDomain::config, EINVAL,
                      "TUN name '" + name + "' must be 1.." + std::to_string(IFNAMSIZ - 1) + " characters");
  }
  int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return make_error(ErrorDomain::os, errno, std::string("open /dev/net/tun: ") + std::strerror(errno));
  ifreq ifr{};
  // IFF_NO_PI: plain IP packets, no 4-byte packet-info prefix. Attaches to a
  // persistent device of that name (ip tuntap add ... mode tun) or creates one.
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    ::close(fd);
    return make_error(ErrorDomain::os, e,
                      "TUNSETIFF " + name + ": " + std::strerror(e) +
                          " (needs CAP_NET_ADMIN; a persistent device must be 'mode tun' without 'pi')");
  }
  return fd;
}

/// One direction: its scheduler and the TUN device it reads from and writes back to.
struct Direction {
  std::string name;
  std::unique_ptr<linkem::LinkDirection> link;
  int fd = -1;
  std::uint64_t read_errors = 0;
  std::uint64_t write_errors = 0;
};

nlohmann::json counters_json(const Direction& d) {
  const auto& c = d.link->counters();
  return {
      {"packets_in", c.packets_in},
      {"bytes_in", c.bytes_in},
      {"delivered_packets", c.delivered_packets},
      {"delivered_bytes", c.delivered_bytes},
      {"dropped_loss", c.dropped_loss},
      {"dropped_queue", c.dropped_queue},
      {"dropped_outage", c.dropped_outage},
      {"dropped_droplist", c.dropped_droplist},
      {"in_flight", d.link->in_flight()},
      {"max_queue_packets", c.max_queue_packets},
      {"max_queue_bytes", c.max_queue_bytes},
      {"read_errors", d.read_errors},
      {"write_errors", d.write_errors},
      {"timer_error_us",
       {{"samples", c.lateness.count()},
        {"median", static_cast<double>(c.lateness.quantile(0.5)) / 1e3},
        {"p99", static_cast<double>(c.lateness.quantile(0.99)) / 1e3},
        {"max", static_cast<double>(c.lateness.max()) / 1e3}}},
      {"seed", d.link->config().seed},
      {"spec", d.link->config().to_spec()},
  };
}

int run(const Options& o) {
  const Clock& clock = SteadyClock::instance();
  // The delay line is only as good as our wake-ups: no timer slack, and on a
  // busy machine a real-time priority keeps compilers from delaying packets.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  if (o.realtime > 0) {
    sched_param sp{};
    sp.sched_priority = o.realtime;
    if (::sched_setscheduler(0, SCHED_FIFO, &sp) < 0) {
      log::warn("link: SCHED_FIFO priority {} refused ({}); running at normal priority", o.realtime,
                std::strerror(errno));
    }
  }
  std::uint64_t seed = o.seed;
  if (!o.seed_given) {
    std::random_device rd;
    seed = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  }

  auto base = linkem::parse_link_spec(o.link_spec);
  if (!base) {
    log::error("link: --link: {}", base.error().message);
    return cli::kExitUsage;
  }
  const Timestamp start = clock.now();
  std::array<Direction, 2> dirs;
  const std::string* specs[2] = {&o.c2s_spec, &o.s2c_spec};
  const std::string* tuns[2] = {&o.tun_c2s, &o.tun_s2c};
  const char* names[2] = {"c2s", "s2c"};
  for (std::size_t i = 0; i < 2; ++i) {
    linkem::LinkConfig cfg = *base;
    cfg.seed = linkem::derive_seed(seed, i);
    auto c = linkem::parse_link_spec(*specs[i], cfg);
    if (!c) {
      log::error("link: --{}: {}", names[i], c.error().message);
      return cli::kExitUsage;
    }
    dirs[i].name = names[i];
    dirs[i].link = std::make_unique<linkem::LinkDirection>(*c, start);
  }

  std::vector<std::unique_ptr<Fd>> fds;
  for (std::size_t i = 0; i < 2; ++i) {
    auto fd = open_tun(*tuns[i]);
    if (!fd) {
      log::error("link: {}", fd.error().message);
      return cli::kExitTransport;
    }
    fds.push_back(std::make_unique<Fd>(*fd));
    dirs[i].fd = *fd;
  }
  Fd tfd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (tfd.get() < 0) {
    log::error("link: timerfd_create: {}", std::strerror(errno));
    return cli::kExitInternal;
  }

  std::FILE* event_log = nullptr;
  if (!o.event_log.empty()) {
    event_log = std::fopen(o.event_log.c_str(), "w");
    if (!event_log) {
      log::error("link: cannot open event log {}: {}", o.event_log, std::strerror(errno));
      return cli::kExitUsage;
    }
    std::fputs("# time_ns\tdir\tevent\tseq\tsize\tfate\tdeliver_at_ns\n", event_log);
    for (auto& d : dirs) {
      const char* dname = d.name.c_str();
      d.link->set_observer([event_log, dname, start](const linkem::LinkEvent& e) {
        bool arrival = e.kind == linkem::LinkEvent::Kind::kArrival;
        std::fprintf(event_log, "%llu\t%s\t%s\t%llu\t%u\t%s\t%llu\n", static_cast<unsigned long long>(e.time - start),
                     dname, arrival ? "arrive" : "deliver", static_cast<unsigned long long>(e.seq), e.size,
                     arrival ? std::string(linkem::fate_name(e.fate)).c_str() : "delivered",
                     static_cast<unsigned long long>(e.deliver_at >= start ? e.deliver_at - start : 0));
      });
    }
  }
  struct CloseFile {
    std::FILE* f;
    ~CloseFile() {
      if (f) std::fclose(f);
    }
  } close_log{event_log};

  log::info("link: seed {} (c2s seed {}, s2c seed {})", seed, dirs[0].link->config().seed, dirs[1].link->config().seed);
  for (auto& d : dirs)
    log::info("link: {} on {}: {}", d.name, d.name == "c2s" ? o.tun_c2s : o.tun_s2c, d.link->config().to_spec());

  auto dump = [&](const char* why) {
    nlohmann::json j = {{"event", "counters"},
                        {"why", why},
                        {"uptime_s", static_cast<double>(clock.now() - start) / 1e9},
                        {"seed", seed},
                        {"c2s", counters_json(dirs[0])},
                        {"s2c", counters_json(dirs[1])}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
    if (event_log) std::fflush(event_log);
  };

  uv::Loop loop;
  Timestamp armed = 0;  // Absolute deadline the timerfd is set to; 0 = disarmed.
  std::vector<linkem::Delivery> due;

  // Writes every due packet back into its TUN, then arms the timerfd for the
  // earliest remaining delivery. Called after reads and on each timer expiry.
  auto flush_and_arm = [&] {
    for (;;) {
      Timestamp now = clock.now();
      for (auto& d : dirs) {
        due.clear();
        d.link->take_due(now, due);
        for (auto& p : due) {
          ssize_t n = ::write(d.fd, p.packet.data(), p.packet.size());
          if (n < 0) {
            // A full or down device drops the packet, as a NIC would.
            if (d.write_errors++ < 10) log::warn("link: {} write: {}", d.name, std::strerror(errno));
          }
        }
      }
      Timestamp next = 0;
      for (auto& d : dirs) {
        if (auto t = d.link->next_delivery()) next = next == 0 ? *t : std::min(next, *t);
      }
      if (next == 0) return;              // Nothing in flight; leave the timer as it is (a spurious wake is harmless).
      if (next <= clock.now()) continue;  // Became due while we were writing.
      if (next != armed) {
        itimerspec its{};
        its.it_value.tv_sec = static_cast<time_t>(next / kNanosPerSecond);
        its.it_value.tv_nsec = static_cast<long>(next % kNanosPerSecond);
        if (::timerfd_settime(tfd.get(), TFD_TIMER_ABSTIME, &its, nullptr) < 0) {
          log::error("link: timerfd_settime: {}", std::strerror(errno));
        }
        armed = next;
      }
      return;
    }
  };

  std::vector<uv::Poll> polls;
  std::array<std::uint8_t, 65536> buf{};
  for (auto& d : dirs) {
    polls.emplace_back(loop, d.fd);
    Direction* dp = &d;
    auto st = polls.back().start(UV_READABLE, [&, dp](int status, int) {
      if (status < 0) {
        log::error("link: {} poll: {}", dp->name, uv::error_text(status));
        return;
      }
      // Drain in bounded batches so the other direction and the timer get turns.
      for (int i = 0; i < 256; ++i) {
        ssize_t n = ::read(dp->fd, buf.data(), buf.size());
        if (n < 0) {
          if (errno != EAGAIN && errno != EINTR && dp->read_errors++ < 10) {
            log::warn("link: {} read: {}", dp->name, std::strerror(errno));
          }
          break;
        }
        if (n == 0) break;
        dp->link->offer(clock.now(), Bytes(buf.data(), buf.data() + n));
      }
      flush_and_arm();
    });
    if (!st) {
      log::error("link: {}", st.error().message);
      return cli::kExitInternal;
    }
  }
  uv::Poll timer_poll(loop, tfd.get());
  if (auto st = timer_poll.start(UV_READABLE,
                                 [&](int, int) {
                                   std::uint64_t expirations = 0;
                                   if (::read(tfd.get(), &expirations, sizeof expirations) < 0 && errno != EAGAIN) {
                                     log::warn("link: timerfd read: {}", std::strerror(errno));
                                   }
                                   armed = 0;
                                   flush_and_arm();
                                 });
      !st) {
    log::error("link: {}", st.error().message);
    return cli::kExitInternal;
  }

  bool stopping = false;
  auto stop = [&] {
    if (stopping) return;
    stopping = true;
    loop.stop();
  };
  uv::Signal sigint(loop), sigterm(loop), sigusr1(loop), sighup(loop);
  (void)sigint.start(SIGINT, [&](int) { stop(); });
  (void)sigterm.start(SIGTERM, [&](int) { stop(); });
  (void)sigusr1.start(SIGUSR1, [&](int) { dump("SIGUSR1"); });
  // SIGHUP: a new epoch (an experiment's next run, for draws=flow) from
  // --epoch-file, confirmed by an "epoch" line on stdout; a file that does
  // not hold a number is reported and changes nothing.
  (void)sighup.start(SIGHUP, [&](int) {
    std::uint64_t epoch = 0;
    std::FILE* f = o.epoch_file.empty() ? nullptr : std::fopen(o.epoch_file.c_str(), "r");
    const bool ok = f != nullptr && std::fscanf(f, "%" SCNu64, &epoch) == 1;
    if (f) std::fclose(f);
    if (!ok) {
      log::warn("link: SIGHUP: no epoch number in --epoch-file '{}'", o.epoch_file);
      return;
    }
    for (auto& d : dirs) d.link->set_epoch(epoch);
    std::printf("%s\n", nlohmann::json({{"event", "epoch"}, {"epoch", epoch}}).dump().c_str());
    std::fflush(stdout);
  });
  uv::Timer deadline(loop);
  if (o.duration_s > 0) {
    deadline.start(static_cast<std::uint64_t>(o.duration_s * 1000), 0, [&] { stop(); });
  }

  if (!o.ready_file.empty()) {
    if (std::FILE* f = std::fopen(o.ready_file.c_str(), "w")) {
      std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
      std::fclose(f);
    } else {
      log::warn("link: cannot write ready file {}: {}", o.ready_file, std::strerror(errno));
    }
  }
  log::info("link: running on {} and {}", o.tun_c2s, o.tun_s2c);
  loop.run();

  // Packets still in flight are dropped at exit, as when a cable is pulled.
  dump("exit");
  for (auto& p : polls) p.close();
  timer_poll.close();
  sigint.close();
  sigterm.close();
  sigusr1.close();
  sighup.close();
  deadline.close();
  if (auto live = loop.close(); !live.empty()) log::warn("link: {} handles still open at exit", live.size());
  return cli::kExitOk;
}

const cli::Registration kRegistration{
    "link", "userspace link emulator on TUN devices (for kernels without sch_netem)", [](CLI::App& sub) -> cli::Runner {
      auto o = std::make_shared<Options>();
      sub.footer(
          "Link spec: whitespace/comma separated key=value items, e.g.\n"
          "  'delay=20ms jitter=1ms loss=1% rate=10mbit queue-pkts=100 queue-bytes=150000'\n"
          "Keys: delay, jitter (ns/us/ms/s), reorder=0|1, loss=P%, loss-model=none|bernoulli|gilbert,\n"
          "  ge-p, ge-r, ge-bad, ge-good (Gilbert-Elliott, netem's gemodel p r 1-h 1-k),\n"
          "  rate (bit/kbit/mbit/gbit, 0 = unlimited), queue-pkts, queue-bytes (0 = no byte bound),\n"
          "  outage=DOWN/UP[@FIRST] (down for DOWN every DOWN+UP, first at FIRST, default UP),\n"
          "  drop=K-M[+K-M...] with drop-flow=udp|tcp|any[:PORT] (drop packets K..M of each flow),\n"
          "  seed=N (overrides the seed derived from --seed).\n"
          "Pipeline per direction: drop list/outage/loss -> drop-tail queue -> serialization at rate\n"
          "(virtual link clock, no burst credit) -> delay +- jitter (never reorders unless reorder=1).\n"
          "Counters: one JSON line on stdout at exit and on SIGUSR1. Stops on SIGINT/SIGTERM or --duration.\n"
          "The TUN devices are normally made and routed by scripts/netlab.sh (see docs/lab.md).");
      sub.add_option("--tun-c2s", o->tun_c2s, "TUN device carrying client->server packets")->required();
      sub.add_option("--tun-s2c", o->tun_s2c, "TUN device carrying server->client packets")->required();
      sub.add_option("--link", o->link_spec, "link spec for both directions");
      sub.add_option("--c2s", o->c2s_spec, "extra link spec items for client->server only");
      sub.add_option("--s2c", o->s2c_spec, "extra link spec items for server->client only");
      sub.add_option_function<std::uint64_t>(
          "--seed",
          [o](const std::uint64_t& v) {
            o->seed = v;
            o->seed_given = true;
          },
          "seed; each direction gets its own seed derived from it (default: random, logged)");
      sub.add_option("--event-log", o->event_log, "write one TSV line per arrival and delivery to FILE");
      sub.add_option("--ready-file", o->ready_file, "write our pid to FILE once the TUN devices are attached");
      sub.add_option("--epoch-file", o->epoch_file,
                     "on SIGHUP read an epoch number from FILE (the next run of an experiment: with draws=flow "
                     "its flows draw loss and jitter from (seed, epoch, flow, packet index)); prints an epoch line");
      sub.add_option("--realtime", o->realtime,
                     "run at SCHED_FIFO priority N (1..99; 0 = normal scheduling) for precise delays")
          ->check(CLI::Range(0, 99))
          ->capture_default_str();
      sub.add_option("--duration", o->duration_s, "stop after SECONDS (0 = run until SIGINT/SIGTERM)")
          ->check(CLI::NonNegativeNumber);
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace quiclab
