/*
 * quic_conn.c - one QUIC connection (see quic_conn.h): ngtcp2's server
 * connection, its GnuTLS session, HTTP/3 on nghttp3 and the --respond
 * answers, the write loop that packs datagrams into GSO batches, and the
 * connection's timer (ngtcp2's expiry: loss detection, pacing, idle).
 *
 * Lifetime: a connection is freed at once by kpx_qconn_close or on an
 * error, never inside an ngtcp2 or nghttp3 callback (those only record the
 * error and make the library call fail); nothing outside holds it but the
 * endpoint's connection-ID table and lists, which it leaves when freed.
 */
#include "quic_conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "accesslog.h"
#include "conn.h"
#include "http.h"
#include "proxyv2.h"
#include "keyway/log.h"
#include "quic_hs.h"
#include "quic_relay.h"
#include "quic_tx.h"
#include "tlsctx.h"

#define PATH_MAX_LEN 512
#define MAX_STREAMS_BIDI 100 /* requests in flight per connection */

/* TLS 1.3 only, without CCM (the engine does GCM and ChaCha20), no middlebox compatibility. */
static const char priority[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"
    "%DISABLE_TLS13_COMPAT_MODE";
static const gnutls_datum_t alpn_h3 = {(unsigned char *)"h3", 2};

/* The bytes /bytes/N answers with, repeated: static, so nghttp3 may keep pointers to it. */
static uint8_t pattern[16384];
static pthread_once_t pattern_once = PTHREAD_ONCE_INIT;

/* One request stream. */
struct qstream {
	struct kpx_qrelay *relay; /* --upstream: the request's relay; first: see quic_relay.h */
	struct kw_list node;      /* in the connection's streams */
	int64_t id;
	char path[PATH_MAX_LEN];
	size_t path_len;
	bool head, path_too_long;
	const uint8_t *body; /* fixed body, or NULL: the pattern */
	uint64_t body_len, sent;
	char clen[24];
};

/* A datagram kept for a connection while its handshake step runs on a thread. */
struct held {
	struct held *next;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	size_t len;
	uint8_t data[];
};

/* Datagrams held per connection at most meanwhile; more are dropped (the client resends). */
#define MAX_HELD 32
/* Connection-ID changes ngtcp2 may ask for during a step on a thread, applied when back. */
#define MAX_CID_OPS 16

struct cid_op {
	ngtcp2_cid cid;
	bool add;
};

struct kpx_qconn {
	struct kpx_qtx_conn tx;          /* first: quic_tx.c's callbacks find it at the user data */
	ngtcp2_crypto_conn_ref conn_ref; /* gnutls_session_get_ptr: how ngtcp2's helper finds us */
	struct kpx_qconn_env *env;       /* the endpoint's: what the connections share */
	struct kw_list node, dirty_node;
	ngtcp2_conn *conn;
	nghttp3_conn *h3;
	gnutls_session_t tls;
	struct kpx_tls *certs; /* keeps the credentials alive */
	struct kw_timer timer;
	ngtcp2_cid odcid; /* the client's first DCID, also mapped (its Initials repeat it) */
	ngtcp2_connection_close_error last_error;
	struct kw_list streams;
	bool handshake_done;
	bool draining; /* GOAWAY sent: close once the last request stream has ended */
	/* access log */
	struct sockaddr_storage peer; /* the client's address at the start */
	socklen_t peer_len;
	uint64_t start_ns, handshake_ns, requests, rx_udp, tx_udp;
	enum kpx_reason reason; /* the first cause recorded wins */
	/*
	 * Keyserver-held keys (env->hs): until GnuTLS has signed, each datagram
	 * is read on a handshake thread (the step), since GnuTLS signs
	 * synchronously inside ngtcp2's read. While a step runs (busy) the loop
	 * touches nothing of conn/tls: datagrams are held, the timer is
	 * stopped, a close waits (close_after), and connection-ID changes are
	 * recorded (cid_ops) for the loop's table.
	 */
	bool offload, busy, close_after, signed_key;
	struct kpx_qhs_job job;
	struct held *step; /* the datagram the step reads */
	int step_rv;
	struct held *held, **held_tail;
	unsigned nheld;
	struct cid_op cid_ops[MAX_CID_OPS];
	unsigned ncid_ops;
	bool hs_done_off_loop; /* handshake_completed ran on a thread: the loop counts it */
};

/* Set on a handshake thread while it runs a step: callbacks defer what belongs to the loop. */
static _Thread_local bool off_loop;

static void qconn_free(struct kpx_qconn *c);
static void close_with_error(struct kpx_qconn *c);

/* ---- the endpoint's operations (struct kpx_qconn_ops) ---- */

static int send_dgrams(struct kpx_qconn *c, const struct sockaddr *peer, socklen_t peer_len,
                       const uint8_t *buf, size_t len, size_t gso)
{
	return c->env->ops.send(c->env->ops.ctx, peer, peer_len, buf, len, gso);
}

static int cid_add(struct kpx_qconn *c, const ngtcp2_cid *cid)
{
	return c->env->ops.cid_add(c->env->ops.ctx, cid, c);
}

static void cid_remove(struct kpx_qconn *c, const ngtcp2_cid *cid)
{
	c->env->ops.cid_remove(c->env->ops.ctx, cid);
}

static int reset_token(struct kpx_qconn *c, uint8_t *token, const ngtcp2_cid *cid)
{
	return c->env->ops.reset_token(c->env->ops.ctx, token, cid);
}

struct kpx_qconn *kpx_qconn_of(struct kw_list *l, bool dirty)
{
	return dirty ? kw_container_of(l, struct kpx_qconn, dirty_node)
	             : kw_container_of(l, struct kpx_qconn, node);
}

static void set_reason(struct kpx_qconn *c, enum kpx_reason r)
{
	if (c->reason == KPX_R_NONE)
		c->reason = r;
}

static void mark_dirty(struct kpx_qconn *c)
{
	if (!kw_list_linked(&c->dirty_node))
		kw_list_add_tail(&c->env->dirty, &c->dirty_node);
}

static struct kpx_wmetrics *metrics(struct kpx_qconn *c)
{
	return &c->env->w->m;
}

/* ---- what a request stream's relay asks of the connection (struct kpx_qrelay_ops) ---- */

static void relay_wake(void *ctx)
{
	mark_dirty(ctx);
}

static void relay_count_request(void *ctx)
{
	struct kpx_qconn *c = ctx;
	c->requests++;
}

/*
 * pp2_info fills what a PROXY v2 header says of c: UDP transport, TLS 1.3
 * with its cipher, h3 (strings owned by c's session, sni_buf holding the
 * server name).
 */
static void pp2_info(struct kpx_qconn *c, struct kpx_pp2_info *in, char *sni_buf, size_t sni_len)
{
	unsigned type;
	size_t len = sni_len - 1;
	if (gnutls_server_name_get(c->tls, sni_buf, &len, &type, 0) != 0)
		sni_buf[0] = 0;
	*in = (struct kpx_pp2_info){
	    .src = (struct sockaddr *)&c->peer,
	    .dst = (struct sockaddr *)&c->env->local,
	    .tls_version = "TLSv1.3",
	    .cipher = gnutls_ciphersuite_get(c->tls),
	    .sni = sni_buf[0] != 0 ? sni_buf : NULL,
	    .alpn = (const unsigned char *)"h3",
	    .alpn_len = 2,
	    .udp = true,
	};
}

/*
 * relay_new starts the relay of request stream sid: it is given the
 * connection's handles and ops, and the PROXY v2 facts as plain data, so it
 * never calls back into this file. NULL when out of memory.
 */
static struct kpx_qrelay *relay_new(struct kpx_qconn *c, int64_t sid)
{
	const struct kpx_qrelay_conn qc = {
	    .ops = {.ctx = c, .wake = relay_wake, .count_request = relay_count_request},
	    .w = c->env->w,
	    .conn = c->conn,
	    .h3 = c->h3,
	};
	struct kpx_pp2_info in;
	char sni[256];
	bool pp2 = c->env->w->opt->send_proxy_v2;
	if (pp2)
		pp2_info(c, &in, sni, sizeof(sni));
	return kpx_qrelay_new(&qc, sid, pp2 ? &in : NULL);
}

/* ---- HTTP/3: requests and the --respond answers ---- */

static void extend_offsets(struct kpx_qconn *c, int64_t stream_id, uint64_t n)
{
	ngtcp2_conn_extend_max_stream_offset(c->conn, stream_id, n);
	ngtcp2_conn_extend_max_offset(c->conn, n);
}

static int h3_acked(nghttp3_conn *h3, int64_t stream_id, uint64_t datalen, void *ud, void *sd)
{
	struct qstream *st = sd;
	/* --respond bodies are static; a relayed one is released as the client acknowledges it. */
	if (st != NULL && st->relay != NULL)
		kpx_qrelay_acked(st->relay, datalen);
	return 0;
}

static void stream_free(struct qstream *st)
{
	kw_list_del(&st->node);
	kpx_qrelay_free(st->relay);
	free(st);
}

static int h3_stream_close(nghttp3_conn *h3, int64_t stream_id, uint64_t app_error_code, void *ud,
                           void *sd)
{
	struct qstream *st = sd;
	if (st != NULL)
		stream_free(st);
	return 0;
}

static int h3_recv_data(nghttp3_conn *h3, int64_t stream_id, const uint8_t *data, size_t datalen,
                        void *ud, void *sd)
{
	struct qstream *st = sd;
	if (st != NULL && st->relay != NULL)
		return kpx_qrelay_body(st->relay, data, datalen) == 0
		           ? 0
		           : NGHTTP3_ERR_CALLBACK_FAILURE;
	/* --respond reads request bodies only to discard them: give the credit back. */
	extend_offsets(ud, stream_id, datalen);
	return 0;
}

static int h3_deferred_consume(nghttp3_conn *h3, int64_t stream_id, size_t consumed, void *ud,
                               void *sd)
{
	extend_offsets(ud, stream_id, consumed);
	return 0;
}

static int h3_begin_headers(nghttp3_conn *h3, int64_t stream_id, void *ud, void *sd)
{
	struct kpx_qconn *c = ud;
	struct qstream *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	st->id = stream_id;
	kw_list_add_tail(&c->streams, &st->node);
	if (c->env->w->opt->upstream != NULL && (st->relay = relay_new(c, stream_id)) == NULL)
		return NGHTTP3_ERR_CALLBACK_FAILURE;
	nghttp3_conn_set_stream_user_data(h3, stream_id, st);
	return 0;
}

static int h3_recv_header(nghttp3_conn *h3, int64_t stream_id, int32_t token, nghttp3_rcbuf *name,
                          nghttp3_rcbuf *value, uint8_t flags, void *ud, void *sd)
{
	struct qstream *st = sd;
	nghttp3_vec v = nghttp3_rcbuf_get_buf(value);
	if (st == NULL)
		return 0;
	if (st->relay != NULL) {
		nghttp3_vec n = nghttp3_rcbuf_get_buf(name);
		return kpx_qrelay_header(st->relay, token, n.base, n.len, v.base, v.len) == 0
		           ? 0
		           : NGHTTP3_ERR_CALLBACK_FAILURE;
	}
	if (token == NGHTTP3_QPACK_TOKEN__PATH) {
		st->path_too_long = v.len >= sizeof(st->path);
		st->path_len = st->path_too_long ? 0 : v.len;
		memcpy(st->path, v.base, st->path_len);
		st->path[st->path_len] = 0;
	} else if (token == NGHTTP3_QPACK_TOKEN__METHOD) {
		st->head = v.len == 4 && memcmp(v.base, "HEAD", 4) == 0;
	}
	return 0;
}

static nghttp3_ssize read_body(nghttp3_conn *h3, int64_t stream_id, nghttp3_vec *vec, size_t veccnt,
                               uint32_t *pflags, void *ud, void *sd)
{
	struct qstream *st = sd;
	size_t i = 0;
	while (i < veccnt && st->sent < st->body_len) {
		uint64_t left = st->body_len - st->sent;
		if (st->body != NULL) {
			vec[i].base = (uint8_t *)st->body + st->sent;
			vec[i].len = (size_t)left;
		} else {
			vec[i].base = pattern;
			vec[i].len = left < sizeof(pattern) ? (size_t)left : sizeof(pattern);
		}
		st->sent += vec[i].len;
		i++;
	}
	if (st->sent == st->body_len)
		*pflags |= NGHTTP3_DATA_FLAG_EOF;
	return (nghttp3_ssize)i;
}

#define NV(n, v, vl)                                                                               \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP3_NV_FLAG_NONE          \
	}

