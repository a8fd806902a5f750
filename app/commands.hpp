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

#include "transport/core/tls_names.hpp"
#include "transport/quic/path_mtu.hpp"

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
  kExitHttpError = 1,  ///< A response had a 4xx/5xx status (get, bench).
  kExitUsage = 2,      ///< Bad flags or arguments.
  kExitTransport = 3,  ///< Connection, TLS, QUIC or I/O failure.
  kExitInternal = 4,
};

/// --max-udp-payload, the same in serve, get and bench: "auto" (datagrams up to
/// 16 KiB to loopback peers, ngtcp2's 1452 + path MTU discovery elsewhere) or
/// a byte count the user vouches the path carries.
inline CLI::Option* add_udp_payload_option(CLI::App& sub, quic::UdpPayloadPolicy& target) {
  // CLI11 validates before it calls the function, so the parse there succeeds.
  return sub
      .add_option_function<std::string>(
          "--max-udp-payload", [&target](const std::string& v) { target = *quic::parse_udp_payload_policy(v); },
          "HTTP/3: largest UDP payload we send: 'auto' (up to 16384 bytes to loopback peers, whose\n"
          "MTU the kernel knows; elsewhere 1452 with path MTU discovery) or BYTES (1200-65507)")
      ->check(
          [](const std::string& v) {
            std::string why;
            return quic::parse_udp_payload_policy(v, &why) ? std::string() : why;
          },
          "auto|BYTES")
      ->default_str("auto");
}

/// --tls-cipher and --tls-group, the same in serve and get: the only TLS 1.3
/// cipher suite / key-exchange group to offer (both stacks, HTTP/2's OpenSSL
/// and HTTP/3's GnuTLS), by IANA name (transport/core/tls_names.hpp).
inline void add_tls_suite_options(CLI::App& sub, std::string& cipher, std::string& group, const std::string& who) {
  auto check = [](bool is_cipher) {
    return CLI::Validator(
        [is_cipher](std::string& v) {
          const bool known = is_cipher ? tls_names::find_cipher(v) != nullptr : tls_names::find_group(v) != nullptr;
          if (known) return std::string();
          return "unknown TLS " + std::string(is_cipher ? "cipher suite" : "group") + " '" + v + "' (" +
                 (is_cipher ? tls_names::list(tls_names::kCiphers) : tls_names::list(tls_names::kGroups)) + ")";
        },
        is_cipher ? "SUITE" : "GROUP");
  };
  sub.add_option("--tls-cipher", cipher,
                 who + " only this TLS 1.3 cipher suite (" + tls_names::list(tls_names::kCiphers) +
                     "; default: the library's choice)")
      ->check(check(true));
  sub.add_option("--tls-group", group,
                 who + " only this key-exchange group (" + tls_names::list(tls_names::kGroups) +
                     "; default: the library's choice)")
      ->check(check(false));
}

}  // namespace quiclab::cli
