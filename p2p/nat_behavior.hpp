// NAT behaviour discovery (RFC 5780 section 4), sans-IO.
//
// Test I asks the server for the mapped address and its OTHER-ADDRESS. Filtering
// tests II and III ask the server (with CHANGE-REQUEST) to answer from the
// alternate IP and port, then from the alternate port only; an answer that never
// arrives means the NAT (or firewall) filtered it. Mapping tests II and III then
// repeat Binding against the alternate IP, then the alternate IP and port, and
// compare the mapped addresses. Tests run one after another on one local socket;
// filtering goes before mapping because sending to the alternate IP would open
// an address-dependent filter for it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "p2p/stun.hpp"
#include "p2p/stun_transaction.hpp"
#include "transport/core/clock.hpp"

namespace quiclab::stun {

/// RFC 4787 / RFC 5780 vocabulary for mapping and filtering behaviour.
enum class NatBehavior { Unknown, EndpointIndependent, AddressDependent, AddressAndPortDependent };
/// "endpoint-independent", "address-dependent", "address-and-port-dependent" or "unknown".
std::string_view to_string(NatBehavior b);

struct NatBehaviorResult {
  SocketAddress local;                         ///< our socket's address as the adapter reports it
  SocketAddress mapped;                        ///< XOR-MAPPED-ADDRESS from test I
  std::optional<SocketAddress> other_address;  ///< the server's OTHER-ADDRESS
  bool behind_nat = false;                     ///< mapped != local
  NatBehavior mapping = NatBehavior::Unknown;
  NatBehavior filtering = NatBehavior::Unknown;
  std::string error;  ///< non-empty when discovery could not finish
};

class NatBehaviorDiscovery {
 public:
  struct Datagram {
    SocketAddress to;
    Bytes data;
  };
  /// server: the server's primary address; local: our socket's address;
  /// behavior: false runs only test I (mapped address).
  NatBehaviorDiscovery(SocketAddress server, SocketAddress local, bool behavior, TransactionConfig transaction = {});

  /// Skips the filtering tests (call before start): test I and the mapping
  /// tests only, no CHANGE-REQUEST, so no wait for answers a filtering NAT
  /// drops (what a peer needs to pick its birthday-punching role).
  void mapping_only() { filtering_ = false; }
  void start(Timestamp now);
  /// Feeds a datagram received from `from`.
  void handle_datagram(const SocketAddress& from, ByteView data, Timestamp now);
  std::optional<Timestamp> expiry() const;
  void handle_expiry(Timestamp now);
  std::vector<Datagram> take_datagrams() { return std::exchange(outgoing_, {}); }
  bool done() const { return step_ == Step::Done; }
  const NatBehaviorResult& result() const { return result_; }

 private:
  enum class Step { Idle, Test1, Mapping2, Mapping3, Filtering2, Filtering3, Done };
  void send_test(Step step, Timestamp now);
  void on_response(const Message& m, const SocketAddress& from, Timestamp now);
  void on_timeout(Timestamp now);
  void start_mapping(Timestamp now);
  void finish(std::string error = {});

  SocketAddress server_;
  bool behavior_;
  bool filtering_ = true;
  TransactionConfig config_;
  Step step_ = Step::Idle;
  SocketAddress target_;
  std::optional<SocketAddress> expected_origin_;
  std::optional<ClientTransaction> tx_;
  SocketAddress mapped2_;
  std::vector<Datagram> outgoing_;
  NatBehaviorResult result_;
};

}  // namespace quiclab::stun
