// Sanitizer reports of child processes. A child built with ASan/UBSan that
// is killed with SIGKILL never prints its leak report, and one that prints a
// report before exiting 0 (a UBSan diagnostic with recovery, a LeakSanitizer
// report in a helper) would pass unseen: tests stop their children with
// SIGTERM, wait for them, and fail on any report in their output.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace quiclab::test {

/// The report (from its first line, at most 3000 characters) when `output`
/// holds an AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer or
/// ThreadSanitizer report; nullopt when it holds none.
inline std::optional<std::string> sanitizer_report(std::string_view output) {
  static constexpr std::string_view markers[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                                 ": runtime error: ", "WARNING: ThreadSanitizer",
                                                 "ERROR: UndefinedBehaviorSanitizer"};
  std::size_t first = std::string_view::npos;
  for (auto m : markers) first = std::min(first, output.find(m));
  if (first == std::string_view::npos) return std::nullopt;
  auto line = output.rfind('\n', first);
  auto start = line == std::string_view::npos ? 0 : line + 1;
  return std::string(output.substr(start, 3000));
}

}  // namespace quiclab::test
