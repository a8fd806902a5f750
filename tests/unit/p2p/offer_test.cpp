// The manual-signalling offer (p2p/offer.*): a round trip keeps every field,
// and each kind of bad input is refused with an error that names it.
#include "p2p/offer.hpp"

#include <catch2/catch.hpp>

using namespace quiclab;

namespace {
p2p::Offer sample() {
  p2p::Offer o;
  o.name = "alice";
  o.controlling = true;
  o.ice.ufrag = "abcdEFGH";
  o.ice.password = "0123456789abcdefghij+/XY";
  o.ice.tie_breaker = 0xfedcba9876543210ull;  // above 2^53: would not survive as a JSON number
  o.ice.fingerprint = Bytes(32, 0xAB);
  o.candidates = {{ice::CandidateType::host, SocketAddress::from_ip("10.0.1.2", 5000).value(), 2130706431},
                  {ice::CandidateType::srflx, SocketAddress::from_ip("2001:db8::5", 40000).value(), 1694498815}};
  return o;
}
}  // namespace

TEST_CASE("offer: one JSON line round-trips every field", "[p2p][offer]") {
  const auto o = sample();
  const auto line = p2p::offer_to_json(o);
  CHECK(line.find('\n') == std::string::npos);
  CHECK(line.find("\"tie_breaker\":\"fedcba9876543210\"") != std::string::npos);
  auto back = p2p::offer_from_json(line);
  REQUIRE(back);
  CHECK(back->name == "alice");
  CHECK(back->controlling);
  CHECK(back->ice.ufrag == o.ice.ufrag);
  CHECK(back->ice.password == o.ice.password);
  CHECK(back->ice.tie_breaker == o.ice.tie_breaker);
  CHECK(back->ice.fingerprint == o.ice.fingerprint);
  REQUIRE(back->candidates.size() == 2);
  CHECK(back->candidates[1].type == ice::CandidateType::srflx);
  CHECK(back->candidates[1].address == o.candidates[1].address);
  CHECK(back->candidates[1].priority == o.candidates[1].priority);
}

TEST_CASE("offer: bad input is refused and the error says what was wrong", "[p2p][offer]") {
  auto line = p2p::offer_to_json(sample());
  auto with = [&](const std::string& from, const std::string& to) {
    auto s = line;
    auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
  };
  auto refused = [](const std::string& text) {
    auto r = p2p::offer_from_json(text);
    REQUIRE_FALSE(r);
    return r.error().message;
  };
  CHECK_THAT(refused("not json"), Catch::Contains("not a JSON object"));
  CHECK_THAT(refused("[1,2]"), Catch::Contains("not a JSON object"));
  CHECK_THAT(refused(with("\"v\":1", "\"v\":2")), Catch::Contains("version"));
  CHECK_THAT(refused(with("\"name\":\"alice\"", "\"name\":7")), Catch::Contains("\"name\""));
  CHECK_THAT(refused(with("\"controlling\"", "\"boss\"")), Catch::Contains("role"));
  CHECK_THAT(refused(with("fedcba9876543210", "xyz")), Catch::Contains("tie_breaker"));
  CHECK_THAT(refused(with("AB:AB:", "AB;AB:")), Catch::Contains("fingerprint"));
  CHECK_THAT(refused(with("AB:AB:", "")), Catch::Contains("32 bytes"));
  CHECK_THAT(refused(with("abcdEFGH", "a b")), Catch::Contains("ICE-UFRAG"));
  CHECK_THAT(refused(with("10.0.1.2:5000", "10.0.1.2:0")), Catch::Contains("no port"));
  CHECK_THAT(refused(with("10.0.1.2:5000", "not-an-address")), Catch::Contains("candidate address"));
  CHECK_THAT(refused(with("\"host\"", "\"teleport\"")), Catch::Contains("teleport"));
  CHECK_THAT(refused(with("2130706431", "-1")), Catch::Contains("priority"));
  std::string many = "[";
  for (int i = 0; i < 33; ++i) many += std::string(i ? "," : "") + R"({"type":"host","address":"10.0.0.1:1"})";
  many += "]";
  auto at = line.find("\"candidates\":[");
  auto end = line.find("}]", at) + 1;  // the array's end (an IPv6 address has a ']' of its own)
  auto flood = line.substr(0, at) + "\"candidates\":" + many + line.substr(end + 1);
  CHECK_THAT(refused(flood), Catch::Contains("more than 32"));
}
