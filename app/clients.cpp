#include "app/clients.hpp"

#include <cerrno>

#include "transport/h2/client.hpp"
#include "transport/h3/client.hpp"

namespace quiclab::app {

Result<std::unique_ptr<http::Client>> make_client(http::Protocol protocol, uv::Loop& loop, const http::Url& origin,
                                                  const http::ClientOptions& options) {
  switch (protocol) {
    case http::Protocol::h2:
      return std::unique_ptr<http::Client>(std::make_unique<h2::Client>(loop, origin, options));
    case http::Protocol::h3:
      return std::unique_ptr<http::Client>(std::make_unique<h3::Client>(loop, origin, options));
  }
  return make_error(ErrorDomain::config, EINVAL, "unknown protocol");
}

std::string origin_key(const http::Url& url) {
  return url.scheme + "://" + (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host) + ":" +
         std::to_string(url.port);
}

}  // namespace quiclab::app
