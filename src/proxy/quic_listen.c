/*
 * quic_listen.c - a worker's QUIC endpoint (see quic_listen.h): its UDP
 * socket, the connection-ID table, the dispatch of each datagram, the
 * stateless answers (Version Negotiation, stateless reset) and GSO sends.
 *
 * Hostile datagrams cost one header decode each: anything that is neither
 * a known connection ID nor a well-formed client Initial of >= 1200 bytes
 * is dropped (counted) before any state or crypto is spent on it.
 */
#include "quic_listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "conn.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "quic_conn.h"
#include "quic_hs.h"
#include "quic_tx.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define RX_MSGS 16    /* buffers per recvmmsg */
#define RX_BUF 65536  /* one buffer: a GRO-coalesced run of datagrams */
#define RECV_ROUNDS 4 /* recvmmsg calls per readiness event before other work */
#define NBUCKETS 4096
#define SOCKBUF (4 << 20)

/* A worker's receive buffers (1 MiB: allocated once per endpoint). */
struct kpx_qrx {
	uint8_t buf[RX_MSGS][RX_BUF];
	struct sockaddr_storage peer[RX_MSGS];
	char cmsg[RX_MSGS][CMSG_SPACE(sizeof(int))];
};

/* One entry of the connection-ID table. */
struct kpx_qcid {
	struct kpx_qcid *next;
	ngtcp2_cid cid;
	void *conn;
};

/* ---- the stateless reset secret: one per process, so any worker answers alike ---- */

static uint8_t reset_secret[32], token_secret[32];
static pthread_once_t secret_once = PTHREAD_ONCE_INIT;

static void make_secret(void)
{
	if (gnutls_rnd(GNUTLS_RND_KEY, reset_secret, sizeof(reset_secret)) != 0 ||
	    gnutls_rnd(GNUTLS_RND_KEY, token_secret, sizeof(token_secret)) != 0)
		abort(); /* no randomness: nothing safe to do */
}

/* reset_token writes the stateless reset token of cid (process-wide secret). */
static int reset_token(uint8_t *token, const ngtcp2_cid *cid)
{
	pthread_once(&secret_once, make_secret);
	return ngtcp2_crypto_generate_stateless_reset_token(token, reset_secret,
	                                                    sizeof(reset_secret), cid) == 0
	           ? 0
	           : -KW_ECRYPTO;
}

/* ---- the connection-ID table ---- */

/* cid_hash: FNV-1a over the ID and a per-endpoint seed (peers choose some of the IDs). */
static size_t cid_hash(const struct kpx_qep *ep, const uint8_t *id, size_t len)
{
	uint64_t h = 1469598103934665603ull ^ ep->hash_seed;
	for (size_t i = 0; i < len; i++)
		h = (h ^ id[i]) * 1099511628211ull;
	return (size_t)(h % ep->nbuckets);
}

