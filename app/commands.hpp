// Subcommand registry. Each cmd_<name>.cpp defines one static Registration:
//
//   static quiclab::cli::Registration reg{"serve", "HTTP/2 and HTTP/3 servers",
//     [](CLI::App& sub) -> quiclab::cli::Runner {
//       auto opts = std::make_shared<Options>();
//       sub.add_option("--listen", opts->listen, "...");
//       return [opts] { return run(*opts); };
//     }};
//
// The runner returns the process exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace quiclab::cli {

using Runner = std::function<int()>;
using Setup = std::function<Runner(CLI::App&)>;

struct Command {
  std::string name;
  std::string description;
  Setup setup;
};

std::vector<Command>& registry();

struct Registration {
  Registration(std::string name, std::string description, Setup setup) {
    registry().push_back(Command{std::move(name), std::move(description), std::move(setup)});
  }
};

/// Exit codes shared by all subcommands.
enum ExitCode : int {
  kExitOk = 0,
  kExitHttpError = 1,       ///< A response had a 4xx/5xx status (get, bench).
  kExitUsage = 2,           ///< Bad flags or arguments.
  kExitTransport = 3,       ///< Connection, TLS, QUIC or I/O failure.
  kExitInternal = 4,
};

}  // namespace quiclab::cli
