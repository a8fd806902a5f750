#include "transport/core/address.hpp"

#include <catch2/catch.hpp>

using quiclab::SocketAddress;

TEST_CASE("addresses parse and print", "[core][address]") {
  auto v4 = SocketAddress::parse("127.0.0.1:4433");
  REQUIRE(v4.ok());
  CHECK(v4->port() == 4433);
  CHECK(v4->to_string() == "127.0.0.1:4433");
  auto v6 = SocketAddress::parse("[::1]:443");
  REQUIRE(v6.ok());
  CHECK(v6->is_v6());
  CHECK(v6->to_string() == "[::1]:443");
  auto bare = SocketAddress::parse("::1", 80);
  REQUIRE(bare.ok());
  CHECK(bare->port() == 80);
  CHECK(SocketAddress::parse("localhost:1").ok());
}

TEST_CASE("bad addresses give a clear error", "[core][address]") {
  CHECK_FALSE(SocketAddress::parse("").ok());
  CHECK_FALSE(SocketAddress::parse("127.0.0.1:99999").ok());
  CHECK_FALSE(SocketAddress::parse("127.0.0.1:x").ok());
  CHECK_FALSE(SocketAddress::parse("[::1").ok());
  auto r = SocketAddress::parse("127.0.0.1");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("missing ':PORT'") != std::string::npos);
}

TEST_CASE("address equality and hashing", "[core][address]") {
  auto a = *SocketAddress::from_ip("10.0.0.1", 5);
  auto b = *SocketAddress::from_ip("10.0.0.1", 5);
  auto c = *SocketAddress::from_ip("10.0.0.1", 6);
  CHECK(a == b);
  CHECK_FALSE(a == c);
  CHECK(a.same_ip(c));
  CHECK(a.hash() == b.hash());
}
