// quiclab-summarize: turns the JSON lines of `quiclab get --json` into one run
// record per experiment run, and a file of run records into summary.json and
// runs.csv (schema: docs/compare.md). Statistics come from stats.hpp.
//
//   quiclab-summarize run --protocol h2 --rtt-ms 50 --loss-pct 1 --rate-mbit 0
//       --workload page --run 3 < get.jsonl >> runs.jsonl
//   quiclab-summarize summary --in runs.jsonl --out DIR [--seed 1]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "bench/compare/stats.hpp"

using nlohmann::json;

namespace {

// A cell of the grid and a workload: what makes two runs comparable. The
// link's shape beyond RTT, loss and rate (loss model, queue, jitter,
// reordering) and the congestion-controller pair are part of it.
struct RunKey {
  double rtt_ms, loss_pct, rate_mbit;
  std::string workload;
  std::string loss_model;  // bernoulli | gilbert
  double queue_bdp;        // drop-tail queue in bandwidth-delay products (0: the lab's default)
  double jitter_ms;
  bool reorder;
  std::string cc;  // "h2 controller/h3 controller", e.g. cubic/cubic
  auto tied() const {
    return std::tie(workload, rtt_ms, loss_pct, rate_mbit, loss_model, queue_bdp, jitter_ms, reorder, cc);
  }
  bool operator<(const RunKey& o) const { return tied() < o.tied(); }
};

// A number field, or fallback when it is missing, null (a request that never
// reached that milestone) or not a number.
double number(const json& r, const char* key, double fallback = -1.0) {
  auto it = r.find(key);
  return it != r.end() && it->is_number() ? it->get<double>() : fallback;
}

// The server's records (quiclab serve --conn-log) of the run's connections:
// those of the run's transport (h2 for h2 and h2-resumed, h3 for h3 and h3-0rtt), in order. A
// record of the other protocol is a straggler of an earlier run and is left out.
json server_records(const std::string& path, const std::string& protocol, std::int64_t from_ms, std::int64_t to_ms) {
  json out = json::array();
  if (path.empty()) return out;
  std::ifstream f(path);
  const std::string want = protocol.rfind("h2", 0) == 0 ? "h2" : "h3";  // h2, h2-resumed: TCP
  std::string line;
  while (std::getline(f, line)) {
    try {
      json r = json::parse(line);
      if (!r.is_object() || r.value("protocol", "") != want) continue;
      // With the run's wall-clock window: only connections that began in it
      // (a connection whose close was lost ends at its idle timeout, runs later).
      const auto start = r.value("start_unix_ms", std::int64_t{0});
      if (from_ms > 0 && (start < from_ms || start > to_ms)) continue;
      out.push_back(std::move(r));
    } catch (const json::exception& e) {
      std::cerr << "quiclab-summarize: " << path << ": skipping a server record that is not JSON: " << e.what() << "\n";
    }
  }
  return out;
}

int make_run(const std::string& protocol, double rtt, double loss, double rate, const std::string& workload, int run,
             std::uint64_t seed, const std::string& server_path, const json& extra, std::int64_t from_ms,
             std::int64_t to_ms) {
  json rec = {{"protocol", protocol}, {"rtt_ms", rtt}, {"loss_pct", loss}, {"rate_mbit", rate},
              {"workload", workload}, {"run", run},    {"seed", seed}};
  for (const auto& [k, v] : extra.items()) rec[k] = v;
  std::vector<double> totals;
  double handshake = -1, ttfb = -1, complete = 0;
  std::uint64_t bytes = 0;
  int errors = 0, lines = 0;
  std::string first_error;
  json objects = json::array();
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty() || line[0] != '{') continue;
    json r;
    try {
      r = json::parse(line);
    } catch (const json::exception& e) {
      std::cerr << "quiclab-summarize: skipping a line that is not JSON: " << e.what() << "\n";
      continue;
    }
    ++lines;
    int status = static_cast<int>(number(r, "status", 0));
    if (status < 200 || status >= 300 || r.contains("error")) {
      ++errors;
      if (first_error.empty())
        first_error = r.contains("error") && r["error"].is_string() ? r["error"].get<std::string>()
                                                                    : "status " + std::to_string(status);
    }
    double total = number(r, "total");
    double t = number(r, "ttfb");
    double hs = number(r, "handshake");
    if (hs >= 0 && (handshake < 0 || hs < handshake)) handshake = hs;
    if (t >= 0 && (ttfb < 0 || t < ttfb)) ttfb = t;
    complete = std::max(complete, total);
    bytes += static_cast<std::uint64_t>(number(r, "bytes", 0));
    objects.push_back({{"url", r.contains("url") && r["url"].is_string() ? r["url"].get<std::string>() : ""},
                       {"status", status},
                       {"bytes", number(r, "bytes", 0)},
                       {"ttfb_ms", t},
                       {"complete_ms", total}});
    // --hol: per-object stall times from the client's traces (bench/compare/stall.py).
    for (const char* k : {"stall_ms", "inorder_wait_ms", "own_arrival_ms"}) {
      if (r.contains(k) && r[k].is_number()) objects.back()[k] = r[k];
    }
    for (const char* k : {"retransmissions", "lost_packets", "resumed", "early_data", "tls"}) {
      if (r.contains(k)) rec[k] = r[k];  // tls: what the connection negotiated (library, version, cipher, group)
    }
  }
  rec["ok"] = lines > 0 && errors == 0;
  if (lines == 0) first_error = "no answer from quiclab get";
  if (!first_error.empty()) rec["error"] = first_error;
  rec["requests"] = lines;
  rec["errors"] = errors;
  rec["handshake_ms"] = handshake >= 0 ? json(handshake) : json(nullptr);
  rec["ttfb_ms"] = ttfb >= 0 ? json(ttfb) : json(nullptr);
  rec["complete_ms"] = lines > 0 ? json(complete) : json(nullptr);
  rec["bytes"] = bytes;
  rec["objects"] = objects;
  rec["server_connections"] = server_records(server_path, protocol, from_ms, to_ms);
  std::cout << rec.dump() << "\n";
  return rec["ok"].get<bool>() ? 0 : 1;
}

