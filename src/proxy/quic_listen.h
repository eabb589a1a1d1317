/*
 * quic_listen.h - --quic-listen: a worker's QUIC endpoint. One UDP socket
 * per worker (SO_REUSEPORT), its datagrams dispatched by Destination
 * Connection ID to the worker's connections (quic_conn.c), new ones made
 * for client Initials, stateless resets for unknown short headers and
 * Version Negotiation for unknown versions. Everything runs on the
 * worker's loop.
 */
#ifndef KPX_QUIC_LISTEN_H
#define KPX_QUIC_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ngtcp2/ngtcp2.h>

#include "keyway/list.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "proxy.h"
#include "quic_const.h"

/* --quic-retry auto: Retry once a worker has this many connections in their handshake. */
#define KPX_QUIC_RETRY_AUTO 64
/* How long a Retry token is good for. */
#define KPX_QUIC_RETRY_TOKEN_S 10

struct kpx_qcid;
struct kpx_qhs_port;
struct kpx_qrx;
struct kpx_qtx;

/* A worker's endpoint. */
struct kpx_qep {
	struct kpx_worker *w;
	int fd;
	struct kw_io io;
	struct sockaddr_storage local; /* the bound address: every path's local side */
	socklen_t local_len;
	struct kpx_qcid **buckets; /* connection IDs -> connections (chained hash) */
	size_t nbuckets;
	uint64_t hash_seed;
	struct kw_list conns; /* every connection (struct kpx_qconn.node) */
	struct kw_list dirty; /* connections with something to write this turn */
	struct kw_hook flush; /* writes the dirty connections before the loop sleeps */
	unsigned nconns;
	unsigned handshaking; /* connections whose handshake has not completed */
	bool draining;
	uint8_t *txbuf;          /* KPX_QUIC_TXBUF: one GSO batch being built */
	struct kpx_qrx *rx;      /* recvmmsg buffers */
	struct kpx_qtx *tx;      /* --quic-crypto engine (quic_tx.c); NULL: gnutls */
	struct kpx_qhs_port *hs; /* keyserver-held keys: the handshake threads; else NULL */
};

/*
 * kpx_quic_open_sockets opens n UDP sockets on addr (port 0: the first one
 * picks the port, the TCP listener's when --listen shares it). 0, or -errno
 * with the reason and fix in err.
 */
int kpx_quic_open_sockets(struct kw_addr *addr, unsigned n, int *fds, char *err, size_t errlen);

/* kpx_quic_start makes w's endpoint on socket fd (owned from here on) on w's loop. */
int kpx_quic_start(struct kpx_worker *w, int fd);
/*
 * kpx_quic_drain stops taking new connections and drains the open ones:
 * GOAWAY, requests already received answered, then CONNECTION_CLOSE
 * (NO_ERROR). kpx_quic_close_all closes every connection now.
 */
void kpx_quic_drain(struct kpx_worker *w);
void kpx_quic_close_all(struct kpx_worker *w);
/* kpx_quic_stop closes what is left and frees the endpoint (NULL-safe). */
void kpx_quic_stop(struct kpx_worker *w);
/* kpx_quic_conns is how many QUIC connections w holds. */
unsigned kpx_quic_conns(const struct kpx_worker *w);

/* ---- for quic_conn.c ---- */

/* kpx_qep_cid_add maps cid to the connection c; 0 or -ENOMEM. */
int kpx_qep_cid_add(struct kpx_qep *ep, const ngtcp2_cid *cid, void *c);
/* kpx_qep_cid_remove forgets cid (no-op when absent). */
void kpx_qep_cid_remove(struct kpx_qep *ep, const ngtcp2_cid *cid);
/*
 * kpx_qep_send sends len bytes to peer: one datagram, or with gso > 0 and
 * len > gso several of gso bytes (the last may be shorter) in one sendmsg
 * with UDP_SEGMENT. A full socket buffer drops them (QUIC's loss recovery
 * resends); 0 or -errno.
 */
int kpx_qep_send(struct kpx_qep *ep, const struct sockaddr *peer, socklen_t peer_len,
                 const uint8_t *buf, size_t len, size_t gso);
/* kpx_quic_reset_token writes the stateless reset token of cid (process-wide secret). */
int kpx_quic_reset_token(uint8_t *token, const ngtcp2_cid *cid);

#endif
