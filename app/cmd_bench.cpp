// quiclab bench: a load generator for HTTP/2 and HTTP/3 on one libuv loop.
// CONNS connections, each with up to STREAMS requests in flight, issuing the
// URLs round-robin until REQUESTS were issued or SECONDS passed; then it reports
// requests/s, MB/s, latency percentiles and errors, in the spirit of h2load so
// the two can be compared on HTTP/2 (bench/loadgen/compare.sh).
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/clients.hpp"
#include "app/commands.hpp"
#include "bench/compare/stats.hpp"
#include "transport/core/uv.hpp"
#include "transport/http/client.hpp"

namespace quiclab::cli {
namespace {

struct BenchOptions {
  bool h2 = false;
  bool h3 = false;
  bool insecure = false;
  std::string cacert;
  unsigned connections = 1;
  unsigned streams = 1;
  std::uint64_t requests = 0;  // 0: not given
  double seconds = 0;          // 0: not given
  double timeout_s = 0;        // 0: derived
  bool json = false;
  quic::UdpPayloadPolicy udp_payload;  // --max-udp-payload
  std::vector<std::string> urls;
};

class Bench;

struct Conn {
  Bench* bench = nullptr;
  std::unique_ptr<http::Client> client;
  std::size_t in_flight = 0;
  bool ready_failed = false;
  bool suspect = false;  // the last request failed: probe with one request at a time
  bool dead = false;     // no more requests on this connection
  bool closing = false;
  bool finished = false;  // closed, on_closed ran
};

class Bench {
 public:
  Bench(const BenchOptions& o, http::Protocol protocol, std::vector<http::Url> urls)
      : o_(o), protocol_(protocol), urls_(std::move(urls)), deadline_timer_(loop_), hard_timer_(loop_) {}

  int run() {
    http::ClientOptions copts;
    copts.insecure = o_.insecure;
    copts.ca_file = o_.cacert;
    copts.max_concurrent_streams = o_.streams;
    copts.keep_metadata = false;  // counts, sizes and timings are all a load generator reads
    copts.timeout_ms = static_cast<std::uint64_t>(hard_timeout_s() * 1000);
    copts.max_udp_payload = o_.udp_payload.forced;
    for (unsigned i = 0; i < o_.connections; ++i) {
      auto client = app::make_client(protocol_, loop_, urls_.front(), copts);
      if (!client) {
        std::cerr << "quiclab bench: " << client.error().message << "\n";
        return kExitUsage;
      }
      auto c = std::make_unique<Conn>();
      c->bench = this;
      c->client = std::move(*client);
      conns_.push_back(std::move(c));
    }
    if (o_.requests) latencies_.reserve(o_.requests);

    // connect() builds each connection's TLS context (OpenSSL's SSL_CTX_new
    // and the CA store: about 1.7 ms each here) before the first packet: local
    // set-up, kept off the clock as h2load keeps it off its.
    for (auto& c : conns_) {
      auto* cp = c.get();
      cp->client->connect([this, cp](Status st) {
        if (!st) {
          cp->ready_failed = true;
          cp->dead = true;
          connect_errors_[st.error().message]++;
        }
      });
    }
    start_ = uv::Loop::hrtime();
    if (o_.seconds > 0) {
      deadline_ = start_ + static_cast<Timestamp>(o_.seconds * 1e9);
      // Stop issuing at the deadline even if no response arrives to notice it.
      deadline_timer_.start(static_cast<std::uint64_t>(o_.seconds * 1000) + 1, 0, [this] {
        for (auto& c : conns_) maybe_close(*c);
      });
    }
    hard_timer_.start(static_cast<std::uint64_t>(hard_timeout_s() * 1000), 0, [this] {
      timed_out_ = true;
      std::cerr << "quiclab bench: hard timeout after " << hard_timeout_s() << " s; aborting\n";
      for (auto& c : conns_) {
        c->dead = true;
        if (!c->finished) {
          c->closing = true;
          auto* cp = c.get();
          c->client->close([this, cp] { on_closed(*cp); }, /*abort=*/true);
        }
      }
    });
    for (auto& c : conns_) fill(*c);
    loop_.run();
    const Timestamp end = last_complete_ ? last_complete_ : uv::Loop::hrtime();
    conns_.clear();
    deadline_timer_.close();
    hard_timer_.close();
    loop_.close();
    return report(end - start_);
  }

 private:
  double hard_timeout_s() const {
    if (o_.timeout_s > 0) return o_.timeout_s;
    return o_.seconds > 0 ? o_.seconds * 2 + 30 : 300;
  }

  bool more_to_issue() const {
    if (timed_out_) return false;
    if (o_.requests) return issued_ < o_.requests;
    return uv::Loop::hrtime() < deadline_;
  }