// Median, p95 and the median's distribution-free interval (order
// statistics: exact coverage for any continuous distribution; null below 6
// samples, which cannot reach 95 %).
std::string fmt_seed(double s) { return std::to_string(static_cast<std::uint64_t>(s)); }

std::string text(const json& r, const char* key, const std::string& fallback = "") {
  auto it = r.find(key);
  return it != r.end() && it->is_string() ? it->get<std::string>() : fallback;
}

RunKey key_of(const json& r) {
  auto it = r.find("reorder");
  return RunKey{number(r, "rtt_ms", 0),
                number(r, "loss_pct", 0),
                number(r, "rate_mbit", 0),
                text(r, "workload"),
                text(r, "loss_model", "bernoulli"),
                number(r, "queue_bdp", 0),
                number(r, "jitter_ms", 0),
                it != r.end() && it->is_boolean() && it->get<bool>(),
                text(r, "cc")};
}

// The key's fields, as they appear in summary cells and ratios.
void put_key(json& j, const RunKey& k) {
  j["rtt_ms"] = k.rtt_ms;
  j["loss_pct"] = k.loss_pct;
  j["rate_mbit"] = k.rate_mbit;
  j["workload"] = k.workload;
  j["loss_model"] = k.loss_model;
  j["queue_bdp"] = k.queue_bdp;
  j["jitter_ms"] = k.jitter_ms;
  j["reorder"] = k.reorder;
  j["cc"] = k.cc;
}

// A protocol that is counted only when its shortcut happened: h3-0rtt runs
// whose early data the server took, h2-resumed runs whose session resumed.
// Other runs of those protocols were full handshakes: flagged, not counted.
bool shortcut_missed(const std::string& proto, const json& r) {
  auto flag = [&](const char* k) {
    auto it = r.find(k);
    return it != r.end() && it->is_boolean() && it->get<bool>();
  };
  if (proto == "h3-0rtt") return !flag("early_data");
  if (proto == "h2-resumed") return !flag("resumed");
  return false;
}