/* cid_add maps cid to the connection c; 0 or -ENOMEM. */
static int cid_add(struct kpx_qep *ep, const ngtcp2_cid *cid, void *c)
{
	struct kpx_qcid *e = malloc(sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	size_t b = cid_hash(ep, cid->data, cid->datalen);
	e->cid = *cid;
	e->conn = c;
	e->next = ep->buckets[b];
	ep->buckets[b] = e;
	return 0;
}

/* cid_remove forgets cid (no-op when absent). */
static void cid_remove(struct kpx_qep *ep, const ngtcp2_cid *cid)
{
	for (struct kpx_qcid **p = &ep->buckets[cid_hash(ep, cid->data, cid->datalen)]; *p != NULL;
	     p = &(*p)->next) {
		struct kpx_qcid *e = *p;
		if (ngtcp2_cid_eq(&e->cid, cid)) {
			*p = e->next;
			free(e);
			return;
		}
	}
}

static void *cid_find(struct kpx_qep *ep, const uint8_t *id, size_t len)
{
	for (struct kpx_qcid *e = ep->buckets[cid_hash(ep, id, len)]; e != NULL; e = e->next)
		if (e->cid.datalen == len && memcmp(e->cid.data, id, len) == 0)
			return e->conn;
	return NULL;
}

/* ---- sending ---- */

/*
 * ep_send sends len bytes to peer: one datagram, or with gso > 0 and len >
 * gso several of gso bytes (the last may be shorter) in one sendmsg with
 * UDP_SEGMENT. A full socket buffer drops them (QUIC's loss recovery
 * resends); 0 or -errno.
 */
static int ep_send(struct kpx_qep *ep, const struct sockaddr *peer, socklen_t peer_len,
                   const uint8_t *buf, size_t len, size_t gso)
{
	struct iovec iov = {(void *)buf, len};
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {
	    .msg_name = (void *)peer, .msg_namelen = peer_len, .msg_iov = &iov, .msg_iovlen = 1};
	struct kpx_wmetrics *m = &ep->env.w->m;

	if (gso > 0 && len > gso) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_UDP;
		cm->cmsg_type = UDP_SEGMENT;
		cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
		uint16_t seg = (uint16_t)gso;
		memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
	}
	ssize_t n;
	do
		n = sendmsg(ep->fd, &msg, 0);
	while (n < 0 && errno == EINTR);
	kpx_add(&m->quic_sends, 1);
	uint64_t dgrams = gso > 0 && len > gso ? (len + gso - 1) / gso : 1;
	if (n < 0) {
		/* A full socket buffer or an unreachable peer: the datagrams are lost, and
		 * QUIC's loss recovery sends their frames again. */
		kpx_add(&m->quic_send_errors, 1);
		return -errno;
	}
	kpx_add(&m->quic_datagrams[1], dgrams);
	return 0;
}

/* ---- what the connections ask of the endpoint (struct kpx_qconn_ops) ---- */

static int op_send(void *ctx, const struct sockaddr *peer, socklen_t peer_len, const uint8_t *buf,
                   size_t len, size_t gso)
{
	return ep_send(ctx, peer, peer_len, buf, len, gso);
}

static int op_cid_add(void *ctx, const ngtcp2_cid *cid, struct kpx_qconn *c)
{
	return cid_add(ctx, cid, c);
}

static void op_cid_remove(void *ctx, const ngtcp2_cid *cid)
{
	cid_remove(ctx, cid);
}

static int op_reset_token(void *ctx, uint8_t *token, const ngtcp2_cid *cid)
{
	return reset_token(token, cid);
}

/* send_reset answers a short-header packet for an unknown connection ID. */
static void send_reset(struct kpx_qep *ep, const uint8_t *dcid, size_t dcidlen, size_t pktlen,
                       const struct sockaddr *peer, socklen_t peer_len)
{
	/* Shorter than what provoked it, so two endpoints cannot loop (RFC 9000 §10.3.3). */
	if (pktlen < 43)
		return;
	uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN], rnd[64], out[128];
	ngtcp2_cid cid;
	ngtcp2_cid_init(&cid, dcid, dcidlen);
	size_t randlen = pktlen - 1 - NGTCP2_STATELESS_RESET_TOKENLEN - 1;
	if (randlen > sizeof(rnd))
		randlen = sizeof(rnd);
	if (reset_token(token, &cid) < 0 || gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen) != 0)
		return;
	ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(out, sizeof(out), token, rnd, randlen);
	if (n > 0 && ep_send(ep, peer, peer_len, out, (size_t)n, 0) == 0)
		kpx_add(&ep->env.w->m.quic_stateless_resets, 1);
}

/* send_vn answers a client Initial of a version we do not speak (RFC 9000 §6). */
static void send_vn(struct kpx_qep *ep, const ngtcp2_version_cid *vc, const struct sockaddr *peer,
                    socklen_t peer_len)
{
	uint8_t out[256], r;
	const uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
	gnutls_rnd(GNUTLS_RND_NONCE, &r, 1);
	/* The client's IDs swapped: its DCID is our SCID. */
	ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(
	    out, sizeof(out), r, vc->scid, vc->scidlen, vc->dcid, vc->dcidlen, sv, 1);
	if (n > 0 && ep_send(ep, peer, peer_len, out, (size_t)n, 0) == 0)
		kpx_add(&ep->env.w->m.quic_version_negotiations, 1);
}

