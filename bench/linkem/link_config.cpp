#include "bench/linkem/link_config.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <string>

namespace quiclab::linkem {

double GilbertElliott::mean_loss() const {
  if (p + r <= 0.0) return loss_good;
  double bad_share = p / (p + r);
  return bad_share * loss_bad + (1.0 - bad_share) * loss_good;
}

bool OutageSchedule::is_down(Timestamp since_start) const {
  if (!enabled() || since_start < first_down) return false;
  Timestamp period = down + up;
  return (since_start - first_down) % period < down;
}

namespace {

Error bad(std::string what) { return make_error(ErrorDomain::config, EINVAL, std::move(what)); }

bool is_prob(double v) { return v >= 0.0 && v <= 1.0; }

// std::from_chars for double: digits only, so "1e-3" and "0.5" work and
// "abc" or "1.5x" are refused (the caller strips the unit first).
Result<double> parse_number(std::string_view text) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty() || !std::isfinite(v)) {
    return bad(fmt::format("'{}' is not a number", text));
  }
  return v;
}

Result<std::uint64_t> parse_unsigned(std::string_view text) {
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) {
    return bad(fmt::format("'{}' is not a non-negative integer", text));
  }
  return v;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string format_duration(Timestamp ns) {
  if (ns % kNanosPerMilli == 0) return fmt::format("{}ms", ns / kNanosPerMilli);
  if (ns % 1000 == 0) return fmt::format("{}us", ns / 1000);
  return fmt::format("{}ns", ns);
}

std::string format_prob(double p) { return fmt::format("{}%", p * 100.0); }

Status apply(LinkConfig& c, std::string_view key, std::string_view value) {
  auto wrap = [&](const Error& e) { return bad(fmt::format("link spec item '{}={}': {}", key, value, e.message)); };
  if (key == "delay" || key == "jitter") {
    auto d = parse_duration(value);
    if (!d) return wrap(d.error());
    (key == "delay" ? c.delay : c.jitter) = *d;
  } else if (key == "reorder") {
    if (value != "0" && value != "1") return wrap(bad("use 0 or 1"));
    c.reorder = value == "1";
  } else if (key == "loss") {
    auto p = parse_probability(value);
    if (!p) return wrap(p.error());
    c.loss = *p;
    if (c.loss_model == LossModel::kNone) c.loss_model = LossModel::kBernoulli;
  } else if (key == "loss-model") {
    if (value == "none") {
      c.loss_model = LossModel::kNone;
    } else if (value == "bernoulli") {
      c.loss_model = LossModel::kBernoulli;
    } else if (value == "gilbert") {
      c.loss_model = LossModel::kGilbertElliott;
    } else {
      return wrap(bad("use none, bernoulli or gilbert"));
    }
  } else if (key == "ge-p" || key == "ge-r" || key == "ge-bad" || key == "ge-good") {
    auto p = parse_probability(value);
    if (!p) return wrap(p.error());
    double& field = key == "ge-p"     ? c.gilbert.p
                    : key == "ge-r"   ? c.gilbert.r
                    : key == "ge-bad" ? c.gilbert.loss_bad
                                      : c.gilbert.loss_good;
    field = *p;
    c.loss_model = LossModel::kGilbertElliott;
  } else if (key == "rate") {
    auto r = parse_rate(value);
    if (!r) return wrap(r.error());
    c.rate_bps = *r;
  } else if (key == "queue-pkts" || key == "queue-bytes") {
    auto n = parse_unsigned(value);
    if (!n) return wrap(n.error());
    (key == "queue-pkts" ? c.queue_packets : c.queue_bytes) = static_cast<std::size_t>(*n);
  } else if (key == "outage") {
    // DOWN/UP[@FIRST]
    auto slash = value.find('/');
    if (slash == std::string_view::npos) return wrap(bad("expected DOWN/UP[@FIRST]"));
    auto rest = value.substr(slash + 1);
    auto at = rest.find('@');
    auto down = parse_duration(value.substr(0, slash));
    auto up = parse_duration(rest.substr(0, at));
    if (!down) return wrap(down.error());
    if (!up) return wrap(up.error());
    c.outage.down = *down;
    c.outage.up = *up;
    c.outage.first_down = *up;
    if (at != std::string_view::npos) {
      auto first = parse_duration(rest.substr(at + 1));
      if (!first) return wrap(first.error());
      c.outage.first_down = *first;
    }
  } else if (key == "drop") {
    c.drop_list.clear();
    std::string_view items = value;
    while (!items.empty()) {
      auto plus = items.find('+');
      auto item = items.substr(0, plus);
      items = plus == std::string_view::npos ? std::string_view{} : items.substr(plus + 1);
      auto dash = item.find('-');
      auto first = parse_unsigned(item.substr(0, dash));
      auto last = dash == std::string_view::npos ? first : parse_unsigned(item.substr(dash + 1));
      if (!first) return wrap(first.error());
      if (!last) return wrap(last.error());
      c.drop_list.push_back(DropRange{*first, *last});
    }
  } else if (key == "drop-flow") {
    auto colon = value.find(':');
    auto proto = value.substr(0, colon);
    if (proto == "udp") {
      c.drop_flow.protocol = 17;
    } else if (proto == "tcp") {
      c.drop_flow.protocol = 6;
    } else if (proto == "any") {
      c.drop_flow.protocol = 0;
    } else {
      return wrap(bad("protocol must be udp, tcp or any"));
    }
    c.drop_flow.port = 0;
    if (colon != std::string_view::npos) {
      auto port = parse_unsigned(value.substr(colon + 1));
      if (!port || *port > 65535) return wrap(bad("port must be 0..65535"));
      c.drop_flow.port = static_cast<std::uint16_t>(*port);
    }
  } else if (key == "draws") {
    if (value == "flow")
      c.per_flow_draws = true;
    else if (value == "arrival")
      c.per_flow_draws = false;
    else
      return wrap(bad("want arrival or flow"));
  } else if (key == "seed") {
    auto s = parse_unsigned(value);
    if (!s) return wrap(s.error());
    c.seed = *s;
  } else {
    return bad(fmt::format("unknown link spec key '{}'", key));
  }
  return {};
}

}  // namespace