json describe(const std::vector<double>& v) {
  if (v.empty()) return {{"median", nullptr}, {"p95", nullptr}, {"ci95", nullptr}, {"n", 0}};
  auto ci = quiclab::stats::median_ci(v, 0.95);
  auto bc = quiclab::stats::bimodality_coefficient(v);
  return {{"median", *quiclab::stats::median(v)},
          {"bimodality", bc ? json(*bc) : json(nullptr)},
          {"bimodal", bc && *bc > quiclab::stats::kBimodalAbove},
          {"p95", *quiclab::stats::percentile(v, 95)},
          {"ci95", ci ? json::array({ci->low, ci->high}) : json(nullptr)},
          {"ci_coverage", ci ? json(ci->coverage) : json(nullptr)},
          {"n", v.size()}};
}

int summarize(const std::string& in, const std::string& out_dir, std::uint64_t seed) {
  std::ifstream f(in);
  if (!f) {
    std::cerr << "quiclab-summarize: cannot read " << in << "\n";
    return 2;
  }
  // protocol -> cell -> metric -> samples
  std::map<RunKey, std::map<std::string, std::map<std::string, std::vector<double>>>> cells;
  std::map<RunKey, std::map<std::string, std::pair<int, int>>> counts;  // runs, failed
  // The same samples by (seed, run): run r of two protocols forms a pair.
  using RunId = std::pair<double, double>;
  std::map<RunKey, std::map<std::string, std::map<std::string, std::map<RunId, double>>>> by_run;
  std::map<RunKey, std::map<std::string, std::map<std::string, int>>> reasons;  // failed runs by error
  std::map<RunKey, std::map<std::string, int>> missed;  // h3-0rtt / h2-resumed runs without the shortcut
  std::ofstream csv(out_dir + "/runs.csv");
  csv << "protocol,rtt_ms,loss_pct,rate_mbit,workload,loss_model,queue_bdp,jitter_ms,reorder,cc,seed,run,ok,"
         "shortcut_missed,handshake_ms,ttfb_ms,complete_ms,bytes\n";
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty()) continue;
    json r;
    try {
      r = json::parse(line);
    } catch (const json::exception& e) {
      std::cerr << "quiclab-summarize: " << in << ":" << lineno << ": not JSON (" << e.what() << ")\n";
      continue;
    }
    const RunKey key = key_of(r);
    std::string proto = text(r, "protocol");
    bool ok = r.contains("ok") && r["ok"].is_boolean() && r["ok"].get<bool>();
    auto& c = counts[key][proto];
    c.first++;
    if (!ok) {
      c.second++;
      reasons[key][proto][text(r, "error", "unknown")]++;
    }
    // A full handshake in a run of h3-0rtt or h2-resumed: not a sample of that protocol.
    const bool missed_shortcut = ok && shortcut_missed(proto, r);
    if (missed_shortcut) ++missed[key][proto];
    auto num = [&](const char* k) { return number(r, k); };
    csv << proto << "," << key.rtt_ms << "," << key.loss_pct << "," << key.rate_mbit << "," << key.workload << ","
        << key.loss_model << "," << key.queue_bdp << "," << key.jitter_ms << "," << (key.reorder ? 1 : 0) << ","
        << key.cc << "," << number(r, "seed", 0) << "," << num("run") << "," << (ok ? 1 : 0) << ","
        << (missed_shortcut ? 1 : 0) << "," << num("handshake_ms") << "," << num("ttfb_ms") << "," << num("complete_ms")
        << "," << static_cast<std::uint64_t>(number(r, "bytes", 0)) << "\n";
    if (!ok || missed_shortcut) continue;
    for (const char* m : {"handshake_ms", "ttfb_ms", "complete_ms"}) {
      if (num(m) >= 0) {
        cells[key][proto][m].push_back(num(m));
        by_run[key][proto][m][{number(r, "seed", 0), num("run")}] = num(m);
      }
    }
  }
  json summary = {{"schema", "quiclab-compare-summary/2"},
                  {"bootstrap_seed", seed},
                  {"cells", json::array()},
                  {"ratios", json::array()}};
  for (auto& [key, protos] : counts) {
    for (auto& [proto, rc] : protos) {
      json cell = {{"protocol", proto},
                   {"runs", rc.first},
                   {"failed", rc.second},
                   {"failure_rate", rc.first > 0 ? static_cast<double>(rc.second) / rc.first : 0.0},
                   {"failure_reasons", reasons[key][proto]},
                   // Runs that completed without resumption / accepted early data (left out).
                   {"shortcut_missed", missed[key][proto]}};
      put_key(cell, key);
      for (const char* m : {"ttfb_ms", "handshake_ms", "complete_ms"}) {
        cell[m] = describe(cells[key][proto][m]);
        // Per seed: each seed's median, and their spread beside the pooled interval.
        std::map<double, std::vector<double>> per_seed;
        for (const auto& [id, v] : by_run[key][proto][m]) per_seed[id.first].push_back(v);
        if (per_seed.size() >= 2) {
          json seeds = json::object();
          double lo = 0, hi = 0;
          bool first = true;
          for (const auto& [sd, vs] : per_seed) {
            const double med = *quiclab::stats::median(vs);
            seeds[fmt_seed(sd)] = med;
            lo = first ? med : std::min(lo, med);
            hi = first ? med : std::max(hi, med);
            first = false;
          }
          cell[m]["seed_medians"] = seeds;
          cell[m]["between_seed_spread"] = hi - lo;
        }
      }
      summary["cells"].push_back(cell);
    }
    // Each protocol against full-handshake HTTP/2, and the resumed ones
    // against each other (both skip what a returning client may skip).
    static const std::pair<const char*, const char*> kPairs[] = {
        {"h3", "h2"}, {"h3-0rtt", "h2"}, {"h2-resumed", "h2"}, {"h3-0rtt", "h2-resumed"}};
    for (const auto& [other, base] : kPairs) {
      if (!cells[key].count(other) || !cells[key].count(base)) continue;
      auto& h2 = cells[key][base];
      auto& h3 = cells[key][other];
      for (const char* m : {"ttfb_ms", "complete_ms"}) {
        if (h2[m].empty() || h3[m].empty()) continue;
        // Pairs: the runs both protocols completed, matched by (seed, run).
        std::vector<double> a, b;
        for (const auto& [id, v] : by_run[key][base][m]) {
          auto it = by_run[key][other][m].find(id);
          if (it == by_run[key][other][m].end()) continue;
          a.push_back(v);
          b.push_back(it->second);
        }
        auto paired = quiclab::stats::paired_ratio(a, b, 0.95);
        if (!paired) continue;
        const auto& ci = paired->ci;
        json ratio = {{"protocol", other},
                      {"baseline", base},
                      {"metric", m},
                      {"median_ratio", paired->median},
                      {"ci95", ci ? json::array({ci->low, ci->high}) : json(nullptr)},
                      {"pairs", paired->pairs},
                      {"ratio_of_medians", *quiclab::stats::median(h3[m]) / *quiclab::stats::median(h2[m])}};
        put_key(ratio, key);
        summary["ratios"].push_back(std::move(ratio));
      }
    }
  }
  std::ofstream(out_dir + "/summary.json") << summary.dump(2) << "\n";
  return 0;
}