/* need_retry: --quic-retry on, or auto with this worker's handshakes over the mark. */
static bool need_retry(const struct kpx_qep *ep)
{
	switch (ep->env.w->opt->quic_retry) {
	case KPX_QUIC_RETRY_ON:
		return true;
	case KPX_QUIC_RETRY_OFF:
		return false;
	default:
		return ep->env.handshaking >= KPX_QUIC_RETRY_AUTO;
	}
}

/*
 * send_retry answers a client Initial with a Retry (RFC 9000 §8.1.2): the
 * client must come back with the token, proving it receives at its
 * address, before any connection state or handshake CPU is spent on it.
 */
static void send_retry(struct kpx_qep *ep, const ngtcp2_pkt_hd *hd, const struct sockaddr *peer,
                       socklen_t peer_len)
{
	uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN], out[256];
	ngtcp2_cid scid;
	scid.datalen = KPX_QUIC_SCID_LEN;
	if (gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen) != 0)
		return;
	scid.data[0] = (uint8_t)ep->env.w->id; /* the connection will be this worker's */
	pthread_once(&secret_once, make_secret);
	ngtcp2_ssize tlen = ngtcp2_crypto_generate_retry_token(
	    token, token_secret, sizeof(token_secret), hd->version, peer, peer_len, &scid,
	    &hd->dcid, kw_now_ns());
	if (tlen < 0)
		return;
	ngtcp2_ssize n = ngtcp2_crypto_write_retry(out, sizeof(out), hd->version, &hd->scid, &scid,
	                                           &hd->dcid, token, (size_t)tlen);
	if (n > 0 && ep_send(ep, peer, peer_len, out, (size_t)n, 0) == 0)
		kpx_add(&ep->env.w->m.quic_retries, 1);
}

/* accept_initial makes a connection for a new client Initial, within the limits. */
static void accept_initial(struct kpx_qep *ep, const uint8_t *data, size_t len,
                           const struct sockaddr *peer, socklen_t peer_len)
{
	ngtcp2_pkt_hd hd;
	ngtcp2_cid odcid;
	bool retried = false;
	if (ngtcp2_accept(&hd, data, len) != 0) {
		kpx_add(&ep->env.w->m.quic_dropped, 1); /* not an Initial, too small, bad header */
		return;
	}
	if (ep->draining) {
		kpx_add(&ep->env.w->m.quic_refused, 1);
		return;
	}
	/* Only Retry tokens are ours (no NEW_TOKEN is sent); another token is ignored. */
	if (hd.token.len > 0 && hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
		pthread_once(&secret_once, make_secret);
		if (ngtcp2_crypto_verify_retry_token(
		        &odcid, hd.token.base, hd.token.len, token_secret, sizeof(token_secret),
		        hd.version, peer, peer_len, &hd.dcid,
		        KPX_QUIC_RETRY_TOKEN_S * NGTCP2_SECONDS, kw_now_ns()) != 0) {
			kpx_add(&ep->env.w->m.quic_bad_tokens,
			        1); /* forged, expired or another address */
			return;
		}
		retried = true;
	}
	if (!retried && need_retry(ep)) {
		send_retry(ep, &hd, peer, peer_len);
		return;
	}
	if (!kpx_conn_take_slot(ep->env.w->opt->max_connections)) {
		kpx_add(&ep->env.w->m.quic_refused, 1);
		return;
	}
	kpx_qconn_accept(&ep->env, &hd, retried ? &odcid : NULL, data, len, peer, peer_len);
}

