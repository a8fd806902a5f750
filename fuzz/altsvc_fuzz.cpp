// libFuzzer target over the Alt-Svc parser the HTTP/2 client uses to find an
// HTTP/3 endpoint (RFC 7838): any header value, against a fixed origin host.
// It may not crash or read out of bounds, and a port it returns is 1..65535.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "transport/h3/alt_svc.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view value(reinterpret_cast<const char*>(data), size);
  for (std::string_view host : {"example.test", "127.0.0.1", "::1", ""}) {
    auto port = quiclab::h3::parse_alt_svc_h3(value, host);
    if (port && *port == 0) __builtin_trap();
  }
  return 0;
}
