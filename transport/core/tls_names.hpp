// TLS 1.3 cipher suites and key-exchange groups by one set of names, for the
// two TLS libraries quiclab drives: OpenSSL (HTTP/2 over TCP) and GnuTLS
// (HTTP/3, through ngtcp2's crypto helper). `--tls-cipher` and `--tls-group`
// take the IANA / RFC 8446 names below, so a comparison can pin the same
// suite and group on both stacks (they otherwise pick by their own
// preference order), and what each connection negotiated is reported in the
// same names. Header-only: no library is linked here.
#pragma once

#include <cctype>
#include <string>
#include <string_view>

namespace quiclab::tls_names {

struct Name {
  std::string_view iana;     ///< what we accept and report
  std::string_view openssl;  ///< SSL_CTX_set_ciphersuites / SSL_CTX_set1_groups_list
  std::string_view gnutls;   ///< priority string item
};

inline constexpr Name kCiphers[] = {
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", "+AES-128-GCM"},
    {"TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", "+AES-256-GCM"},
    {"TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", "+CHACHA20-POLY1305"},
};
inline constexpr Name kGroups[] = {
    {"x25519", "X25519", "+GROUP-X25519"},
    {"secp256r1", "P-256", "+GROUP-SECP256R1"},
    {"secp384r1", "P-384", "+GROUP-SECP384R1"},
};

/// The entry named `name` (IANA spelling, case-insensitive), or nullptr.
template <std::size_t N>
const Name* find(const Name (&table)[N], std::string_view name) {
  for (const auto& n : table) {
    if (n.iana.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(n.iana[i])) == std::tolower(static_cast<unsigned char>(name[i]));
    if (same) return &n;
  }
  return nullptr;
}
inline const Name* find_cipher(std::string_view name) { return find(kCiphers, name); }
inline const Name* find_group(std::string_view name) { return find(kGroups, name); }

/// "TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, ..." for usage messages.
template <std::size_t N>
std::string list(const Name (&table)[N]) {
  std::string out;
  for (const auto& n : table) out += (out.empty() ? "" : ", ") + std::string(n.iana);
  return out;
}

/// A group name as a library reports it ("X25519", "SECP256R1") in our spelling.
inline std::string normalize_group(std::string_view reported) {
  std::string out(reported);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (out == "prime256v1" || out == "p-256") return "secp256r1";
  if (out == "p-384") return "secp384r1";
  return out;
}

}  // namespace quiclab::tls_names
