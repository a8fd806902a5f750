#include "p2p/offer.hpp"

#include <cerrno>
#include <nlohmann/json.hpp>

#include "transport/quic/tls_backend.hpp"

namespace quiclab::p2p {

namespace {

constexpr std::size_t kMaxCandidates = 32;

Error bad(const std::string& what) { return make_error(ErrorDomain::config, EINVAL, "offer: " + what); }

Result<ice::CandidateType> type_from(const std::string& t) {
  if (t == "host") return ice::CandidateType::host;
  if (t == "srflx") return ice::CandidateType::srflx;
  if (t == "prflx") return ice::CandidateType::prflx;
  if (t == "relay") return ice::CandidateType::relay;
  return bad("unknown candidate type '" + t + "'");
}

Result<Bytes> fingerprint_from(const std::string& text) {
  // "AB:CD:..." (32 bytes) as fingerprint_text() writes it.
  Bytes out;
  for (std::size_t i = 0; i < text.size();) {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (i + 1 >= text.size() || hex(text[i]) < 0 || hex(text[i + 1]) < 0)
      return bad("fingerprint is not AB:CD:... hex");
    out.push_back(static_cast<std::uint8_t>(hex(text[i]) << 4 | hex(text[i + 1])));
    i += 2;
    if (i < text.size()) {
      if (text[i] != ':') return bad("fingerprint is not AB:CD:... hex");
      ++i;
    }
  }
  if (out.size() != 32) return bad("fingerprint is not 32 bytes (SHA-256)");
  return out;
}

}  // namespace

std::string offer_to_json(const Offer& o) {
  nlohmann::json j;
  j["v"] = 1;
  j["name"] = o.name;
  j["role"] = o.controlling ? "controlling" : "controlled";
  j["ufrag"] = o.ice.ufrag;
  j["password"] = o.ice.password;
  char tb[17];
  std::snprintf(tb, sizeof tb, "%016llx", static_cast<unsigned long long>(o.ice.tie_breaker));
  j["tie_breaker"] = tb;
  j["fingerprint"] = quic::tls::fingerprint_text(o.ice.fingerprint);
  auto& cands = j["candidates"] = nlohmann::json::array();
  for (const auto& c : o.candidates)
    cands.push_back(
        {{"type", std::string(ice::to_string(c.type))}, {"address", c.address.to_string()}, {"priority", c.priority}});
  return j.dump();
}

Result<Offer> offer_from_json(std::string_view line) {
  auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto str = [&](const char* key) -> Result<std::string> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return bad(std::string("\"") + key + "\" missing or not a string");
    return it->get<std::string>();
  };
  if (!j.contains("v") || !j["v"].is_number_integer() || j["v"].get<int>() != 1)
    return bad("\"v\" is not 1 (an offer of another version)");
  Offer o;
  auto name = str("name");
  auto role = str("role");
  auto ufrag = str("ufrag");
  auto password = str("password");
  auto tb = str("tie_breaker");
  auto fp = str("fingerprint");
  for (auto* r : {&name, &role, &ufrag, &password, &tb, &fp})
    if (!*r) return r->error();
  if (*role != "controlling" && *role != "controlled") return bad("\"role\" is neither controlling nor controlled");
  o.name = *name;
  o.controlling = *role == "controlling";
  o.ice.ufrag = *ufrag;
  o.ice.password = *password;
  if (tb->empty() || tb->size() > 16 || tb->find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
    return bad("\"tie_breaker\" is not up to 16 hex digits");
  o.ice.tie_breaker = std::stoull(*tb, nullptr, 16);
  auto fingerprint = fingerprint_from(*fp);
  if (!fingerprint) return fingerprint.error();
  o.ice.fingerprint = *fingerprint;
  // The ICE values obey the same rules as in an introduction.
  stun::Message probe;
  rendezvous::add_offer(probe, o.ice);
  if (auto checked = rendezvous::read_offer(probe); !checked) return bad(checked.error().message);
  auto it = j.find("candidates");
  if (it == j.end() || !it->is_array()) return bad("\"candidates\" missing or not an array");
  if (it->size() > kMaxCandidates) return bad("more than " + std::to_string(kMaxCandidates) + " candidates");
  for (const auto& c : *it) {
    if (!c.is_object() || !c.contains("type") || !c["type"].is_string() || !c.contains("address") ||
        !c["address"].is_string())
      return bad("a candidate without \"type\" and \"address\" strings");
    auto type = type_from(c["type"].get<std::string>());
    if (!type) return type.error();
    auto address = SocketAddress::parse(c["address"].get<std::string>());
    if (!address) return bad("candidate address: " + address.error().message);
    if (address->port() == 0) return bad("candidate address " + address->to_string() + " has no port");
    std::uint32_t priority = 0;
    if (c.contains("priority")) {
      if (!c["priority"].is_number_unsigned() || c["priority"].get<std::uint64_t>() > 0xFFFFFFFFu)
        return bad("candidate priority is not a 32-bit unsigned number");
      priority = c["priority"].get<std::uint32_t>();
    }
    o.candidates.push_back({*type, *address, priority});
  }
  return o;
}

}  // namespace quiclab::p2p
