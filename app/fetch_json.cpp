#include "app/fetch_json.hpp"

namespace quiclab::app {

std::optional<double> since_connection_start(const http::RequestTiming& t, Timestamp at) {
  if (at == 0 || t.start == 0 || at < t.start) return std::nullopt;
  return to_ms(at - t.start);
}

nlohmann::json fetch_json(const std::string& url, const http::ClientResponse& r, std::string_view protocol) {
  const auto& t = r.timing;
  nlohmann::json j;
  j["url"] = url;
  j["protocol"] = r.protocol.empty() ? std::string(protocol) : r.protocol;
  j["status"] = r.status;
  j["bytes"] = r.body_bytes;
  auto put = [&](const char* key, Timestamp at) {
    auto v = since_connection_start(t, at);
    j[key] = v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  put("connect", t.connected);
  put("handshake", t.handshake_done);
  put("sent", t.request_sent);
  put("ttfb", t.first_byte);
  put("total", t.complete);
  if (r.error) j["error"] = r.error->message;
  return j;
}

}  // namespace quiclab::app
