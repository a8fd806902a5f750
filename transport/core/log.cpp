#include "transport/core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <string>

namespace quiclab::log {

Status init(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    return make_error(ErrorDomain::config, EINVAL,
                      "unknown log level '" + std::string(level) + "' (use trace, debug, info, warn, error or off)");
  }
  auto logger = spdlog::stderr_color_st("quiclab");
  spdlog::drop("quiclab");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  spdlog::set_level(lvl);
  return {};
}

}  // namespace quiclab::log
