#include "p2p/stun_transaction.hpp"

namespace quiclab::stun {

ClientTransaction::ClientTransaction(Bytes request, TransactionId id, Timestamp now, TransactionConfig config)
    : request_(std::move(request)), id_(id), config_(config), next_(now), interval_(config.rto) {
  if (config_.rc == 0) config_.rc = 1;
}

std::optional<Bytes> ClientTransaction::poll_transmit(Timestamp now) {
  if (state_ != State::Pending || !transmit_due_ || now < next_) return std::nullopt;
  transmit_due_ = false;
  ++sent_;
  if (sent_ < config_.rc) {
    next_ = now + interval_;
    interval_ *= 2;
  } else {
    // Last transmission: wait Rm * RTO (the initial RTO, per RFC 8489) for an answer.
    next_ = now + config_.rm * config_.rto;
  }
  return request_;
}

std::optional<Timestamp> ClientTransaction::expiry() const {
  if (state_ != State::Pending) return std::nullopt;
  return next_;
}

void ClientTransaction::handle_expiry(Timestamp now) {
  if (state_ != State::Pending || transmit_due_ || now < next_) return;
  if (sent_ >= config_.rc) {
    state_ = State::TimedOut;
    return;
  }
  transmit_due_ = true;
}

bool ClientTransaction::handle_response(const Message& response) {
  if (state_ != State::Pending || response.transaction_id != id_) return false;
  if (response.message_class == MessageClass::SuccessResponse) {
    state_ = State::Succeeded;
  } else if (response.message_class == MessageClass::ErrorResponse) {
    state_ = State::Failed;
  } else {
    return false;
  }
  response_ = response;
  return true;
}

}  // namespace quiclab::stun
