/*
 * quic_tx.h - --quic-crypto engine: 1-RTT packet protection on sending
 * done by Keyway's QUIC engine (keyway/quic.h), per batch, instead of by
 * ngtcp2's GnuTLS callbacks one packet at a time.
 *
 * How: the connection's 1-RTT send keys are the engine's reference-counted
 * keys (installed from the TLS secret, and at each key update the next key
 * phase made from the current key, so the header-protection key stays).
 * ngtcp2's encrypt callback for such a key only records the packet (where
 * it is, its header length, its packet number from the nonce) with a
 * reference on its key, and its header-protection callback answers a zero
 * mask, so ngtcp2 leaves the packet in plaintext with its header
 * unprotected. Before the batch of datagrams is sent, kpx_qtx_seal runs
 * the engine once over every recorded packet: AEAD seal, then header
 * protection. A key ngtcp2 deletes meanwhile (a key update, the end of the
 * connection) lives on until the packets under it are sealed.
 *
 * Receiving is batched where it can be (quic_rxbatch.h): before ngtcp2
 * reads a receive batch, kpx_qtx_rx_add/kpx_qtx_rx_run open its
 * short-header packets in one engine run with each connection's keys as
 * they stand; the callbacks below then take a pre-opened result only when
 * ngtcp2 asks for exactly that open. Otherwise, per packet, since ngtcp2
 * needs each packet's plaintext at once: the header-protection callback of a 1-RTT receive key
 * opens the whole packet through the engine (header protection, packet number, AEAD) from the
 * datagram being read (kpx_qtx_rx_window), answers the mask the engine removed, and keeps the
 * result; the decrypt callback hands over the plaintext when its key, packet number and ciphertext
 * are the ones the engine used, and otherwise (a delayed packet of an old key phase, a different
 * packet number decoding) opens that packet again with ngtcp2's choice. An authentication failure
 * answers NGTCP2_ERR_DECRYPT, so ngtcp2 drops and counts the packet as with GnuTLS.
 *
 * Initial and Handshake packets (and 0-RTT) stay on ngtcp2's GnuTLS
 * callbacks. ngtcp2 still counts packets against RFC 9001 §6.6's
 * limits (max_encryption); the engine's own per-key count additionally
 * starts a key update when it says so.
 *
 * Batches (packets sent, receive batches) run inline on the worker's
 * engine, or with --quic-sched sjbsq|hash|jsq on the worker's crypto
 * threads (keyway/quic.h's pool), waited for before the batch is sent or
 * read; packets opened alone always run inline.
 *
 * One kpx_qtx per worker thread; everything runs on that thread.
 */
#ifndef KPX_QUIC_TX_H
#define KPX_QUIC_TX_H

#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>

#include "proxy.h"

struct kpx_qtx;
struct kw_quic_key;

/*
 * A connection's engine state. The connection's ngtcp2 user_data and its
 * GnuTLS session's ngtcp2_crypto_conn_ref user_data must point to a
 * structure that begins with it.
 */
struct kpx_qtx_conn {
	struct kpx_qtx *tx;
	struct kw_quic_key *key; /* the current 1-RTT send key (one reference) */
	/* Receiving: the newest 1-RTT receive key of each key phase (one reference each), the
	 * phase of the newest one (where the next key update starts), and the largest packet
	 * number opened plus one (0: none), from which the engine decodes packet numbers. */
	struct kw_quic_key *rx[2];
	unsigned rx_phase;
	uint64_t rx_next;
};

/* kpx_qtx_new makes w's engine state with the --quic-engine engine; 0 or -errno. */
int kpx_qtx_new(struct kpx_qtx **out, struct kpx_worker *w);
void kpx_qtx_free(struct kpx_qtx *tx); /* NULL ok; drops packets not sealed */
/* kpx_qtx_engine_name is the engine's name ("evp", "ipsec-mb"). */
const char *kpx_qtx_engine_name(const struct kpx_qtx *tx);

/* kpx_qtx_callbacks replaces cb's packet-protection and key callbacks with the engine's. */
void kpx_qtx_callbacks(ngtcp2_callbacks *cb);
/* kpx_qtx_configure_session takes over the secrets of a server session that
 * ngtcp2_crypto_gnutls_configure_server_session configured. */
void kpx_qtx_configure_session(gnutls_session_t s);
/* kpx_qtx_conn_cleanup drops the connection's key reference. */
void kpx_qtx_conn_cleanup(struct kpx_qtx_conn *tc);

/*
 * kpx_qtx_seal protects the recorded packets that lie in buf[0, len) (what
 * is about to be sent, all of connection conn) and forgets every recorded
 * packet. 0, or -1 when a packet could not be protected (the batch must
 * not be sent). NULL tx: nothing to do.
 */
int kpx_qtx_seal(struct kpx_qtx *tx, uint8_t *buf, size_t len, ngtcp2_conn *conn);

/*
 * kpx_qtx_rx_window tells the receive callbacks which datagram ngtcp2 is
 * about to read (data[0, len)), NULL after it: a short-header packet runs
 * to the datagram's end, which ngtcp2's header-protection callback does not
 * say. NULL tx: nothing to do.
 */
void kpx_qtx_rx_window(struct kpx_qtx *tx, const uint8_t *data, size_t len);

/*
 * A receive batch, on the worker's thread: kpx_qtx_rx_add queues the
 * datagram data[0, len) of connection tc (a short-header packet; anything
 * else is ignored) while the datagrams stay where they are until
 * kpx_qtx_rx_done; kpx_qtx_rx_run opens the queued packets in one engine
 * run before ngtcp2 reads any of them; kpx_qtx_rx_done forgets the batch.
 * tc must not be in use on another thread meanwhile (a handshake step).
 * NULL tx or tc: nothing to do.
 */
void kpx_qtx_rx_add(struct kpx_qtx *tx, struct kpx_qtx_conn *tc, const uint8_t *data, size_t len);
void kpx_qtx_rx_run(struct kpx_qtx *tx);
void kpx_qtx_rx_done(struct kpx_qtx *tx);

#endif
