/*
 * quic_conn.h - one QUIC connection of keyway-proxy: an ngtcp2 server
 * connection whose handshake runs on GnuTLS (the certificate set's
 * credentials), HTTP/3 on nghttp3 over it, answering like --respond does
 * over TCP (and GET /bytes/N), its packets written in GSO batches.
 */
#ifndef KPX_QUIC_CONN_H
#define KPX_QUIC_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ngtcp2/ngtcp2.h>

#include "keyway/list.h"
#include "quic_const.h"

struct kpx_qconn;
struct kpx_qhs_port;
struct kpx_qtx;
struct kpx_worker;

/*
 * kpx_qconn_ops: what a connection asks of the endpoint that owns it. The
 * endpoint (quic_listen.c) fills it in, so this layer never calls up into
 * the endpoint; ctx is the ops' first argument.
 */
struct kpx_qconn_ops {
	void *ctx;
	/*
	 * send sends len bytes to peer: one datagram, or with gso > 0 and
	 * len > gso several of gso bytes (the last may be shorter) in one
	 * sendmsg. A full socket buffer drops them (QUIC's loss recovery
	 * resends); 0 or -errno.
	 */
	int (*send)(void *ctx, const struct sockaddr *peer, socklen_t peer_len, const uint8_t *buf,
	            size_t len, size_t gso);
	/* cid_add maps cid to the connection c; 0 or -ENOMEM. */
	int (*cid_add)(void *ctx, const ngtcp2_cid *cid, struct kpx_qconn *c);
	/* cid_remove forgets cid (no-op when absent). */
	void (*cid_remove)(void *ctx, const ngtcp2_cid *cid);
	/* reset_token writes the stateless reset token of cid: the endpoint answers with it. */
	int (*reset_token)(void *ctx, uint8_t *token, const ngtcp2_cid *cid);
};

/*
 * kpx_qconn_env: the endpoint's state its connections share. The endpoint
 * keeps it (and sets everything up to hs before the first accept); its
 * connections link themselves into the lists and keep the counts.
 */
struct kpx_qconn_env {
	struct kpx_qconn_ops ops;
	struct kpx_worker *w;
	struct sockaddr_storage local; /* the bound address: every path's local side */
	socklen_t local_len;
	uint8_t *txbuf;          /* KPX_QUIC_TXBUF: one GSO batch being built */
	struct kpx_qtx *tx;      /* --quic-crypto engine (quic_tx.c); NULL: gnutls */
	struct kpx_qhs_port *hs; /* keyserver-held keys: the handshake threads; else NULL */
	struct kw_list conns;    /* every connection (struct kpx_qconn.node) */
	struct kw_list dirty;    /* connections with something to write this turn */
	unsigned nconns;
	unsigned handshaking; /* connections whose handshake has not completed */
};

/*
 * kpx_qconn_accept makes a connection for the client Initial hd (as
 * ngtcp2_accept decoded it) that arrived from peer, then reads the datagram
 * data into it; odcid: the client's first DCID when hd came back with our
 * Retry token (NULL: no Retry). The connection holds a --max-connections
 * slot the caller took (given back at its end, or here on failure).
 */
void kpx_qconn_accept(struct kpx_qconn_env *env, const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                      const uint8_t *data, size_t len, const struct sockaddr *peer,
                      socklen_t peer_len);
/* kpx_qconn_read hands a datagram to c; it may close c. Writing waits for kpx_qconn_flush. */
void kpx_qconn_read(struct kpx_qconn *c, const uint8_t *data, size_t len,
                    const struct sockaddr *peer, socklen_t peer_len);
/*
 * kpx_qconn_rx_batchable is c's engine receive state when the receive
 * batch may open packets for it now (its handshake completed on the loop
 * and no handshake step runs), else NULL.
 */
struct kpx_qtx_conn *kpx_qconn_rx_batchable(struct kpx_qconn *c);
/* kpx_qconn_flush writes what c has to send (env->dirty); it may close c. */
void kpx_qconn_flush(struct kpx_qconn *c);
/* kpx_qconn_drain sends GOAWAY and closes c once its open requests are answered (now if
 * there are none). */
void kpx_qconn_drain(struct kpx_qconn *c);
/* kpx_qconn_close sends CONNECTION_CLOSE (NO_ERROR) and frees c. */
void kpx_qconn_close(struct kpx_qconn *c);
/*
 * kpx_qconn_hs_collect takes back the connections whose handshake step
 * finished on a handshake thread (env->hs): their later datagrams are read
 * and they are flushed as usual; on the worker's loop, before it sleeps.
 */
void kpx_qconn_hs_collect(struct kpx_qconn_env *env);
/* kpx_qconn_of is the connection on env->conns or env->dirty at node l. */
struct kpx_qconn *kpx_qconn_of(struct kw_list *l, bool dirty);

#endif