static void dispatch(struct kpx_qep *ep, const uint8_t *data, size_t len,
                     const struct sockaddr *peer, socklen_t peer_len)
{
	ngtcp2_version_cid vc;
	int rc = ngtcp2_pkt_decode_version_cid(&vc, data, len, KPX_QUIC_SCID_LEN);
	if (rc == NGTCP2_ERR_VERSION_NEGOTIATION) {
		send_vn(ep, &vc, peer, peer_len);
		return;
	}
	if (rc != 0) {
		kpx_add(&ep->env.w->m.quic_dropped, 1);
		return;
	}
	struct kpx_qconn *c = cid_find(ep, vc.dcid, vc.dcidlen);
	if (c != NULL) {
		kpx_qconn_read(c, data, len, peer, peer_len);
		return;
	}
	if (data[0] & 0x80) {
		accept_initial(ep, data, len, peer, peer_len);
		return;
	}
	kpx_add(&ep->env.w->m.quic_dropped, 1);
	send_reset(ep, vc.dcid, vc.dcidlen, len, peer, peer_len);
}

/* gro_size is the segment size of a coalesced receive (UDP_GRO), or 0 for one datagram. */
static size_t gro_size(struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
			int v;
			memcpy(&v, CMSG_DATA(cm), sizeof(v));
			return v > 0 ? (size_t)v : 0;
		}
	}
	return 0;
}

/* seg_size is the size of the datagrams in a received buffer of len bytes. */
static size_t seg_size(struct msghdr *mh, size_t len)
{
	size_t seg = gro_size(mh);
	return seg == 0 || seg > len ? len : seg;
}

/*
 * rx_prebatch opens the short-header packets of the n received buffers in
 * one engine run (--quic-crypto engine) before any is read; ngtcp2's
 * callbacks check each result before they use it (quic_rxbatch.h).
 */
static void rx_prebatch(struct kpx_qep *ep, struct mmsghdr *msgs, int n)
{
	for (int i = 0; i < n; i++) {
		struct msghdr *mh = &msgs[i].msg_hdr;
		size_t len = msgs[i].msg_len, seg = seg_size(mh, len);
		if (mh->msg_flags & MSG_TRUNC)
			continue;
		for (size_t off = 0; off < len; off += seg) {
			const uint8_t *d = ep->rx->buf[i] + off;
			size_t dl = len - off < seg ? len - off : seg;
			if (dl <= 1 + KPX_QUIC_SCID_LEN || (d[0] & 0x80))
				continue;
			struct kpx_qconn *c = cid_find(ep, d + 1, KPX_QUIC_SCID_LEN);
			if (c != NULL)
				kpx_qtx_rx_add(ep->env.tx, kpx_qconn_rx_batchable(c), d, dl);
		}
	}
	kpx_qtx_rx_run(ep->env.tx);
}

/*
 * on_readable receives with recvmmsg, RX_MSGS buffers per call, each of
 * which may hold several datagrams of one sender that the kernel coalesced
 * (UDP_GRO, cut back apart here at the segment size): few system calls per
 * datagram under load.
 */
static void on_readable(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_qep *ep = arg;
	struct kpx_qrx *rx = ep->rx;
	for (int round = 0; round < RECV_ROUNDS; round++) {
		struct mmsghdr msgs[RX_MSGS];
		struct iovec iov[RX_MSGS];
		for (int i = 0; i < RX_MSGS; i++) {
			iov[i] = (struct iovec){rx->buf[i], RX_BUF};
			msgs[i].msg_hdr = (struct msghdr){
			    .msg_name = &rx->peer[i],
			    .msg_namelen = sizeof(rx->peer[i]),
			    .msg_iov = &iov[i],
			    .msg_iovlen = 1,
			    .msg_control = rx->cmsg[i],
			    .msg_controllen = sizeof(rx->cmsg[i]),
			};
		}
		int n = recvmmsg(fd, msgs, RX_MSGS, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				kw_debug("worker %u: quic recvmmsg: %s", ep->env.w->id,
				         strerror(errno));
			return;
		}
		kpx_add(&ep->env.w->m.quic_receives, 1);
		if (ep->env.tx != NULL)
			rx_prebatch(ep, msgs, n);
		for (int i = 0; i < n; i++) {
			struct msghdr *mh = &msgs[i].msg_hdr;
			size_t len = msgs[i].msg_len, seg = seg_size(mh, len);
			if (mh->msg_flags & MSG_TRUNC) {
				kpx_add(&ep->env.w->m.quic_dropped,
				        1); /* larger than any we accept */
				continue;
			}
			for (size_t off = 0; off < len; off += seg) {
				size_t dl = len - off < seg ? len - off : seg;
				kpx_add(&ep->env.w->m.quic_datagrams[0], 1);
				if (dl > 0)
					dispatch(ep, rx->buf[i] + off, dl,
					         (struct sockaddr *)&rx->peer[i], mh->msg_namelen);
			}
		}
		kpx_qtx_rx_done(ep->env.tx);
		if (n < RX_MSGS)
			return;
	}
}

