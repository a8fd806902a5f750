// TLS alert names come from the QUIC TLS backend (GnuTLS), not from a table of ours.
#include <catch2/catch.hpp>

#include "transport/quic/tls_backend.hpp"

using quiclab::quic::tls::alert_text;

TEST_CASE("quic tls: alert_text names alerts with the backend's words, numbers alone otherwise", "[quic][tls]") {
  CHECK(alert_text(42) == "alert 42 (Certificate is bad)");
  CHECK(alert_text(120) == "alert 120 (No supported application protocol could be negotiated)");
  CHECK(alert_text(48).find("alert 48 (") == 0);  // unknown_ca: whatever GnuTLS calls it
  CHECK(alert_text(200) == "alert 200");          // not an alert GnuTLS knows
  CHECK(alert_text(1000) == "alert 1000");        // not an alert at all
}
