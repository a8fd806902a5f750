// What one server connection's transport did, recorded when the connection
// ends: the facts a protocol comparison must show beside its timings
// (docs/compare.md, "parity"). The HTTP/2 server fills it from TCP_INFO
// and TCP_CONGESTION on the accepted socket, the QUIC core from ngtcp2's
// connection statistics; `quiclab serve --conn-log FILE` writes one JSON
// line per record. A field a stack cannot report stays empty (null in JSON)
// rather than pretending to a zero.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace quiclab {

struct ConnectionRecord {
  std::string protocol;  ///< "h2" (TCP+TLS) or "h3" (QUIC)
  std::string peer;      ///< the client's address:port
  double duration_ms = 0;
  /// Wall-clock time the connection began (ms since the Unix epoch), so a
  /// reader can tell which of its experiment's runs the connection belongs to.
  std::int64_t start_unix_ms = 0;
  std::string congestion_control;  ///< observed: TCP_CONGESTION / ngtcp2's cc_algo
  /// TCP: the MSS (tcpi_snd_mss); QUIC: the largest UDP payload we send.
  std::uint64_t segment_bytes = 0;
  /// The congestion window before the first byte of response: TCP's
  /// tcpi_snd_cwnd (packets) x MSS at accept, ngtcp2's cwnd (bytes) at creation.
  std::uint64_t initial_cwnd_bytes = 0;
  std::uint64_t initial_cwnd_packets = 0;
  bool paced = false;
  /// Pacing rate as a percentage of cwnd/srtt in slow start and in
  /// congestion avoidance (Linux tcp_pacing_ss_ratio/ca_ratio; ngtcp2 0.12.1: 125).
  std::optional<std::uint32_t> pacing_ss_pct, pacing_ca_pct;
  std::uint64_t bytes_sent = 0;    ///< TCP: tcpi_bytes_sent; QUIC: UDP payload bytes
  std::uint64_t packets_sent = 0;  ///< TCP: tcpi_segs_out; QUIC: datagrams
  std::optional<std::uint64_t> retransmitted_packets, retransmitted_bytes;  ///< TCP only
  /// Retransmission timeouts (TCP: tcpi_total_rto, kernels from 6.7) or
  /// probe timeouts (QUIC: PTO expirations counted by the core).
  std::optional<std::uint64_t> timeouts;
  /// QUIC: congestion events (a new recovery period); TCP: none reported.
  std::optional<std::uint64_t> congestion_events;
  double min_rtt_ms = 0, smoothed_rtt_ms = 0;
  /// The retransmission timer at the end (TCP's RTO with its 200 ms floor,
  /// QUIC's PTO with max_ack_delay), in ms.
  double timer_ms = 0;
  std::uint64_t final_cwnd_bytes = 0;
  std::optional<bool> resumed, early_data;                           ///< TLS resumption / 0-RTT accepted (QUIC)
  std::optional<std::uint64_t> tls_records_small, tls_records_full;  ///< HTTP/2's TLS records
};

/// Now on the wall clock, in ms since the Unix epoch (for start_unix_ms).
inline std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Receives each connection's record once, when the connection ends.
using ConnectionRecordSink = std::function<void(const ConnectionRecord&)>;

}  // namespace quiclab