/* flush_dirty writes every connection that read or timed out this turn, once. */
static void flush_dirty(struct kw_loop *loop, void *arg)
{
	struct kpx_qep *ep = arg;
	if (ep->env.hs != NULL)
		kpx_qconn_hs_collect(&ep->env);
	while (!kw_list_empty(&ep->env.dirty))
		kpx_qconn_flush(kpx_qconn_of(ep->env.dirty.next, true));
}

/* ---- the endpoint ---- */

/*
 * steer_by_cid attaches a classic BPF program to the sockets' SO_REUSEPORT
 * group that sends each datagram to the worker whose id is the first byte
 * of its Destination Connection ID (our IDs begin with it): short headers
 * and Handshake packets. Client Initials and 0-RTT carry IDs the client
 * chose, and go by the kernel's 4-tuple hash (an index out of range falls
 * back to it), as does a byte naming no worker. So a client whose address
 * or port changes keeps reaching the worker that holds its connection.
 */
static int steer_by_cid(int fd)
{
	struct sock_filter code[] = {
	    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),            /* 0: A = first byte */
	    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x80, 0, 4), /* 1: long header? else 6 */
	    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x30),        /* 2: long packet type */
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20, 0, 4),  /* 3: Handshake? else 8 */
	    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),            /* 4: DCID[0] of a long header */
	    BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0),              /* 5: to 7 */
	    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),            /* 6: DCID[0] of a short header */
	    BPF_STMT(BPF_RET | BPF_A, 0),                     /* 7: that worker's socket */
	    BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),           /* 8: the kernel's hash */
	};
	struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) == 0
	           ? 0
	           : -errno;
}

int kpx_quic_open_sockets(struct kw_addr *addr, unsigned n, int *fds, char *err, size_t errlen)
{
	char text[300];
	for (unsigned i = 0; i < n; i++) {
		int fd = socket(addr->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1, size = SOCKBUF;
		if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
		                bind(fd, (struct sockaddr *)&addr->ss, addr->len) < 0)) {
			int e = errno;
			close(fd);
			fd = -1;
			errno = e;
		}
		if (fd < 0) {
			kw_addr_format(addr, text, sizeof(text));
			snprintf(
			    err, errlen,
			    "--quic-listen: cannot bind UDP %s: %s; fix: choose a free address",
			    text, strerror(errno));
			return -errno;
		}
		/* Bulk transfers send bursts of 64 KB per connection: room for a few. */
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
		fds[i] = fd;
		if (kw_addr_port(addr) == 0) {
			int port = kw_bound_port(fd);
			if (port > 0)
				kw_addr_set_port(addr, port);
		}
	}
	/* The group's socket i is fds[i] (bound in order), worker i's. */
	int rc = n > 1 ? steer_by_cid(fds[0]) : 0;
	if (rc < 0)
		kw_warn(
		    "--quic-listen: cannot steer datagrams by connection ID (%s); a client that "
		    "changes address may lose its connection",
		    kw_strerror(rc));
	return 0;
}

