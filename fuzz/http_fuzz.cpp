// Fuzzes the request-facing text parsers of the shared HTTP model: the request
// path → static file mapping (decoding, segment checks; the root is a fixed
// empty directory so nothing is served), percent-decoding, /bytes/N sizes and
// URL parsing. None may crash, hang or read out of bounds on any input.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "transport/http/app.hpp"
#include "transport/http/client.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  static const std::filesystem::path root = [] {
    auto p = std::filesystem::temp_directory_path() / "quiclab-http-fuzz-root";
    std::filesystem::create_directories(p);
    return p;
  }();
  (void)quiclab::http::resolve_static_path(root, in);
  (void)quiclab::http::percent_decode(in);
  (void)quiclab::http::parse_size(in);
  (void)quiclab::http::Url::parse(in);
  return 0;
}
