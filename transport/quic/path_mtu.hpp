// The largest UDP payload we may send to a peer without probing for it.
//
// On the Internet the path MTU is unknown, so ngtcp2 starts at 1200 bytes,
// sends 1452 and confirms more with DPLPMTUD (RFC 8899). A peer on a loopback
// address is different: the whole path is this host's loopback device, whose
// MTU the kernel reports (65536 on Linux), and nothing in between can drop a
// large datagram. There QUIC can use datagrams as large as HTTP/2's TCP uses
// segments; per-packet costs (AEAD setup, header protection, ACK processing,
// one system-call share per packet) are most of an HTTP/3 sender's CPU.
#pragma once

#include <ngtcp2/ngtcp2.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "transport/core/address.hpp"

namespace quiclab::quic {

/// Upper bound for datagrams to a loopback peer. Measured on the 2-core VM
/// (docs/h3.md): 100 MiB over loopback ran at 0.83 GB/s with 1452-byte,
/// 1.2 with 4 KiB, 1.5 with 8 KiB, 1.76 with 16 KiB and 1.67 GB/s with 32 KiB
/// datagrams; three 16 KiB packets still fit one GSO send.
constexpr std::size_t kMaxLocalUdpPayload = 16384;

/// What the application asks for: `automatic` uses the loopback rule above,
/// a number forces that payload size for every peer (the user vouches for
/// the path, as with ngtcp2's examples' --max-udp-payload-size).
struct UdpPayloadPolicy {
  std::size_t forced = 0;  ///< 0: automatic
};

/// Smallest and largest payload a user may force: QUIC's minimum datagram
/// (RFC 9000 14) and IPv4's largest UDP payload.
constexpr std::size_t kMinUdpPayload = 1200;
constexpr std::size_t kMaxUdpPayload = 65507;

/// Parses the --max-udp-payload value: "auto" or a byte count in
/// [kMinUdpPayload, kMaxUdpPayload]. On error, `error` says what was wrong.
std::optional<UdpPayloadPolicy> parse_udp_payload_policy(std::string_view text, std::string* error = nullptr);

/// Largest UDP payload for `peer` under `policy`, for the sans-IO cores: a
/// forced size; else `loopback_payload` for a loopback peer (what the adapter
/// measured with probe_loopback_udp_payload); else 0, meaning "ngtcp2's
/// default with path MTU discovery". Asks the kernel nothing.
std::size_t udp_payload_for(const SocketAddress& peer, const UdpPayloadPolicy& policy, std::size_t loopback_payload);

/// The adapters' probe: the loopback device's MTU (asked of the kernel once
/// per address family of `peer`) less the IP and UDP headers, at most
/// kMaxLocalUdpPayload; 0 when that is no more than ngtcp2's default.
std::size_t probe_loopback_udp_payload(const SocketAddress& peer);

/// udp_payload_for with the probe done here (for code that is an adapter).
std::size_t max_udp_payload_for(const SocketAddress& peer, const UdpPayloadPolicy& policy);

/// True for 127.0.0.0/8, ::1 and IPv4-mapped 127.0.0.0/8.
bool is_loopback(const SocketAddress& a);

/// Applies a payload size from max_udp_payload_for to ngtcp2 settings: above
/// ngtcp2's 1452-byte default it turns off payload shaping and path MTU
/// discovery (the size is known, not guessed); at or below it, it only lowers
/// the ceiling. 0 leaves the settings alone.
void apply_udp_payload(ngtcp2_settings& settings, std::size_t payload);

/// The largest datagram ngtcp2 will write on this connection now: our
/// max_tx_udp_payload_size, lowered by the peer's max_udp_payload_size
/// transport parameter once known (ngtcp2 applies the same two bounds when
/// it builds a packet), and QUIC's 1200-byte minimum until the handshake
/// completes. The last because ngtcp2 pads handshake datagrams to the whole
/// buffer it is given: unshaped, a server's first flight became one datagram
/// holding its entire 3x amplification allowance, so one lost datagram left
/// it nothing to retransmit with, and a client's Initial grew to 16 KiB
/// before it knew the server's limit (ngtcp2 itself, shaping, stays at 1200
/// until the handshake is done). Size send batches by this, not by our
/// setting alone: a peer that asks for 1452 would otherwise leave a
/// 16 KiB-sized batch holding three packets.
std::size_t tx_payload_limit(ngtcp2_conn* conn);

/// A forced size is also what we take: it becomes our max_udp_payload_size
/// transport parameter (RFC 9000 18.2), so the peer keeps to it as well.
/// Automatic leaves ngtcp2's default (65527) alone.
void advertise_udp_payload(ngtcp2_transport_params& params, const UdpPayloadPolicy& policy);

}  // namespace quiclab::quic
