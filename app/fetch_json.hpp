// The JSON object `quiclab get --json` prints per request, shared with
// `quiclab peer --get` (one line per fetch, the same fields).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "transport/core/clock.hpp"
#include "transport/http/client.hpp"

namespace quiclab::app {

/// ms from the connection start to a milestone, or nullopt when not reached.
std::optional<double> since_connection_start(const http::RequestTiming& t, Timestamp at);

/// url, protocol, status, bytes, connect, handshake, sent, ttfb, total (ms
/// since the connection start, null when not reached) and error on failure.
nlohmann::json fetch_json(const std::string& url, const http::ClientResponse& response, std::string_view protocol);

}  // namespace quiclab::app