/* respond answers a complete request like --respond over TCP, or with N bytes. */
static int respond(struct kpx_qconn *c, struct qstream *st)
{
	const char *status = "200", *type = "text/plain";
	uint64_t n = 0;
	/* The same /bytes/N rules as over TCP (http.c). */
	int b = st->path_too_long ? -1 : kpx_http_bytes_path(st->path, st->path_len, &n);

	if (b < 0) {
		status = "400";
		st->body_len = 0;
	} else if (b > 0) {
		type = "application/octet-stream";
		st->body_len = n;
	} else {
		st->body = (const uint8_t *)c->env->w->opt->body;
		st->body_len = strlen(c->env->w->opt->body);
	}
	snprintf(st->clen, sizeof(st->clen), "%llu", (unsigned long long)st->body_len);
	const nghttp3_nv nva[] = {
	    NV(":status", status, 3),
	    NV("server", "keyway-proxy", 12),
	    NV("content-type", type, strlen(type)),
	    NV("content-length", st->clen, strlen(st->clen)),
	};
	nghttp3_data_reader dr = {.read_data = read_body};
	bool body = !st->head && st->body_len > 0;
	kpx_add(b < 0 ? &metrics(c)->quic_http_errors : &metrics(c)->quic_requests, 1);
	c->requests++;
	return nghttp3_conn_submit_response(c->h3, st->id, nva, sizeof(nva) / sizeof(nva[0]),
	                                    body ? &dr : NULL);
}