// Exit 0 when a protocol's sample of `metric` in grid cell `cell` is bimodal
// (stats::bimodality_coefficient above 5/9); prints each coefficient.
int bimodal(const std::string& in, int cell, const std::string& metric) {
  std::ifstream f(in);
  std::map<std::string, std::vector<double>> by_proto;
  std::string line;
  while (std::getline(f, line)) {
    json r;
    try {
      r = json::parse(line);
    } catch (const json::exception&) {
      continue;
    }
    if (number(r, "cell", -1) != cell || !r.value("ok", false) || number(r, metric.c_str()) < 0) continue;
    by_proto[r.value("protocol", "")].push_back(number(r, metric.c_str()));
  }
  bool any = false;
  for (const auto& [p, v] : by_proto) {
    auto bc = quiclab::stats::bimodality_coefficient(v);
    std::cout << p << " " << (bc ? std::to_string(*bc) : "-") << "\n";
    any = any || (bc && *bc > quiclab::stats::kBimodalAbove);
  }
  return any ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"quiclab-summarize: run records and summaries for scripts/compare.sh"};
  app.require_subcommand(1);
  auto* run = app.add_subcommand("run", "read `quiclab get --json` lines on stdin, print one run record");
  std::string protocol, workload;
  double rtt = 0, loss = 0, rate = 0;
  int run_no = 0;
  std::uint64_t seed = 1;
  run->add_option("--protocol", protocol, "h2, h2-resumed, h3 or h3-0rtt")->required();
  run->add_option("--rtt-ms", rtt)->required();
  run->add_option("--loss-pct", loss)->required();
  run->add_option("--rate-mbit", rate, "0 for no rate limit");
  run->add_option("--workload", workload)->required();
  run->add_option("--run", run_no)->required();
  run->add_option("--seed", seed);
  std::string server_path;
  run->add_option("--server-records", server_path,
                  "the server's records of this run's connections (quiclab serve --conn-log lines)");
  // Provenance carried by every run record.
  json extra = json::object();
  int cell = 0;
  std::uint64_t cell_seed = 0;
  std::string commit, loss_model;
  run->add_option("--cell", cell, "the cell's number in the grid (1-based)");
  run->add_option("--cell-seed", cell_seed, "the emulator's seed for the cell");
  run->add_option("--commit", commit, "the git commit the binaries were built from");
  run->add_option("--loss-model", loss_model, "bernoulli or gilbert");
  double queue_bdp = 0, jitter_ms = 0;
  bool reorder = false;
  std::string cc;
  run->add_option("--queue-bdp", queue_bdp, "the drop-tail queue in bandwidth-delay products (0: the lab's default)");
  run->add_option("--jitter-ms", jitter_ms, "per-direction delay jitter");
  run->add_flag("--reorder", reorder, "jitter may reorder packets");
  run->add_option("--cc", cc, "the congestion controllers, HTTP/2's/HTTP/3's (e.g. cubic/cubic)");
  std::int64_t from_ms = 0, to_ms = 0;
  run->add_option(
      "--run-window",
      [&](const CLI::results_t& v) {
        // FROM-TO in ms since the Unix epoch: the run's wall-clock span.
        auto dash = v[0].find('-');
        if (dash == std::string::npos) return false;
        try {
          from_ms = std::stoll(v[0].substr(0, dash));
          to_ms = std::stoll(v[0].substr(dash + 1));
        } catch (const std::exception&) {
          return false;
        }
        return from_ms <= to_ms;
      },
      "FROM-TO: keep only server records of connections that began in this span (ms since the Unix epoch)");
  auto* sum = app.add_subcommand("summary", "read run records, write summary.json and runs.csv");
  std::string in, out;
  sum->add_option("--in", in, "runs.jsonl")->required()->check(CLI::ExistingFile);
  sum->add_option("--out", out, "output directory")->required()->check(CLI::ExistingDirectory);
  sum->add_option("--seed", seed, "bootstrap seed");
  auto* bim = app.add_subcommand("bimodal", "exit 0 when a protocol's runs in a cell are bimodal");
  int bim_cell = 0;
  std::string bim_metric = "complete_ms";
  bim->add_option("--in", in, "runs.jsonl")->required()->check(CLI::ExistingFile);
  bim->add_option("--cell", bim_cell, "the cell's number")->required();
  bim->add_option("--metric", bim_metric, "ttfb_ms, complete_ms, ...")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (*bim) return bimodal(in, bim_cell, bim_metric);
  if (*run) {
    if (cell > 0) extra["cell"] = cell;
    if (cell_seed > 0) extra["cell_seed"] = cell_seed;
    if (!commit.empty()) extra["commit"] = commit;
    extra["loss_model"] = loss_model.empty() ? "bernoulli" : loss_model;
    extra["queue_bdp"] = queue_bdp;
    extra["jitter_ms"] = jitter_ms;
    extra["reorder"] = reorder;
    if (!cc.empty()) extra["cc"] = cc;
    return make_run(protocol, rtt, loss, rate, workload, run_no, seed, server_path, extra, from_ms, to_ms);
  }
  return summarize(in, out, seed);
}
