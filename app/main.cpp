// quiclab: one binary, one subcommand per job. See DESIGN.md for the contract.
#include <algorithm>
#include <csignal>
#include <iostream>
#include <map>

#include "app/commands.hpp"
#include "transport/core/log.hpp"

namespace quiclab::cli {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace quiclab::cli

int main(int argc, char** argv) {
  using namespace quiclab;
  // A peer closing a socket must show up as EPIPE on that socket, not kill us.
  std::signal(SIGPIPE, SIG_IGN);

  CLI::App app{"quiclab: HTTP/2 vs HTTP/3 side by side, and QUIC over hole-punched NAT paths"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "quiclab 0.1.0");
  std::string level = "info";
  app.add_option("--log-level", level, "trace, debug, info, warn, error or off")->capture_default_str();

  auto& commands = cli::registry();
  std::sort(commands.begin(), commands.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::map<CLI::App*, cli::Runner> runners;
  for (auto& c : commands) {
    auto* sub = app.add_subcommand(c.name, c.description);
    runners[sub] = c.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : cli::kExitUsage;
  }
  if (auto st = log::init(level); !st) {
    std::cerr << "quiclab: " << st.error().message << "\n";
    return cli::kExitUsage;
  }
  for (auto* sub : app.get_subcommands()) {
    auto it = runners.find(sub);
    if (it != runners.end() && it->second) {
      try {
        return it->second();
      } catch (const std::exception& e) {
        std::cerr << "quiclab " << sub->get_name() << ": " << e.what() << "\n";
        return cli::kExitInternal;
      }
    }
  }
  return cli::kExitUsage;
}