static int h3_end_stream(nghttp3_conn *h3, int64_t stream_id, void *ud, void *sd)
{
	struct qstream *st = sd;
	if (st == NULL)
		return 0;
	if (st->relay != NULL)
		return kpx_qrelay_body_end(st->relay) == 0 ? 0 : NGHTTP3_ERR_CALLBACK_FAILURE;
	return respond(ud, st) == 0 ? 0 : NGHTTP3_ERR_CALLBACK_FAILURE;
}

static int h3_end_headers(nghttp3_conn *h3, int64_t stream_id, int fin, void *ud, void *sd)
{
	struct qstream *st = sd;
	if (st == NULL || st->relay == NULL)
		return 0;
	return kpx_qrelay_headers_done(st->relay, fin != 0) == 0 ? 0 : NGHTTP3_ERR_CALLBACK_FAILURE;
}

static int h3_stop_sending(nghttp3_conn *h3, int64_t stream_id, uint64_t app_error_code, void *ud,
                           void *sd)
{
	struct kpx_qconn *c = ud;
	return ngtcp2_conn_shutdown_stream_read(c->conn, stream_id, app_error_code) == 0
	           ? 0
	           : NGHTTP3_ERR_CALLBACK_FAILURE;
}

static int h3_reset_stream(nghttp3_conn *h3, int64_t stream_id, uint64_t app_error_code, void *ud,
                           void *sd)
{
	struct kpx_qconn *c = ud;
	return ngtcp2_conn_shutdown_stream_write(c->conn, stream_id, app_error_code) == 0
	           ? 0
	           : NGHTTP3_ERR_CALLBACK_FAILURE;
}

/* setup_h3 makes the HTTP/3 connection and opens its three unidirectional streams. */
static int setup_h3(struct kpx_qconn *c)
{
	nghttp3_callbacks cb = {
	    .acked_stream_data = h3_acked,
	    .stream_close = h3_stream_close,
	    .recv_data = h3_recv_data,
	    .deferred_consume = h3_deferred_consume,
	    .begin_headers = h3_begin_headers,
	    .recv_header = h3_recv_header,
	    .end_headers = h3_end_headers,
	    .stop_sending = h3_stop_sending,
	    .end_stream = h3_end_stream,
	    .reset_stream = h3_reset_stream,
	};
	nghttp3_settings s;
	int64_t ctrl, enc, dec;

	nghttp3_settings_default(&s);
	s.qpack_max_dtable_capacity = 4096;
	s.qpack_blocked_streams = 100;
	if (nghttp3_conn_server_new(&c->h3, &cb, &s, NULL, c) != 0)
		return -1;
	nghttp3_conn_set_max_client_streams_bidi(c->h3, MAX_STREAMS_BIDI);
	if (ngtcp2_conn_open_uni_stream(c->conn, &ctrl, NULL) != 0 ||
	    nghttp3_conn_bind_control_stream(c->h3, ctrl) != 0 ||
	    ngtcp2_conn_open_uni_stream(c->conn, &enc, NULL) != 0 ||
	    ngtcp2_conn_open_uni_stream(c->conn, &dec, NULL) != 0 ||
	    nghttp3_conn_bind_qpack_streams(c->h3, enc, dec) != 0)
		return -1;
	return 0;
}

/* ---- ngtcp2 callbacks ---- */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
	return ((struct kpx_qconn *)ref->user_data)->conn;
}

