// Leveled logging through spdlog (Debian's libspdlog-dev): one stderr logger for
// the process, so log lines from every module share format and level.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

#include "transport/core/result.hpp"

namespace quiclab::log {

/// Sets up the process logger on stderr. level: trace, debug, info, warn, error, off.
Status init(std::string_view level = "info");

using spdlog::debug;
using spdlog::error;
using spdlog::info;
using spdlog::trace;
using spdlog::warn;

}  // namespace quiclab::log
