// Builds real QUIC v1 client Initial datagrams (a GnuTLS ClientHello inside,
// padded to 1200 bytes) with ngtcp2's client side, for tests that feed a
// server many first flights: floods from many ports, bad tokens, truncation.
#pragma once

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <sys/random.h>

#include <array>
#include <memory>
#include <random>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/quic/tls_backend.hpp"

namespace quiclab::test {

class ClientInitialBuilder {
 public:
  ClientInitialBuilder() {
    quic::tls::ClientConfig cfg;
    cfg.insecure = true;
    auto ctx = quic::tls::make_client_context(cfg);
    if (ctx) ctx_ = std::move(*ctx);
  }

  /// One Initial datagram from `from` to `to`; token (may be empty) goes into
  /// the Initial's token field. Empty result on failure.
  Bytes build(const SocketAddress& from, const SocketAddress& to, ByteView token = {}) {
    if (!ctx_) return {};
    struct Holder {
      ngtcp2_conn* conn = nullptr;
      ngtcp2_crypto_conn_ref ref{};
      ~Holder() {
        if (conn != nullptr) ngtcp2_conn_del(conn);
      }
    } h;
    h.ref = {[](ngtcp2_crypto_conn_ref* r) { return static_cast<Holder*>(r->user_data)->conn; }, &h};
    ngtcp2_callbacks cb{};
    cb.client_initial = ngtcp2_crypto_client_initial_cb;
    cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb.encrypt = ngtcp2_crypto_encrypt_cb;
    cb.decrypt = ngtcp2_crypto_decrypt_cb;
    cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
    cb.rand = [](uint8_t* dest, size_t len, const ngtcp2_rand_ctx*) { (void)getrandom(dest, len, 0); };
    cb.get_new_connection_id = [](ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* reset_token, size_t cidlen, void*) {
      (void)getrandom(cid->data, cidlen, 0);
      cid->datalen = cidlen;
      (void)getrandom(reset_token, NGTCP2_STATELESS_RESET_TOKENLEN, 0);
      return 0;
    };
    cb.update_key = ngtcp2_crypto_update_key_cb;
    cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    ngtcp2_cid dcid{}, scid{};
    dcid.datalen = 16;
    scid.datalen = 16;
    (void)getrandom(dcid.data, dcid.datalen, 0);
    (void)getrandom(scid.data, scid.datalen, 0);
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = 1;
    settings.token = ngtcp2_vec{const_cast<uint8_t*>(token.data()), token.size()};
    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    params.initial_max_streams_uni = 3;
    params.initial_max_data = 1 << 20;
    params.initial_max_stream_data_uni = 1 << 20;
    ngtcp2_path path{
        {const_cast<sockaddr*>(from.sa()), from.size()}, {const_cast<sockaddr*>(to.sa()), to.size()}, nullptr};
    if (ngtcp2_conn_client_new(&h.conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params, nullptr,
                               &h) != 0)
      return {};
    auto session = ctx_->new_session(&h.ref, {});
    if (!session) return {};
    ngtcp2_conn_set_tls_native_handle(h.conn, (*session)->native_handle());
    Bytes out(1500);
    ngtcp2_pkt_info pi{};
    auto n = ngtcp2_conn_write_pkt(h.conn, nullptr, &pi, out.data(), out.size(), 2);
    ngtcp2_conn_del(h.conn);
    h.conn = nullptr;
    if (n <= 0) return {};
    out.resize(static_cast<std::size_t>(n));
    return out;
  }

 private:
  std::unique_ptr<quic::tls::ClientContext> ctx_;
};

}  // namespace quiclab::test