static int handshake_completed(ngtcp2_conn *conn, void *ud)
{
	struct kpx_qconn *c = ud;
	c->handshake_done = true;
	if (off_loop)
		c->hs_done_off_loop = true; /* the endpoint's count is the loop's */
	else
		c->env->handshaking--;
	c->handshake_ns = kw_now_ns() - c->start_ns;
	kpx_add(&metrics(c)->quic_handshakes, 1);
	if (c->h3 == NULL && setup_h3(c) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static void h3_error(struct kpx_qconn *c, int liberr)
{
	ngtcp2_connection_close_error_set_application_error(
	    &c->last_error, nghttp3_err_infer_quic_app_error_code(liberr), NULL, 0);
}

static int recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id, uint64_t offset,
                            const uint8_t *data, size_t datalen, void *ud, void *sd)
{
	struct kpx_qconn *c = ud;
	if (c->h3 == NULL && setup_h3(c) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	nghttp3_ssize n = nghttp3_conn_read_stream(c->h3, stream_id, data, datalen,
	                                           flags & NGTCP2_STREAM_DATA_FLAG_FIN);
	if (n < 0) {
		h3_error(c, (int)n);
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	extend_offsets(c, stream_id, (uint64_t)n);
	return 0;
}

static int acked_stream_data_offset(ngtcp2_conn *conn, int64_t stream_id, uint64_t offset,
                                    uint64_t datalen, void *ud, void *sd)
{
	struct kpx_qconn *c = ud;
	if (c->h3 != NULL && nghttp3_conn_add_ack_offset(c->h3, stream_id, datalen) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                        uint64_t app_error_code, void *ud, void *sd)
{
	struct kpx_qconn *c = ud;
	if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET))
		app_error_code = NGHTTP3_H3_NO_ERROR;
	if (c->h3 != NULL) {
		int rc = nghttp3_conn_close_stream(c->h3, stream_id, app_error_code);
		if (rc != 0 && rc != NGHTTP3_ERR_STREAM_NOT_FOUND) {
			h3_error(c, rc);
			return NGTCP2_ERR_CALLBACK_FAILURE;
		}
	}
	/* A finished request stream makes room for another. */
	if (ngtcp2_is_bidi_stream(stream_id))
		ngtcp2_conn_extend_max_streams_bidi(conn, 1);
	return 0;
}

static int stream_reset(ngtcp2_conn *conn, int64_t stream_id, uint64_t final_size,
                        uint64_t app_error_code, void *ud, void *sd)
{
	struct kpx_qconn *c = ud;
	if (c->h3 != NULL && nghttp3_conn_shutdown_stream_read(c->h3, stream_id) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int stream_stop_sending(ngtcp2_conn *conn, int64_t stream_id, uint64_t app_error_code,
                               void *ud, void *sd)
{
	return stream_reset(conn, stream_id, 0, app_error_code, ud, sd);
}

static int extend_max_remote_streams_bidi(ngtcp2_conn *conn, uint64_t max_streams, void *ud)
{
	struct kpx_qconn *c = ud;
	if (c->h3 != NULL)
		nghttp3_conn_set_max_client_streams_bidi(c->h3, max_streams);
	return 0;
}

static int extend_max_stream_data(ngtcp2_conn *conn, int64_t stream_id, uint64_t max_data, void *ud,
                                  void *sd)
{
	struct kpx_qconn *c = ud;
	if (c->h3 != NULL && nghttp3_conn_unblock_stream(c->h3, stream_id) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static void rand_cb(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *rand_ctx)
{
	gnutls_rnd(GNUTLS_RND_RANDOM, dest, destlen);
}

/* new_cid makes a server connection ID: the worker's id, then random bytes. */
static int new_cid(struct kpx_qconn *c, ngtcp2_cid *cid)
{
	cid->datalen = KPX_QUIC_SCID_LEN;
	if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cid->datalen) != 0)
		return -1;
	cid->data[0] = (uint8_t)c->env->w->id;
	return 0;
}

/* defer_cid records a connection-ID change made on a handshake thread for the loop. */
static int defer_cid(struct kpx_qconn *c, const ngtcp2_cid *cid, bool add)
{
	if (c->ncid_ops == MAX_CID_OPS)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	c->cid_ops[c->ncid_ops++] = (struct cid_op){*cid, add};
	return 0;
}

static int get_new_connection_id(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                                 void *ud)
{
	struct kpx_qconn *c = ud;
	if (new_cid(c, cid) != 0 || reset_token(c, token, cid) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	if (off_loop)
		return defer_cid(c, cid, true);
	return cid_add(c, cid) != 0 ? NGTCP2_ERR_CALLBACK_FAILURE : 0;
}

static int remove_connection_id(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *ud)
{
	struct kpx_qconn *c = ud;
	if (off_loop)
		return defer_cid(c, cid, false);
	cid_remove(c, cid);
	return 0;
}

static void fill_callbacks(ngtcp2_callbacks *cb)
{
	*cb = (ngtcp2_callbacks){
	    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
	    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
	    .handshake_completed = handshake_completed,
	    .encrypt = ngtcp2_crypto_encrypt_cb,
	    .decrypt = ngtcp2_crypto_decrypt_cb,
	    .hp_mask = ngtcp2_crypto_hp_mask_cb,
	    .recv_stream_data = recv_stream_data,
	    .acked_stream_data_offset = acked_stream_data_offset,
	    .stream_close = stream_close,
	    .rand = rand_cb,
	    .get_new_connection_id = get_new_connection_id,
	    .remove_connection_id = remove_connection_id,
	    .update_key = ngtcp2_crypto_update_key_cb,
	    .stream_reset = stream_reset,
	    .extend_max_remote_streams_bidi = extend_max_remote_streams_bidi,
	    .extend_max_stream_data = extend_max_stream_data,
	    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
	    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
	    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
	    .stream_stop_sending = stream_stop_sending,
	    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
	};
}

/* ---- writing ---- */

/* The batch being built: equal-sized datagrams to one peer, sent with one sendmsg. */
struct batch {
	uint8_t *buf;
	size_t len, gso, n;
	struct sockaddr_storage peer;
	socklen_t peer_len;
};

/*
 * batch_send protects the batch's 1-RTT packets (engine mode; unless the
 * caller sealed them already) and sends it. 0 or -1 (not protected).
 */
static int batch_send(struct kpx_qconn *c, struct batch *b, bool sealed)
{
	if (b->n == 0)
		return 0;
	if (!sealed && kpx_qtx_seal(c->env->tx, b->buf, b->len, c->conn) < 0)
		return -1;
	send_dgrams(c, (struct sockaddr *)&b->peer, b->peer_len, b->buf, b->len,
	            b->n > 1 ? b->gso : 0);
	c->tx_udp += b->len;
	b->len = b->n = b->gso = 0;
	return 0;
}

/* write_one asks ngtcp2 for one datagram at dst (room bytes): its size, 0 or < 0 (error). */
static ngtcp2_ssize write_one(struct kpx_qconn *c, ngtcp2_path_storage *ps, uint8_t *dst,
                              size_t room, ngtcp2_tstamp ts)
{
	for (;;) {
		int64_t stream_id = -1;
		int fin = 0;
		nghttp3_vec vec[16];
		nghttp3_ssize nvec = 0;
		if (c->h3 != NULL && ngtcp2_conn_get_max_data_left(c->conn) > 0) {
			nvec = nghttp3_conn_writev_stream(c->h3, &stream_id, &fin, vec, 16);
			if (nvec < 0) {
				h3_error(c, (int)nvec);
				return NGTCP2_ERR_CALLBACK_FAILURE;
			}
		}
		uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
		if (fin)
			flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
		ngtcp2_ssize ndata = -1;
		ngtcp2_pkt_info pi;
		ngtcp2_ssize n =
		    ngtcp2_conn_writev_stream(c->conn, &ps->path, &pi, dst, room, &ndata, flags,
		                              stream_id, (const ngtcp2_vec *)vec, (size_t)nvec, ts);
		if (n < 0) {
			switch (n) {
			case NGTCP2_ERR_STREAM_DATA_BLOCKED:
				nghttp3_conn_block_stream(c->h3, stream_id);
				continue;
			case NGTCP2_ERR_STREAM_SHUT_WR:
				nghttp3_conn_shutdown_stream_write(c->h3, stream_id);
				continue;
			case NGTCP2_ERR_WRITE_MORE:
				if (nghttp3_conn_add_write_offset(c->h3, stream_id,
				                                  (size_t)ndata) != 0)
					return NGTCP2_ERR_CALLBACK_FAILURE;
				continue;
			default:
				ngtcp2_connection_close_error_set_transport_error_liberr(
				    &c->last_error, (int)n, NULL, 0);
				return n;
			}
		}
		if (ndata >= 0 && c->h3 != NULL &&
		    nghttp3_conn_add_write_offset(c->h3, stream_id, (size_t)ndata) != 0)
			return NGTCP2_ERR_CALLBACK_FAILURE;
		return n;
	}
}

static void arm_timer(struct kpx_qconn *c)
{
	ngtcp2_tstamp expiry = ngtcp2_conn_get_expiry(c->conn);
	if (expiry == UINT64_MAX)
		kw_timer_stop(c->env->w->loop, &c->timer);
	else
		kw_timer_start_at(c->env->w->loop, &c->timer, expiry);
}

/*
 * write_all writes what ngtcp2 lets out now (its send quantum: pacing), in
 * batches of equal-sized datagrams, one sendmsg each. 0 or < 0 (close).
 */
static int write_all(struct kpx_qconn *c)
{
	ngtcp2_path_storage ps;
	struct batch b = {.buf = c->env->txbuf};
	ngtcp2_tstamp ts = kw_now_ns();
	size_t mtu = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
	size_t quantum = ngtcp2_conn_get_send_quantum(c->conn);
	size_t max_pkts = quantum / mtu;
	if (max_pkts > KPX_QUIC_TXBUF / mtu)
		max_pkts = KPX_QUIC_TXBUF / mtu;
	if (max_pkts == 0)
		max_pkts = 1;

	ngtcp2_path_storage_zero(&ps);
	kpx_qtx_seal(c->env->tx, NULL, 0, c->conn); /* nothing recorded before counts */
	for (size_t sent = 0; sent < max_pkts;) {
		/* After the first, no datagram may be larger than the batch's segment size. */
		size_t room = b.n == 0 ? mtu : b.gso;
		if (b.len + room > KPX_QUIC_TXBUF) {
			if (batch_send(c, &b, false) < 0)
				return NGTCP2_ERR_CALLBACK_FAILURE;
			room = mtu;
		}
		ngtcp2_ssize n = write_one(c, &ps, b.buf + b.len, room, ts);
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		sent++;
		bool same_peer =
		    b.n == 0 || (ps.path.remote.addrlen == b.peer_len &&
		                 memcmp(ps.path.remote.addr, &b.peer, b.peer_len) == 0);
		if (!same_peer) {
			/* A path change (migration, probing): the batch so far goes, and the new
			 * datagram starts the next one. Both are sealed where they were written. */
			if (kpx_qtx_seal(c->env->tx, b.buf, b.len + (size_t)n, c->conn) < 0)
				return NGTCP2_ERR_CALLBACK_FAILURE;
			size_t before = b.len;
			batch_send(c, &b, true);
			memmove(b.buf, b.buf + before, (size_t)n);
		}
		if (b.n == 0) {
			memcpy(&b.peer, ps.path.remote.addr, ps.path.remote.addrlen);
			b.peer_len = ps.path.remote.addrlen;
			b.gso = (size_t)n;
		}
		b.len += (size_t)n;
		b.n++;
		/* A shorter datagram ends a GSO batch. */
		if ((size_t)n < b.gso && batch_send(c, &b, !same_peer) < 0)
			return NGTCP2_ERR_CALLBACK_FAILURE;
		if (!same_peer && b.n > 0 && batch_send(c, &b, true) < 0)
			return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	if (batch_send(c, &b, false) < 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
	return 0;
}

void kpx_qconn_flush(struct kpx_qconn *c)
{
	if (kw_list_linked(&c->dirty_node))
		kw_list_del(&c->dirty_node);
	if (c->busy) /* flushed when its handshake step is back */
		return;
	if (ngtcp2_conn_is_in_closing_period(c->conn) ||
	    ngtcp2_conn_is_in_draining_period(c->conn)) {
		qconn_free(c);
		return;
	}
	if (write_all(c) < 0) {
		set_reason(c, KPX_R_INTERNAL);
		close_with_error(c);
		return;
	}
	if (c->draining && kw_list_empty(&c->streams)) {
		set_reason(c, KPX_R_DONE);
		kpx_qconn_close(c);
		return;
	}
	arm_timer(c);
}

void kpx_qconn_drain(struct kpx_qconn *c)
{
	if (c->busy) { /* in its handshake: no request to answer, close when it is back */
		c->close_after = true;
		return;
	}
	if (c->h3 == NULL || kw_list_empty(&c->streams)) {
		set_reason(c, KPX_R_DRAIN);
		kpx_qconn_close(c);
		return;
	}
	/* GOAWAY: requests already received are answered, no new one is taken. */
	c->draining = true;
	nghttp3_conn_shutdown(c->h3);
	mark_dirty(c);
}

/* ---- reading, timers, closing ---- */

static void on_error(struct kpx_qconn *c, int rv)
{
	bool hs = c->handshake_done;
	kw_debug("worker %u: QUIC connection: %s", c->env->w->id, ngtcp2_strerror(rv));
	switch (rv) {
	case NGTCP2_ERR_DRAINING: /* the peer closed */
		set_reason(c, hs ? KPX_R_CLIENT_CLOSE : KPX_R_HANDSHAKE_FAILED);
		qconn_free(c);
		return;
	case NGTCP2_ERR_DROP_CONN: /* nothing to say to it */
		set_reason(c, hs ? KPX_R_CLIENT_CLOSE : KPX_R_HANDSHAKE_FAILED);
		qconn_free(c);
		return;
	case NGTCP2_ERR_IDLE_CLOSE: /* idle timeout: close silently (RFC 9000 §10.1) */
		set_reason(c, KPX_R_IDLE_TIMEOUT);
		qconn_free(c);
		return;
	case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
		set_reason(c, KPX_R_HANDSHAKE_TIMEOUT);
		qconn_free(c);
		return;
	case NGTCP2_ERR_CRYPTO:
		set_reason(c, hs ? KPX_R_TLS_ERROR : KPX_R_HANDSHAKE_FAILED);
		if (!c->last_error.error_code)
			ngtcp2_connection_close_error_set_transport_error_tls_alert(
			    &c->last_error, ngtcp2_conn_get_tls_alert(c->conn), NULL, 0);
		break;
	default:
		set_reason(c, hs ? KPX_R_TLS_ERROR : KPX_R_HANDSHAKE_FAILED);
		if (!c->last_error.error_code)
			ngtcp2_connection_close_error_set_transport_error_liberr(&c->last_error, rv,
			                                                         NULL, 0);
	}
	close_with_error(c);
}

/* read_now reads a datagram into c on the loop: 0, or -1 when c was closed (freed). */
static int read_now(struct kpx_qconn *c, const uint8_t *data, size_t len,
                    const struct sockaddr *peer, socklen_t peer_len)
{
	struct kpx_qconn_env *env = c->env;
	ngtcp2_path path = {
	    {(struct sockaddr *)&env->local, env->local_len},
	    {(struct sockaddr *)peer, peer_len},
	    NULL,
	};
	ngtcp2_pkt_info pi = {0};
	kpx_qtx_rx_window(env->tx, data, len);
	int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, data, len, kw_now_ns());
	kpx_qtx_rx_window(env->tx, NULL, 0);
	if (rv != 0) {
		on_error(c, rv);
		return -1;
	}
	mark_dirty(c);
	return 0;
}

static struct held *held_new(const uint8_t *data, size_t len, const struct sockaddr *peer,
                             socklen_t peer_len)
{
	struct held *h = malloc(sizeof(*h) + len);
	if (h == NULL || peer_len > sizeof(h->peer)) {
		free(h);
		return NULL;
	}
	h->next = NULL;
	memcpy(&h->peer, peer, peer_len);
	h->peer_len = peer_len;
	h->len = len;
	memcpy(h->data, data, len);
	return h;
}

/* run_step runs on a handshake thread: the read in which GnuTLS may sign, blocking. */
static void run_step(struct kpx_qhs_job *j)
{
	struct kpx_qconn *c = kw_container_of(j, struct kpx_qconn, job);
	struct held *h = c->step;
	ngtcp2_path path = {
	    {(struct sockaddr *)&c->env->local, c->env->local_len},
	    {(struct sockaddr *)&h->peer, h->peer_len},
	    NULL,
	};
	ngtcp2_pkt_info pi = {0};
	/* Queued past the connection's handshake deadline (ngtcp2's, from its start): the
	 * client has given up, so no keyserver is asked. */
	if (kw_now_ns() - c->start_ns >= NGTCP2_DEFAULT_HANDSHAKE_TIMEOUT) {
		c->step_rv = NGTCP2_ERR_HANDSHAKE_TIMEOUT;
		return;
	}
	unsigned signs = kpx_tls_quic_remote_signs();
	off_loop = true;
	c->step_rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, h->data, h->len, kw_now_ns());
	off_loop = false;
	c->signed_key = kpx_tls_quic_remote_signs() != signs;
}

/* start_step hands the datagram to a handshake thread; 0, or -1 (read it here instead). */
static int start_step(struct kpx_qconn *c, const uint8_t *data, size_t len,
                      const struct sockaddr *peer, socklen_t peer_len)
{
	if ((c->step = held_new(data, len, peer, peer_len)) == NULL)
		return -1;
	c->busy = true;
	kw_timer_stop(c->env->w->loop, &c->timer); /* ngtcp2's expiry waits for the step */
	c->job.run = run_step;
	kpx_add(&metrics(c)->quic_hs_steps, 1);
	kpx_qhs_submit(c->env->hs, &c->job);
	return 0;
}

/* hold keeps a datagram for c until its step is back (the first MAX_HELD). */
static void hold(struct kpx_qconn *c, const uint8_t *data, size_t len, const struct sockaddr *peer,
                 socklen_t peer_len)
{
	struct held *h = c->nheld < MAX_HELD ? held_new(data, len, peer, peer_len) : NULL;
	if (h == NULL) {
		kpx_add(&metrics(c)->quic_hs_held_dropped, 1);
		return;
	}
	if (c->held == NULL)
		c->held_tail = &c->held;
	*c->held_tail = h;
	c->held_tail = &h->next;
	c->nheld++;
}

/* read_dgram reads or holds a datagram for c: 0, or -1 when c was closed (freed). */
static int read_dgram(struct kpx_qconn *c, const uint8_t *data, size_t len,
                      const struct sockaddr *peer, socklen_t peer_len)
{
	if (c->busy) {
		hold(c, data, len, peer, peer_len);
		return 0;
	}
	if (c->offload && !c->signed_key && !c->handshake_done &&
	    start_step(c, data, len, peer, peer_len) == 0)
		return 0;
	return read_now(c, data, len, peer, peer_len);
}

struct kpx_qtx_conn *kpx_qconn_rx_batchable(struct kpx_qconn *c)
{
	/* busy first: while a step runs, its thread may be writing handshake_done. */
	return !c->busy && c->handshake_done ? &c->tx : NULL;
}

void kpx_qconn_read(struct kpx_qconn *c, const uint8_t *data, size_t len,
                    const struct sockaddr *peer, socklen_t peer_len)
{
	c->rx_udp += len;
	read_dgram(c, data, len, peer, peer_len);
}

/* step_done takes c back on the loop after its handshake step. */
static void step_done(struct kpx_qconn *c)
{
	struct kpx_qconn_env *env = c->env;
	c->busy = false;
	free(c->step);
	c->step = NULL;
	for (unsigned i = 0; i < c->ncid_ops; i++) {
		if (!c->cid_ops[i].add)
			cid_remove(c, &c->cid_ops[i].cid);
		else if (cid_add(c, &c->cid_ops[i].cid) != 0)
			c->step_rv = NGTCP2_ERR_CALLBACK_FAILURE;
	}
	c->ncid_ops = 0;
	if (c->hs_done_off_loop) {
		c->hs_done_off_loop = false;
		env->handshaking--;
	}
	if (c->close_after) {
		kpx_qconn_close(c);
		return;
	}
	if (c->step_rv != 0) {
		on_error(c, c->step_rv);
		return;
	}
	mark_dirty(c);
	/* The datagrams that came meanwhile, in order, until one starts another step. */
	while (c->held != NULL && !c->busy) {
		struct held *h = c->held;
		c->held = h->next;
		c->nheld--;
		int rc = read_dgram(c, h->data, h->len, (struct sockaddr *)&h->peer, h->peer_len);
		free(h);
		if (rc < 0)
			return;
	}
}

void kpx_qconn_hs_collect(struct kpx_qconn_env *env)
{
	struct kpx_qhs_job *j = kpx_qhs_collect(env->hs);
	while (j != NULL) {
		struct kpx_qhs_job *next = j->next;
		step_done(kw_container_of(j, struct kpx_qconn, job));
		j = next;
	}
}

static void on_timer(struct kw_loop *loop, void *arg)
{
	struct kpx_qconn *c = arg;
	int rv = ngtcp2_conn_handle_expiry(c->conn, kw_now_ns());
	if (rv != 0) {
		on_error(c, rv);
		return;
	}
	kpx_qconn_flush(c);
}

/* close_with_error sends CONNECTION_CLOSE with c->last_error once, then frees c. */
static void close_with_error(struct kpx_qconn *c)
{
	if (!ngtcp2_conn_is_in_closing_period(c->conn) &&
	    !ngtcp2_conn_is_in_draining_period(c->conn)) {
		ngtcp2_path_storage ps;
		ngtcp2_pkt_info pi;
		ngtcp2_path_storage_zero(&ps);
		kpx_qtx_seal(c->env->tx, NULL, 0, c->conn);
		ngtcp2_ssize n = ngtcp2_conn_write_connection_close(
		    c->conn, &ps.path, &pi, c->env->txbuf, NGTCP2_MAX_UDP_PAYLOAD_SIZE,
		    &c->last_error, kw_now_ns());
		if (n > 0 && kpx_qtx_seal(c->env->tx, c->env->txbuf, (size_t)n, c->conn) == 0)
			send_dgrams(c, ps.path.remote.addr, ps.path.remote.addrlen, c->env->txbuf,
			            (size_t)n, 0);
	}
	qconn_free(c);
}

void kpx_qconn_close(struct kpx_qconn *c)
{
	if (c->busy) { /* its handshake step owns it: closed when the step is back */
		c->close_after = true;
		return;
	}
	set_reason(c, KPX_R_DRAIN); /* unless a cause was recorded first */
	ngtcp2_connection_close_error_set_application_error(&c->last_error, NGHTTP3_H3_NO_ERROR,
	                                                    NULL, 0);
	close_with_error(c);
}

/* log_close writes the connection's access log line. */
static void log_close(struct kpx_qconn *c)
{
	char sni[256] = "";
	size_t sni_len = sizeof(sni) - 1;
	unsigned type;
	const char *cipher = NULL;
	if (c->tls != NULL) {
		if (gnutls_server_name_get(c->tls, sni, &sni_len, &type, 0) != 0)
			sni[0] = 0;
		if (c->handshake_done)
			cipher = gnutls_ciphersuite_get(c->tls);
	}
	struct kpx_access_quic q = {
	    .peer = (struct sockaddr *)&c->peer,
	    .sni = sni,
	    .cipher = cipher,
	    .start_ns = c->start_ns,
	    .handshake_ns = c->handshake_ns,
	    .requests = c->requests,
	    .rx_udp = c->rx_udp,
	    .tx_udp = c->tx_udp,
	    .reason = c->reason == KPX_R_NONE ? KPX_R_DONE : c->reason,
	};
	kpx_accesslog_quic(c->env->w, &q);
}

static void qconn_free(struct kpx_qconn *c)
{
	struct kpx_qconn_env *env = c->env;
	log_close(c);
	if (c->conn != NULL) {
		size_t n = ngtcp2_conn_get_num_scid(c->conn);
		ngtcp2_cid *ids = calloc(n > 0 ? n : 1, sizeof(*ids));
		if (ids != NULL) {
			n = ngtcp2_conn_get_scid(c->conn, ids);
			for (size_t i = 0; i < n; i++)
				cid_remove(c, &ids[i]);
			free(ids);
		}
	}
	cid_remove(c, &c->odcid);
	kw_list_del(&c->node);
	if (kw_list_linked(&c->dirty_node))
		kw_list_del(&c->dirty_node);
	kw_timer_stop(env->w->loop, &c->timer);
	while (!kw_list_empty(&c->streams))
		stream_free(kw_container_of(c->streams.next, struct qstream, node));
	nghttp3_conn_del(c->h3);
	ngtcp2_conn_del(c->conn);
	if (c->tls != NULL)
		gnutls_deinit(c->tls);
	kpx_tls_unref(c->certs);
	kpx_qtx_conn_cleanup(&c->tx);
	while (c->held != NULL) {
		struct held *h = c->held;
		c->held = h->next;
		free(h);
	}
	free(c->step);
	if (!c->handshake_done)
		env->handshaking--;
	env->nconns--;
	kpx_set(&env->w->m.quic_conns, env->nconns);
	kpx_add(&env->w->m.quic_closed, 1);
	kpx_conn_drop_slot();
	free(c);
}

/* ---- accepting ---- */

static int setup_tls(struct kpx_qconn *c)
{
	uint64_t gen;
	c->certs = kpx_tls_current(&gen);
	void *cred = c->certs != NULL ? kpx_tls_quic_cred(c->certs) : NULL;
	if (cred == NULL || gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_ENABLE_EARLY_DATA |
	                                             GNUTLS_NO_END_OF_EARLY_DATA) != 0)
		return -1;
	if (ngtcp2_crypto_gnutls_configure_server_session(c->tls) != 0 ||
	    gnutls_priority_set_direct(c->tls, priority, NULL) != 0 ||
	    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, cred) != 0 ||
	    gnutls_alpn_set_protocols(c->tls, &alpn_h3, 1, GNUTLS_ALPN_MANDATORY) != 0)
		return -1;
	if (c->env->tx != NULL)
		kpx_qtx_configure_session(c->tls);
	gnutls_session_set_ptr(c->tls, &c->conn_ref);
	ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
	/* A set with keyserver-held keys: the steps until GnuTLS signs go to the threads. */
	c->offload = c->env->hs != NULL && kpx_tls_quic_remote(c->certs);
	return 0;
}

static int setup_conn(struct kpx_qconn *c, const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                      const struct sockaddr *peer, socklen_t peer_len)
{
	const struct kpx_options *o = c->env->w->opt;
	ngtcp2_callbacks cb;
	ngtcp2_settings settings;
	ngtcp2_transport_params params;
	ngtcp2_cid scid;
	ngtcp2_path path = {
	    {(struct sockaddr *)&c->env->local, c->env->local_len},
	    {(struct sockaddr *)peer, peer_len},
	    NULL,
	};

	fill_callbacks(&cb);
	if (c->env->tx != NULL)
		kpx_qtx_callbacks(&cb);
	ngtcp2_settings_default(&settings);
	settings.initial_ts = kw_now_ns();
	settings.max_window = 24u << 20;
	settings.max_stream_window = 16u << 20;
	ngtcp2_transport_params_default(&params);
	params.initial_max_stream_data_bidi_local = 1u << 20;
	params.initial_max_stream_data_bidi_remote = 1u << 20;
	params.initial_max_stream_data_uni = 1u << 20;
	params.initial_max_data = 8u << 20;
	params.initial_max_streams_bidi = MAX_STREAMS_BIDI;
	params.initial_max_streams_uni = 3;
	params.max_idle_timeout = (uint64_t)o->quic_idle_timeout_s * NGTCP2_SECONDS;
	/* Room for the client's spare connection IDs across migrations (ngtcp2's default 2
	 * runs out when a migrating client replaces retired ones). */
	params.active_connection_id_limit = 8;
	params.original_dcid = hd->dcid;
	if (odcid != NULL) {
		/* After our Retry: the client's first DCID, and the Retry's SCID it now uses. */
		params.original_dcid = *odcid;
		params.retry_scid = hd->dcid;
		params.retry_scid_present = 1;
	}
	params.stateless_reset_token_present = 1;
	if (new_cid(c, &scid) != 0 || reset_token(c, params.stateless_reset_token, &scid) != 0)
		return -1;
	if (ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, &path, hd->version, &cb, &settings,
	                           &params, NULL, c) != 0)
		return -1;
	if (cid_add(c, &scid) != 0 || cid_add(c, &hd->dcid) != 0)
		return -1;
	return setup_tls(c);
}

static void fill_pattern(void)
{
	/* The lines of kpx_http_fill (TCP), so both transports answer the same bytes. */
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (i % 64 == 63) ? '\n' : (uint8_t)('a' + i % 64 % 26);
}

void kpx_qconn_accept(struct kpx_qconn_env *env, const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                      const uint8_t *data, size_t len, const struct sockaddr *peer,
                      socklen_t peer_len)
{
	struct kpx_qconn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		kpx_conn_drop_slot();
		return;
	}
	pthread_once(&pattern_once, fill_pattern);
	c->env = env;
	c->tx.tx = env->tx;
	c->conn_ref.get_conn = get_conn;
	c->conn_ref.user_data = c;
	c->odcid = hd->dcid;
	c->start_ns = kw_now_ns();
	memcpy(&c->peer, peer, peer_len <= sizeof(c->peer) ? peer_len : sizeof(c->peer));
	c->peer_len = peer_len;
	kw_list_init(&c->streams);
	kw_list_init(&c->dirty_node);
	kw_list_add_tail(&env->conns, &c->node);
	kw_timer_init_precise(&c->timer, on_timer, c);
	ngtcp2_connection_close_error_default(&c->last_error);
	env->nconns++;
	kpx_set(&env->w->m.quic_conns, env->nconns);
	kpx_add(&env->w->m.quic_accepted, 1);
	env->handshaking++;
	if (setup_conn(c, hd, odcid, peer, peer_len) != 0) {
		kw_warn("worker %u: cannot start a QUIC connection (out of memory?)", env->w->id);
		set_reason(c, KPX_R_INTERNAL);
		qconn_free(c);
		return;
	}
	kpx_qconn_read(c, data, len, peer, peer_len);
}
