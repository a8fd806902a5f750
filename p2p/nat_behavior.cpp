#include "p2p/nat_behavior.hpp"

#include "transport/core/log.hpp"

namespace quiclab::stun {

std::string_view to_string(NatBehavior b) {
  switch (b) {
    case NatBehavior::EndpointIndependent:
      return "endpoint-independent";
    case NatBehavior::AddressDependent:
      return "address-dependent";
    case NatBehavior::AddressAndPortDependent:
      return "address-and-port-dependent";
    case NatBehavior::Unknown:
      break;
  }
  return "unknown";
}

NatBehaviorDiscovery::NatBehaviorDiscovery(SocketAddress server, SocketAddress local, bool behavior,
                                           TransactionConfig transaction)
    : server_(server), behavior_(behavior), config_(transaction) {
  result_.local = local;
}

void NatBehaviorDiscovery::start(Timestamp now) { send_test(Step::Test1, now); }

void NatBehaviorDiscovery::send_test(Step step, Timestamp now) {
  step_ = step;
  Message req;
  req.transaction_id = random_transaction_id();
  target_ = server_;
  expected_origin_.reset();
  const SocketAddress other = result_.other_address.value_or(SocketAddress{});
  switch (step) {
    case Step::Test1:
      break;
    case Step::Mapping2:  // alternate IP, primary port
      target_ = SocketAddress::from_ip(other.ip(), server_.port()).value();
      break;
    case Step::Mapping3:  // alternate IP and port
      target_ = other;
      break;
    case Step::Filtering2:
      req.add_change_request(true, true);
      expected_origin_ = other;
      break;
    case Step::Filtering3: {
      req.add_change_request(false, true);
      auto origin = server_;
      origin.set_port(other.port());
      expected_origin_ = origin;
      break;
    }
    default:
      return;
  }
  req.add_string(attr::kSoftware, "quiclab");
  tx_.emplace(encode(req, EncodeOptions{std::nullopt, std::nullopt, true}), req.transaction_id, now, config_);
  if (auto b = tx_->poll_transmit(now)) outgoing_.push_back(Datagram{target_, std::move(*b)});
}

void NatBehaviorDiscovery::handle_datagram(const SocketAddress& from, ByteView data, Timestamp now) {
  if (!tx_ || done()) return;
  auto m = decode(data);
  if (!m) {
    log::debug("stun: ignoring datagram from {}: {}", from.to_string(), m.error().message);
    return;
  }
  if (!tx_->handle_response(*m)) return;
  on_response(*m, from, now);
}

void NatBehaviorDiscovery::on_response(const Message& m, const SocketAddress& from, Timestamp now) {
  if (m.message_class == MessageClass::ErrorResponse) {
    auto e = m.error();
    std::string text = e && *e ? std::to_string((*e)->code) + " " + (*e)->reason : "error response";
    return finish("server answered test with " + text);
  }
  auto mapped = m.xor_address(attr::kXorMappedAddress);
  if (!mapped || !*mapped) {
    // Some servers (RFC 3489 ones) only send MAPPED-ADDRESS.
    mapped = m.address(attr::kMappedAddress);
  }
  if (!mapped || !*mapped) return finish("response without a mapped address");
  switch (step_) {
    case Step::Test1: {
      result_.mapped = **mapped;
      result_.behind_nat = !(result_.mapped == result_.local);
      if (!behavior_) return finish();
      auto other = m.address(attr::kOtherAddress);
      if (!other || !*other) other = m.address(attr::kChangedAddress);
      if (!other || !*other) return finish("server gave no OTHER-ADDRESS: it does not support RFC 5780 discovery");
      result_.other_address = **other;
      // Filtering first: the mapping tests send to the alternate IP, which would
      // open an address-dependent filter for it and spoil the filtering tests.
      return filtering_ ? send_test(Step::Filtering2, now) : start_mapping(now);
    }
    case Step::Mapping2:
      if (**mapped == result_.mapped) {
        result_.mapping = NatBehavior::EndpointIndependent;
        return finish();
      }
      mapped2_ = **mapped;
      return send_test(Step::Mapping3, now);
    case Step::Mapping3:
      result_.mapping = **mapped == mapped2_ ? NatBehavior::AddressDependent : NatBehavior::AddressAndPortDependent;
      return finish();
    case Step::Filtering2:
    case Step::Filtering3:
      if (expected_origin_ && !(from == *expected_origin_)) {
        return finish("server answered CHANGE-REQUEST from " + from.to_string() + ", not " +
                      expected_origin_->to_string());
      }
      result_.filtering = step_ == Step::Filtering2 ? NatBehavior::EndpointIndependent : NatBehavior::AddressDependent;
      return start_mapping(now);
    default:
      return;
  }
}

void NatBehaviorDiscovery::on_timeout(Timestamp now) {
  switch (step_) {
    case Step::Filtering2:
      return send_test(Step::Filtering3, now);
    case Step::Filtering3:
      result_.filtering = NatBehavior::AddressAndPortDependent;
      return start_mapping(now);
    case Step::Test1:
      return finish("no response from " + server_.to_string());
    default:
      return finish("no response from " + target_.to_string());
  }
}

void NatBehaviorDiscovery::start_mapping(Timestamp now) {
  if (!result_.behind_nat) {
    // No NAT: mapping is endpoint-independent by definition (RFC 5780 4.3).
    result_.mapping = NatBehavior::EndpointIndependent;
    return finish();
  }
  send_test(Step::Mapping2, now);
}

std::optional<Timestamp> NatBehaviorDiscovery::expiry() const {
  if (!tx_ || done()) return std::nullopt;
  return tx_->expiry();
}

void NatBehaviorDiscovery::handle_expiry(Timestamp now) {
  if (!tx_ || done()) return;
  tx_->handle_expiry(now);
  if (tx_->state() == ClientTransaction::State::TimedOut) return on_timeout(now);
  if (auto b = tx_->poll_transmit(now)) outgoing_.push_back(Datagram{target_, std::move(*b)});
}

void NatBehaviorDiscovery::finish(std::string error) {
  step_ = Step::Done;
  result_.error = std::move(error);
  tx_.reset();
}

}  // namespace quiclab::stun