Result<Timestamp> parse_duration(std::string_view text) {
  struct Unit {
    std::string_view suffix;
    double ns;
  };
  // Longest suffixes first so "ms" is not read as "s".
  static constexpr Unit units[] = {{"ns", 1.0}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}};
  for (const auto& u : units) {
    if (ends_with(text, u.suffix)) {
      auto v = parse_number(text.substr(0, text.size() - u.suffix.size()));
      if (!v) return v.error();
      if (*v < 0) return bad(fmt::format("duration '{}' is negative", text));
      return static_cast<Timestamp>(std::llround(*v * u.ns));
    }
  }
  return bad(fmt::format("duration '{}' needs a unit (ns, us, ms or s)", text));
}

Result<std::uint64_t> parse_rate(std::string_view text) {
  struct Unit {
    std::string_view suffix;
    double bps;
  };
  static constexpr Unit units[] = {{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1.0}};
  for (const auto& u : units) {
    if (ends_with(text, u.suffix)) {
      auto v = parse_number(text.substr(0, text.size() - u.suffix.size()));
      if (!v) return v.error();
      if (*v < 0) return bad(fmt::format("rate '{}' is negative", text));
      return static_cast<std::uint64_t>(std::llround(*v * u.bps));
    }
  }
  if (text == "0") return std::uint64_t{0};
  return bad(fmt::format("rate '{}' needs a unit (bit, kbit, mbit or gbit)", text));
}

Result<double> parse_probability(std::string_view text) {
  bool pct = ends_with(text, "%");
  auto v = parse_number(pct ? text.substr(0, text.size() - 1) : text);
  if (!v) return v.error();
  double p = pct ? *v / 100.0 : *v;
  if (!is_prob(p)) return bad(fmt::format("probability '{}' is outside 0..100%", text));
  return p;
}

Status LinkConfig::validate() const {
  if (!is_prob(loss)) return bad("loss must be in [0, 1]");
  if (!is_prob(gilbert.p) || !is_prob(gilbert.r) || !is_prob(gilbert.loss_bad) || !is_prob(gilbert.loss_good)) {
    return bad("Gilbert-Elliott parameters must be in [0, 1]");
  }
  if (queue_packets < 1) return bad("queue-pkts must be at least 1");
  if (outage.enabled() && outage.up == 0) return bad("outage up time must be > 0");
  for (const auto& r : drop_list) {
    if (r.first < 1 || r.last < r.first) {
      return bad(fmt::format("drop range {}-{} must be 1-based and ordered", r.first, r.last));
    }
  }
  return {};
}

std::string LinkConfig::to_spec() const {
  std::string s =
      fmt::format("delay={} jitter={} reorder={}", format_duration(delay), format_duration(jitter), reorder ? 1 : 0);
  switch (loss_model) {
    case LossModel::kNone:
      s += " loss-model=none";
      break;
    case LossModel::kBernoulli:
      s += fmt::format(" loss={}", format_prob(loss));
      break;
    case LossModel::kGilbertElliott:
      s += fmt::format(" ge-p={} ge-r={} ge-bad={} ge-good={}", format_prob(gilbert.p), format_prob(gilbert.r),
                       format_prob(gilbert.loss_bad), format_prob(gilbert.loss_good));
      break;
  }
  s += fmt::format(" rate={}bit queue-pkts={} queue-bytes={}", rate_bps, queue_packets, queue_bytes);
  if (outage.enabled()) {
    s += fmt::format(" outage={}/{}@{}", format_duration(outage.down), format_duration(outage.up),
                     format_duration(outage.first_down));
  }
  if (!drop_list.empty()) {
    s += " drop=";
    for (std::size_t i = 0; i < drop_list.size(); ++i) {
      s += fmt::format("{}{}-{}", i ? "+" : "", drop_list[i].first, drop_list[i].last);
    }
    s += fmt::format(" drop-flow={}:{}",
                     drop_flow.protocol == 6    ? "tcp"
                     : drop_flow.protocol == 17 ? "udp"
                                                : "any",
                     drop_flow.port);
  }
  s += fmt::format(" seed={}", seed);
  if (per_flow_draws) s += " draws=flow";
  return s;
}

Result<LinkConfig> parse_link_spec(std::string_view spec, LinkConfig base) {
  std::size_t i = 0;
  while (i < spec.size()) {
    while (i < spec.size() && (spec[i] == ' ' || spec[i] == ',' || spec[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < spec.size() && spec[j] != ' ' && spec[j] != ',' && spec[j] != '\t') ++j;
    if (j == i) break;
    auto item = spec.substr(i, j - i);
    i = j;
    auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return bad(fmt::format("link spec item '{}' is not key=value", item));
    }
    if (auto st = apply(base, item.substr(0, eq), item.substr(eq + 1)); !st) return st.error();
  }
  if (auto st = base.validate(); !st) return st.error();
  return base;
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) {
  // splitmix64: well-mixed, so seeds 1 and 2 give unrelated streams.
  std::uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace quiclab::linkem