int kpx_quic_start(struct kpx_worker *w, int fd)
{
	struct kpx_qep *ep = calloc(1, sizeof(*ep));
	if (ep == NULL) {
		close(fd);
		return -ENOMEM;
	}
	ep->env.ops = (struct kpx_qconn_ops){
	    .ctx = ep,
	    .send = op_send,
	    .cid_add = op_cid_add,
	    .cid_remove = op_cid_remove,
	    .reset_token = op_reset_token,
	};
	ep->env.w = w;
	ep->fd = fd;
	ep->nbuckets = NBUCKETS;
	ep->env.local_len = sizeof(ep->env.local);
	kw_list_init(&ep->env.conns);
	kw_list_init(&ep->env.dirty);
	kw_hook_init(&ep->flush, flush_dirty, ep);
	kw_io_init(&ep->io, on_readable, ep);
	w->quic = ep;
	int rc = -ENOMEM;
	if ((ep->buckets = calloc(ep->nbuckets, sizeof(*ep->buckets))) == NULL ||
	    (ep->env.txbuf = malloc(KPX_QUIC_TXBUF)) == NULL ||
	    (ep->rx = malloc(sizeof(*ep->rx))) == NULL)
		goto fail;
	/* Coalesced receives where the kernel can (Linux 5.0+); plain datagrams otherwise. */
	int one = 1;
	setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
	if (getsockname(fd, (struct sockaddr *)&ep->env.local, &ep->env.local_len) < 0) {
		rc = -errno;
		goto fail;
	}
	gnutls_rnd(GNUTLS_RND_NONCE, &ep->hash_seed, sizeof(ep->hash_seed));
	if (w->opt->quic_crypto == KPX_QUIC_CRYPTO_ENGINE &&
	    (rc = kpx_qtx_new(&ep->env.tx, w)) < 0) {
		kw_error("worker %u: cannot start the QUIC engine '%s': %s", w->id,
		         w->opt->quic_engine, kw_strerror(rc));
		goto fail;
	}
	/* GnuTLS signs synchronously: keyserver-held keys sign on the handshake threads. */
	if (w->opt->keys_remote && w->opt->quic_handshake_threads > 0 &&
	    (ep->env.hs = kpx_qhs_port_new(w->loop, w->opt->quic_handshake_threads)) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	kw_hook_add(w->loop, &ep->flush);
	if ((rc = kw_io_start(w->loop, &ep->io, fd, KW_EV_READ)) < 0)
		goto fail;
	return 0;
fail:
	kpx_quic_stop(w);
	return rc;
}

void kpx_quic_drain(struct kpx_worker *w)
{
	struct kpx_qep *ep = w->quic;
	if (ep == NULL || ep->draining)
		return;
	ep->draining = true;
	for (struct kw_list *l = ep->env.conns.next; l != &ep->env.conns;) {
		struct kpx_qconn *c = kpx_qconn_of(l, false);
		l = l->next; /* c may be freed */
		kpx_qconn_drain(c);
	}
}

void kpx_quic_close_all(struct kpx_worker *w)
{
	struct kpx_qep *ep = w->quic;
	if (ep == NULL)
		return;
	ep->draining = true;
	/* A connection whose handshake step is on a thread is closed once it is back. */
	if (ep->env.hs != NULL) {
		kpx_qhs_wait(ep->env.hs);
		kpx_qconn_hs_collect(&ep->env);
	}
	while (!kw_list_empty(&ep->env.conns))
		kpx_qconn_close(kpx_qconn_of(ep->env.conns.next, false));
}

void kpx_quic_stop(struct kpx_worker *w)
{
	struct kpx_qep *ep = w->quic;
	if (ep == NULL)
		return;
	kpx_quic_close_all(w);
	kw_io_stop(w->loop, &ep->io);
	kw_hook_remove(w->loop, &ep->flush);
	close(ep->fd);
	kpx_qtx_free(ep->env.tx);
	kpx_qhs_port_free(ep->env.hs);
	free(ep->buckets);
	free(ep->env.txbuf);
	free(ep->rx);
	free(ep);
	w->quic = NULL;
}

unsigned kpx_quic_conns(const struct kpx_worker *w)
{
	return w->quic != NULL ? w->quic->env.nconns : 0;
}