  void fill(Conn& c) {
    std::size_t cap = c.suspect ? 1 : o_.streams;
    while (!c.dead && !c.closing && c.in_flight < cap && more_to_issue()) issue(c);
    maybe_close(c);
  }

  void issue(Conn& c) {
    http::ClientRequest req;
    req.url = urls_[issued_ % urls_.size()];
    ++issued_;
    ++c.in_flight;
    const Timestamp t = uv::Loop::hrtime();
    // Two words of capture fit std::function's inline storage: no allocation per request.
    c.client->submit(std::move(req), nullptr,
                     [cp = &c, t](http::ClientResponse&& r) { cp->bench->on_response(*cp, t, std::move(r)); });
  }

  void on_response(Conn& c, Timestamp t, http::ClientResponse&& r) {
    {
      --c.in_flight;
      const Timestamp now = uv::Loop::hrtime();
      last_complete_ = now;
      if (r.error) {
        ++failed_;
        errors_[r.error->message]++;
        // One failure may be a reset stream; two in a row mean the connection is gone.
        if (c.suspect || c.ready_failed) c.dead = true;
        c.suspect = true;
      } else {
        c.suspect = false;
        ++status_class_[std::min(r.status / 100, 5)];
        bytes_ += r.body_bytes;
        latencies_.push_back(to_ms(now - t));
      }
      fill(c);
    }
  }

  void maybe_close(Conn& c) {
    if (c.closing || c.in_flight > 0) return;
    if (!c.dead && more_to_issue()) return;
    c.closing = true;
    c.client->close([this, &c] { on_closed(c); });
  }

  void on_closed(Conn& c) {
    c.finished = true;
    if (std::all_of(conns_.begin(), conns_.end(), [](const auto& p) { return p->finished; })) {
      deadline_timer_.stop();
      hard_timer_.stop();
    }
  }

  int report(Timestamp elapsed) {
    const double secs = static_cast<double>(elapsed) / 1e9;
    const std::uint64_t ok = latencies_.size();
    const double rps = secs > 0 ? static_cast<double>(ok) / secs : 0;
    const double mbps = secs > 0 ? static_cast<double>(bytes_) / 1e6 / secs : 0;
    auto pct = [&](double p) { return stats::percentile(latencies_, p).value_or(0); };
    double mean = 0;
    for (double v : latencies_) mean += v;
    if (ok) mean /= static_cast<double>(ok);
    const double lmin = ok ? *std::min_element(latencies_.begin(), latencies_.end()) : 0;
    const double lmax = ok ? *std::max_element(latencies_.begin(), latencies_.end()) : 0;
    std::uint64_t connect_failures = 0;
    for (const auto& [msg, count] : connect_errors_) connect_failures += count;
    const std::uint64_t not_issued = o_.requests > issued_ ? o_.requests - issued_ : 0;

    if (o_.json) {
      nlohmann::json j;
      j["protocol"] = http::to_string(protocol_);
      j["url"] = urls_.front().to_string();
      j["connections"] = o_.connections;
      j["streams"] = o_.streams;
      j["requests"] = issued_;
      j["succeeded"] = ok;
      j["failed"] = failed_;
      j["not_issued"] = not_issued;
      j["status"] = {
          {"2xx", status_class_[2]}, {"3xx", status_class_[3]}, {"4xx", status_class_[4]}, {"5xx", status_class_[5]}};
      j["duration_s"] = secs;
      j["req_per_s"] = rps;
      j["bytes"] = bytes_;
      j["mb_per_s"] = mbps;
      j["latency_ms"] = {{"min", lmin},    {"mean", mean},   {"p50", pct(50)},
                         {"p90", pct(90)}, {"p99", pct(99)}, {"max", lmax}};
      j["connect_failures"] = connect_failures;
      j["timed_out"] = timed_out_;
      nlohmann::json errs = nlohmann::json::object();
      for (const auto& [msg, n] : errors_) errs[msg] = n;
      j["errors"] = errs;
      std::cout << j.dump() << "\n";
    } else {
      std::cout << fmt::format("{} {} connection(s) x {} stream(s), {}\n", http::to_string(protocol_), o_.connections,
                               o_.streams, urls_.front().to_string());
      std::cout << fmt::format("finished in {:.3f} s, {:.1f} req/s, {:.2f} MB/s\n", secs, rps, mbps);
      std::cout << fmt::format("requests: {} issued, {} succeeded, {} failed, {} not issued\n", issued_, ok, failed_,
                               not_issued);
      std::cout << fmt::format("status codes: {} 2xx, {} 3xx, {} 4xx, {} 5xx\n", status_class_[2], status_class_[3],
                               status_class_[4], status_class_[5]);
      std::cout << fmt::format("body bytes: {}\n", bytes_);
      std::cout << fmt::format(
          "latency (ms): min {:.3f}, mean {:.3f}, p50 {:.3f}, p90 {:.3f}, p99 {:.3f}, max {:.3f}\n", lmin, mean,
          pct(50), pct(90), pct(99), lmax);
    }
    for (const auto& [msg, n] : connect_errors_) std::cerr << "quiclab bench: connect: " << msg << " (" << n << ")\n";
    for (const auto& [msg, n] : errors_) std::cerr << "quiclab bench: " << msg << " (" << n << " requests)\n";
    if (failed_ || not_issued || timed_out_ || ok == 0) return kExitTransport;
    if (status_class_[4] || status_class_[5]) return kExitHttpError;
    return kExitOk;
  }

