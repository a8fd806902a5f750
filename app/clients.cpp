#include "app/clients.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "transport/h2/client.hpp"
#include "transport/h3/client.hpp"
#include "transport/http/happy_eyeballs.hpp"

namespace quiclab::app {

Result<std::unique_ptr<http::Client>> make_client(http::Protocol protocol, uv::Loop& loop, const http::Url& origin,
                                                  const http::ClientOptions& options) {
  // Every client goes through Happy Eyeballs: a name is resolved on the loop
  // and its addresses raced (one attempt only for a numeric host).
  http::RacingClient::AttemptFactory factory;
  int socktype = SOCK_STREAM;
  switch (protocol) {
    case http::Protocol::h2:
      factory = [&loop, origin, options](const SocketAddress& remote) -> std::unique_ptr<http::Client> {
        auto o = options;
        o.remote = remote;
        return std::make_unique<h2::Client>(loop, origin, std::move(o));
      };
      break;
    case http::Protocol::h3:
      socktype = SOCK_DGRAM;
      factory = [&loop, origin, options](const SocketAddress& remote) -> std::unique_ptr<http::Client> {
        auto o = options;
        o.remote = remote;
        return std::make_unique<h3::Client>(loop, origin, std::move(o));
      };
      break;
    default:
      return make_error(ErrorDomain::config, EINVAL, "unknown protocol");
  }
  return std::unique_ptr<http::Client>(
      std::make_unique<http::RacingClient>(loop, origin, socktype, options.attempt_delay_ms, std::move(factory)));
}

std::string origin_key(const http::Url& url) {
  return url.scheme + "://" + (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host) + ":" +
         std::to_string(url.port);
}

}  // namespace quiclab::app
