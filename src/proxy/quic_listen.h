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
#include "quic_conn.h"
#include "quic_const.h"

/* --quic-retry auto: Retry once a worker has this many connections in their handshake. */
#define KPX_QUIC_RETRY_AUTO 64
/* How long a Retry token is good for. */
#define KPX_QUIC_RETRY_TOKEN_S 10

struct kpx_qcid;
struct kpx_qrx;

/*
 * A worker's endpoint. env is the part its connections share (quic_conn.h);
 * its ops reach back here, so that they call no function of this file.
 */
struct kpx_qep {
	struct kpx_qconn_env env;
	int fd;
	struct kw_io io;
	struct kpx_qcid **buckets; /* connection IDs -> connections (chained hash) */
	size_t nbuckets;
	uint64_t hash_seed;
	struct kw_hook flush; /* writes the dirty connections before the loop sleeps */
	bool draining;
	struct kpx_qrx *rx; /* recvmmsg buffers */
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

#endif
