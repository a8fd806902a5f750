// A STUN client transaction over UDP (RFC 8489 section 6.2.1), sans-IO.
//
// The request is sent at t = 0 and retransmitted after RTO, 2*RTO, 4*RTO, ...
// until Rc transmissions were made; after the last one the client waits Rm*RTO
// for a response before giving up. With the defaults (RTO 500 ms, Rc 7, Rm 16)
// sends happen at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s and the transaction
// times out at 39.5 s. Time is injected; the owner sends the bytes and calls
// handle_expiry() at expiry().
#pragma once

#include <optional>

#include "p2p/stun.hpp"
#include "transport/core/clock.hpp"

namespace quiclab::stun {

struct TransactionConfig {
  Timestamp rto = 500 * kNanosPerMilli;  ///< initial retransmission timeout
  unsigned rc = 7;                       ///< total transmissions
  unsigned rm = 16;                      ///< final wait, in RTOs
};

class ClientTransaction {
 public:
  enum class State { Pending, Succeeded, Failed, TimedOut };

  /// request: the encoded request; id: its transaction ID (to match responses).
  /// The first transmission is due at `now`: call poll_transmit(now).
  ClientTransaction(Bytes request, TransactionId id, Timestamp now, TransactionConfig config = {});

  /// Bytes to send now (first send or a retransmission), or nothing. Call after
  /// construction and after every handle_expiry().
  std::optional<Bytes> poll_transmit(Timestamp now);
  /// Next deadline (retransmission or timeout); nullopt once finished.
  std::optional<Timestamp> expiry() const;
  /// Advances the timers; after it, poll_transmit() may have bytes, or state()
  /// may be TimedOut.
  void handle_expiry(Timestamp now);
  /// Offers a decoded message. Returns true when it answers this transaction
  /// (same transaction ID, response class); the first such response finishes it
  /// (Succeeded for a success response, Failed for an error response).
  bool handle_response(const Message& response);

  State state() const { return state_; }
  bool done() const { return state_ != State::Pending; }
  const TransactionId& id() const { return id_; }
  unsigned transmissions() const { return sent_; }
  /// The response that finished the transaction.
  const std::optional<Message>& response() const { return response_; }

 private:
  Bytes request_;
  TransactionId id_;
  TransactionConfig config_;
  State state_ = State::Pending;
  unsigned sent_ = 0;
  Timestamp next_ = 0;      // when the next transmission (or the timeout) is due
  Timestamp interval_ = 0;  // current RTO
  bool transmit_due_ = true;
  std::optional<Message> response_;
};

}  // namespace quiclab::stun
