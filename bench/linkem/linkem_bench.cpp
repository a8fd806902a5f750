// linkem_bench: what the link emulator's scheduler costs, on its own.
//
// Drives linkem::LinkDirection with 1500-byte packets (no impairment, then a
// typical impaired setting) as fast as it can, on simulated time, and prints
// one JSON object: packets/s, Gbit/s of packet bytes, and CPU ns per packet.
// The end-to-end figure through TUN devices (syscalls, kernel forwarding) is
// scripts/lab-bench.sh's job; this one isolates the core.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/linkem/link_emulator.hpp"

using namespace quiclab;

namespace {

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

nlohmann::json run(const std::string& spec, std::size_t packets, std::size_t size) {
  auto cfg = linkem::parse_link_spec(spec);
  if (!cfg) throw std::runtime_error(cfg.error().message);
  linkem::LinkDirection link(*cfg, 0);
  std::vector<linkem::Delivery> out;
  out.reserve(1024);
  // Simulated arrivals at 10 Gbit/s so the queue (if any) is exercised.
  const Timestamp gap = size * 8 * kNanosPerSecond / 10'000'000'000ULL;
  Bytes packet(size, 0x45);
  std::size_t delivered = 0;
  const double cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  Timestamp now = 0;
  for (std::size_t i = 0; i < packets; ++i, now += gap) {
    // A copy per packet, as the TUN adapter makes one per read.
    link.offer(now, Bytes(packet));
    if ((i & 63) == 63) {
      out.clear();
      delivered += link.take_due(now, out);
    }
  }
  while (auto next = link.next_delivery()) {
    out.clear();
    delivered += link.take_due(*next, out);
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  return {{"spec", spec},
          {"packets", packets},
          {"packet_bytes", size},
          {"delivered", delivered},
          {"wall_s", wall},
          {"packets_per_s", static_cast<double>(packets) / wall},
          {"gbit_per_s", static_cast<double>(packets * size * 8) / wall / 1e9},
          {"cpu_ns_per_packet", cpu * 1e9 / static_cast<double>(packets)}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"linkem_bench: throughput and CPU cost of the link emulator's scheduler (sans-IO)"};
  std::size_t packets = 2'000'000, size = 1500;
  app.add_option("--packets", packets, "packets per setting")
      ->capture_default_str()
      ->check(CLI::Range(1000, 100'000'000));
  app.add_option("--size", size, "packet bytes")->capture_default_str()->check(CLI::Range(20, 65535));
  CLI11_PARSE(app, argc, argv);
  nlohmann::json results = nlohmann::json::array();
  for (const char* spec : {"", "delay=20ms", "delay=20ms jitter=2ms loss=1% queue-pkts=100000",
                           "delay=20ms rate=1gbit loss=1% queue-pkts=1000"}) {
    results.push_back(run(spec, packets, size));
  }
  std::printf("%s\n", nlohmann::json{{"bench", "linkem core"}, {"results", results}}.dump(2).c_str());
  return 0;
}
