#include <charconv>

#include "transport/http/client.hpp"

namespace quiclab::http {

std::string Url::authority() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return port == 443 ? h : h + ":" + std::to_string(port);
}

std::string Url::to_string() const { return scheme + "://" + authority() + path; }

Result<Url> Url::parse(std::string_view text) {
  Url u;
  auto sep = text.find("://");
  if (sep == std::string_view::npos)
    return make_error(ErrorDomain::http, EINVAL, "not a URL (no scheme): '" + std::string(text) + "'");
  u.scheme = std::string(text.substr(0, sep));
  if (u.scheme != "https")
    return make_error(ErrorDomain::http, EINVAL, "unsupported scheme '" + u.scheme + "' (only https)");
  auto rest = text.substr(sep + 3);
  auto slash = rest.find_first_of("/?#");
  auto authority = rest.substr(0, slash);
  u.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (auto hash = u.path.find('#'); hash != std::string::npos) u.path.resize(hash);
  if (u.path.empty() || u.path.front() == '?') u.path.insert(0, "/");
  if (authority.find('@') != std::string_view::npos)
    return make_error(ErrorDomain::http, EINVAL, "user info in URLs is not supported");
  if (authority.empty()) return make_error(ErrorDomain::http, EINVAL, "missing host in '" + std::string(text) + "'");
  std::string_view port_text;
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos)
      return make_error(ErrorDomain::http, EINVAL, "missing ']' in '" + std::string(text) + "'");
    u.host = std::string(authority.substr(1, close - 1));
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return make_error(ErrorDomain::http, EINVAL, "junk after ']' in '" + std::string(text) + "'");
      port_text = after.substr(1);
    }
  } else {
    auto colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (u.host.empty()) return make_error(ErrorDomain::http, EINVAL, "missing host in '" + std::string(text) + "'");
  for (char c : u.path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return make_error(ErrorDomain::http, EINVAL, "control character or space in URL path");
  }
  if (!port_text.empty() || (authority.back() == ':')) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), v);
    if (port_text.empty() || ec != std::errc() || p != port_text.data() + port_text.size() || v == 0 || v > 65535) {
      return make_error(ErrorDomain::http, EINVAL,
                        "bad port '" + std::string(port_text) + "' in '" + std::string(text) + "'");
    }
    u.port = static_cast<std::uint16_t>(v);
  }
  return u;
}

}  // namespace quiclab::http