  const BenchOptions& o_;
  http::Protocol protocol_;
  std::vector<http::Url> urls_;
  uv::Loop loop_;
  uv::Timer deadline_timer_;
  uv::Timer hard_timer_;
  std::vector<std::unique_ptr<Conn>> conns_;
  Timestamp start_ = 0, deadline_ = 0, last_complete_ = 0;
  std::uint64_t issued_ = 0, failed_ = 0, bytes_ = 0;
  std::uint64_t status_class_[6] = {};
  std::vector<double> latencies_;
  std::map<std::string, std::uint64_t> errors_, connect_errors_;
  bool timed_out_ = false;
};

int run(BenchOptions o) {
  if (o.h2 && o.h3) {
    std::cerr << "quiclab bench: choose one of --h2 and --h3\n";
    return kExitUsage;
  }
  if (o.requests && o.seconds > 0) {
    std::cerr << "quiclab bench: -n and -d exclude each other\n";
    return kExitUsage;
  }
  if (!o.requests && o.seconds <= 0) o.requests = 1000;  // bounded by default
  std::vector<http::Url> urls;
  for (const auto& text : o.urls) {
    auto url = http::Url::parse(text);
    if (!url) {
      std::cerr << "quiclab bench: bad URL '" << text << "': " << url.error().message << "\n";
      return kExitUsage;
    }
    if (!urls.empty() && app::origin_key(*url) != app::origin_key(urls.front())) {
      std::cerr << "quiclab bench: all URLs must share one origin (" << app::origin_key(urls.front()) << ")\n";
      return kExitUsage;
    }
    urls.push_back(*url);
  }
  Bench bench(o, o.h3 ? http::Protocol::h3 : http::Protocol::h2, std::move(urls));
  return bench.run();
}

const Registration reg{
    "bench", "Load generator for HTTP/2 or HTTP/3: req/s, MB/s, latency percentiles", [](CLI::App& sub) -> Runner {
      auto o = std::make_shared<BenchOptions>();
      sub.footer(
          "Requests go round-robin over the URLs (one origin). Without -n or -d, -n 1000.\n"
          "Latency: from handing a request to the client to its completion (like h2load's\n"
          "'time for request'). MB/s counts response body bytes (10^6 bytes).\n"
          "--json prints one object: protocol, url, connections, streams, requests, succeeded,\n"
          "failed, not_issued, status{2xx,3xx,4xx,5xx}, duration_s, req_per_s, bytes, mb_per_s,\n"
          "latency_ms{min,mean,p50,p90,p99,max}, connect_failures, timed_out, errors{message: count}.\n"
          "Exit codes: 0 ok, 1 some 4xx/5xx, 2 usage, 3 failed requests or timeout.");
      auto* h2 = sub.add_flag("--h2", o->h2, "HTTP/2 over TCP+TLS (the default)");
      auto* h3 = sub.add_flag("--h3", o->h3, "HTTP/3 over QUIC");
      h2->excludes(h3);
      auto* insecure = sub.add_flag("-k,--insecure", o->insecure, "Do not verify the server's certificate");
      auto* cacert = sub.add_option("--cacert", o->cacert, "Trust the CA certificate(s) in this PEM file")
                         ->check(CLI::ExistingFile);
      insecure->excludes(cacert);
      sub.add_option("-c,--connections", o->connections, "Concurrent connections")
          ->check(CLI::Range(1u, 10000u))
          ->capture_default_str();
      sub.add_option("-m,--max-streams", o->streams, "Requests in flight per connection")
          ->check(CLI::Range(1u, 10000u))
          ->capture_default_str();
      auto* n = sub.add_option("-n,--requests", o->requests, "Total requests")
                    ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{100000000}));
      auto* d = sub.add_option("-d,--duration", o->seconds, "Issue requests for this many seconds")
                    ->check(CLI::Range(0.001, 3600.0));
      n->excludes(d);
      sub.add_option("--timeout", o->timeout_s,
                     "Hard limit in seconds for the whole run (default: 300, or 2*duration+30 with -d)")
          ->check(CLI::Range(0.001, 7200.0));
      sub.add_flag("--json", o->json, "One JSON summary object instead of text");
      add_udp_payload_option(sub, o->udp_payload);
      sub.add_option("url", o->urls, "https:// URLs of one origin")->required();
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace quiclab::cli
