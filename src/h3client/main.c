/*
 * keyway-h3 - a small HTTP/3 client: GET one URL over QUIC, N times in
 * parallel on one connection, print the status, headers and body.
 *
 * Built on ngtcp2 with the *stock* GnuTLS crypto callbacks of
 * libngtcp2_crypto_gnutls, so that against keyway-proxy's engine mode every
 * packet is sealed by one implementation and opened by the other. The
 * tests and benchmarks use it: it checks each body against its
 * Content-Length and exits 1 on any failure (handshake, transport error,
 * reset stream, short body, timeout).
 *
 * One thread, poll(2) on one connected UDP socket, ngtcp2's expiry as the
 * poll timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "keyway/config.h"

#define MAX_STREAMS 1000

static const char usage[] =
    "usage: keyway-h3 [--connect HOST:PORT] [--ca FILE | --insecure] [-n N] [-o FILE] "
    "[--include] [--stats] URL\n"
    "GET https://HOST[:PORT]/PATH over HTTP/3 (QUIC v1, ALPN h3) and write the body to\n"
    "stdout or --output. With -n N the same request is sent N times in parallel on one\n"
    "connection; only the first body is written, every body is checked against its\n"
    "Content-Length. --data FILE sends a request body (POST unless --method).\n"
    "Exit status 0 when every response arrived whole, 1 on any failure,\n"
    "2 for a usage error.";

/* The options (kw_config_parse fills them). */
static char *connect_to, *ca_file, *output, *method, *data_file, *cipher;
static bool insecure, include, stats, data_no_length;
static unsigned nreq = 1, timeout_s = 30, key_update_kb, migrate_kb, interval_ms, repeat = 1;

/* clang-format off */
static struct kw_option opts[] = {
    KW_OPT_STR("connect", &connect_to, "HOST:PORT", "connect to this address instead of the URL's (the URL's host still names the server: SNI, :authority, certificate check)"),
    KW_OPT_STR("ca", &ca_file, "FILE", "trust the certificates in this PEM file (default: the system's)"),
    KW_OPT_STR("cipher", &cipher, "NAME", "offer only this TLS 1.3 cipher: aes-128-gcm, aes-256-gcm or chacha20-poly1305 (default: all three)"),
    KW_OPT_FLAG("insecure", &insecure, "do not verify the server's certificate"),
    KW_OPT_NUM("parallel", &nreq, "N", "(-n) requests in parallel on the one connection (default 1)", 1, MAX_STREAMS),
    KW_OPT_NUM("interval-ms", &interval_ms, "MS", "pace the -n requests: request i starts i x MS milliseconds after the handshake (default 0: all at once)", 0, 60000),
    KW_OPT_STR("output", &output, "FILE", "(-o) write the (first) body to FILE instead of stdout"),
    KW_OPT_FLAG("include", &include, "write the status and header fields before the body"),
    KW_OPT_FLAG("stats", &stats, "print a summary line on stderr: responses, bytes, seconds, key updates"),
    KW_OPT_STR("method", &method, "NAME", "request method (default GET, or POST with --data)"),
    KW_OPT_STR("data", &data_file, "FILE", "send FILE as the request body, with its Content-Length"),
    KW_OPT_FLAG("data-no-length", &data_no_length, "send the --data body without a Content-Length (the server learns its end from the stream's)"),
    KW_OPT_NUM("repeat", &repeat, "N", "make the exchange N times, each on a new connection, one after another (a handshake load generator; --stats tells of the last; default 1)", 1, 1000000),
    KW_OPT_NUM("timeout", &timeout_s, "S", "give up after S seconds (default 30)", 1, 86400),
    KW_OPT_NUM("key-update-kb", &key_update_kb, "KB", "start a key update (RFC 9001 §6) every KB kilobytes of body received or of request stream data the server acknowledged (default 0: never)", 0, 0),
    KW_OPT_NUM("migrate-kb", &migrate_kb, "KB", "move to a new local port (connection migration, RFC 9000 §9) every KB kilobytes of body received (default 0: never)", 0, 0),
    KW_OPT_END,
};
/* clang-format on */

struct req {
	int64_t id;
	uint64_t body_sent; /* --data bytes handed to nghttp3 */
	int status;
	bool have_clen, ended, closed;
	uint64_t clen, got;
};

struct client {
	ngtcp2_crypto_conn_ref ref;
	int fd;
	struct sockaddr_storage local, remote;
	socklen_t local_len, remote_len;
	gnutls_certificate_credentials_t cred;
	gnutls_session_t tls;
	ngtcp2_conn *conn;
	nghttp3_conn *h3;
	ngtcp2_connection_close_error last_error;
	char host[256], authority[300], path[4096];
	FILE *out;
	uint8_t *data; /* --data: the request body */
	size_t data_len;
	char data_len_text[24];
	struct req *reqs;
	unsigned opened, finished, failed;
	uint64_t acked_bytes; /* our stream data the server acknowledged */
	uint64_t body_bytes, next_key_update, key_updates, next_migrate, migrations;
	bool handshake_done;
	uint64_t t_ready; /* when the handshake completed: --interval-ms counts from it */
	const char *why;  /* the first failure */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fail(struct client *c, const char *why)
{
	if (c->why == NULL)
		c->why = why;
}

/* ---- HTTP/3 ---- */

static struct req *req_of(void *sd)
{
	return sd;
}

static void extend(struct client *c, int64_t stream_id, size_t n)
{
	ngtcp2_conn_extend_max_stream_offset(c->conn, stream_id, n);
	ngtcp2_conn_extend_max_offset(c->conn, n);
}

static int h3_recv_header(nghttp3_conn *h3, int64_t sid, int32_t token, nghttp3_rcbuf *name,
                          nghttp3_rcbuf *value, uint8_t flags, void *ud, void *sd)
{
	struct client *c = ud;
	struct req *r = req_of(sd);
	nghttp3_vec n = nghttp3_rcbuf_get_buf(name), v = nghttp3_rcbuf_get_buf(value);
	if (r == NULL)
		return 0;
	if (token == NGHTTP3_QPACK_TOKEN__STATUS && v.len == 3)
		r->status = atoi((const char *)v.base);
	if (token == NGHTTP3_QPACK_TOKEN_CONTENT_LENGTH) {
		char tmp[32];
		size_t l = v.len < sizeof(tmp) - 1 ? v.len : sizeof(tmp) - 1;
		memcpy(tmp, v.base, l);
		tmp[l] = 0;
		r->clen = strtoull(tmp, NULL, 10);
		r->have_clen = true;
	}
	if (include && r == &c->reqs[0])
		fprintf(c->out, "%.*s: %.*s\n", (int)n.len, n.base, (int)v.len, v.base);
	return 0;
}

static int h3_end_headers(nghttp3_conn *h3, int64_t sid, int fin, void *ud, void *sd)
{
	struct client *c = ud;
	if (include && req_of(sd) == &c->reqs[0])
		fputc('\n', c->out);
	return 0;
}

static int h3_recv_data(nghttp3_conn *h3, int64_t sid, const uint8_t *data, size_t len, void *ud,
                        void *sd)
{
	struct client *c = ud;
	struct req *r = req_of(sd);
	if (r != NULL) {
		r->got += len;
		if (r == &c->reqs[0] && fwrite(data, 1, len, c->out) != len)
			fail(c, "cannot write the body");
	}
	c->body_bytes += len;
	extend(c, sid, len);
	return 0;
}

static int h3_deferred_consume(nghttp3_conn *h3, int64_t sid, size_t n, void *ud, void *sd)
{
	extend(ud, sid, n);
	return 0;
}

static int h3_end_stream(nghttp3_conn *h3, int64_t sid, void *ud, void *sd)
{
	struct req *r = req_of(sd);
	if (r != NULL)
		r->ended = true;
	return 0;
}

/* no_body: a response whose Content-Length describes a body not sent (RFC 9110 §6.4.1). */
static bool no_body(const struct req *r)
{
	return (method != NULL && strcmp(method, "HEAD") == 0) || r->status == 204 ||
	       r->status == 304;
}

static int h3_stream_close(nghttp3_conn *h3, int64_t sid, uint64_t code, void *ud, void *sd)
{
	struct client *c = ud;
	struct req *r = req_of(sd);
	if (r == NULL || r->closed)
		return 0;
	r->closed = true;
	c->finished++;
	if (!r->ended || r->status == 0) {
		c->failed++;
		fail(c, "a stream closed before its response ended");
	} else if (r->have_clen && r->got != r->clen && !no_body(r)) {
		c->failed++;
		fail(c, "a body is shorter or longer than its Content-Length");
	}
	return 0;
}

static int h3_reset_stream(nghttp3_conn *h3, int64_t sid, uint64_t code, void *ud, void *sd)
{
	struct client *c = ud;
	fail(c, "the server reset a stream");
	return ngtcp2_conn_shutdown_stream_write(c->conn, sid, code) == 0
	           ? 0
	           : NGHTTP3_ERR_CALLBACK_FAILURE;
}

static int setup_h3(struct client *c)
{
	nghttp3_callbacks cb = {
	    .stream_close = h3_stream_close,
	    .recv_data = h3_recv_data,
	    .deferred_consume = h3_deferred_consume,
	    .recv_header = h3_recv_header,
	    .end_headers = h3_end_headers,
	    .end_stream = h3_end_stream,
	    .reset_stream = h3_reset_stream,
	};
	nghttp3_settings s;
	int64_t ctrl, enc, dec;
	nghttp3_settings_default(&s);
	s.qpack_max_dtable_capacity = 4096;
	s.qpack_blocked_streams = 100;
	if (nghttp3_conn_client_new(&c->h3, &cb, &s, NULL, c) != 0 ||
	    ngtcp2_conn_open_uni_stream(c->conn, &ctrl, NULL) != 0 ||
	    nghttp3_conn_bind_control_stream(c->h3, ctrl) != 0 ||
	    ngtcp2_conn_open_uni_stream(c->conn, &enc, NULL) != 0 ||
	    ngtcp2_conn_open_uni_stream(c->conn, &dec, NULL) != 0 ||
	    nghttp3_conn_bind_qpack_streams(c->h3, enc, dec) != 0)
		return -1;
	return 0;
}

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP3_NV_FLAG_NONE     \
	}

static nghttp3_ssize read_body(nghttp3_conn *h3, int64_t sid, nghttp3_vec *vec, size_t veccnt,
                               uint32_t *pflags, void *ud, void *sd)
{
	struct client *c = ud;
	struct req *r = req_of(sd);
	/* The whole body at once: it stays in memory until the end. */
	if (veccnt == 0)
		return 0;
	vec[0].base = c->data + r->body_sent;
	vec[0].len = c->data_len - r->body_sent;
	r->body_sent = c->data_len;
	*pflags |= NGHTTP3_DATA_FLAG_EOF;
	return vec[0].len > 0 ? 1 : 0;
}

/* next_request_ns is when the next request may start (--interval-ms). */
static uint64_t next_request_ns(const struct client *c)
{
	return c->t_ready + (uint64_t)c->opened * interval_ms * 1000000ull;
}

/* open_requests opens request streams while the server's stream limit allows. */
static int open_requests(struct client *c)
{
	if (c->h3 == NULL)
		return 0;
	while (c->opened < nreq) {
		if (next_request_ns(c) > now_ns())
			return 0; /* paced: the run loop wakes for it */
		struct req *r = &c->reqs[c->opened];
		if (ngtcp2_conn_open_bidi_stream(c->conn, &r->id, r) != 0)
			return 0; /* no credit: extend_max_local_streams_bidi comes back */
		const char *m = method != NULL ? method : data_file != NULL ? "POST" : "GET";
		const nghttp3_nv nva[] = {
		    NV(":method", m),
		    NV(":scheme", "https"),
		    NV(":authority", c->authority),
		    NV(":path", c->path),
		    NV("user-agent", "keyway-h3"),
		    NV("content-length", c->data_len_text),
		};
		size_t nv = sizeof(nva) / sizeof(nva[0]);
		if (data_file == NULL || data_no_length)
			nv--;
		nghttp3_data_reader dr = {.read_data = read_body};
		if (nghttp3_conn_submit_request(c->h3, r->id, nva, nv, data_file ? &dr : NULL, r) !=
		    0)
			return -1;
		c->opened++;
	}
	return 0;
}

/* ---- ngtcp2 callbacks ---- */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
	return ((struct client *)ref->user_data)->conn;
}

static int handshake_completed(ngtcp2_conn *conn, void *ud)
{
	struct client *c = ud;
	c->handshake_done = true;
	c->t_ready = now_ns();
	if (setup_h3(c) != 0 || open_requests(c) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static int recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t sid, uint64_t offset,
                            const uint8_t *data, size_t len, void *ud, void *sd)
{
	struct client *c = ud;
	if (c->h3 == NULL)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	nghttp3_ssize n =
	    nghttp3_conn_read_stream(c->h3, sid, data, len, flags & NGTCP2_STREAM_DATA_FLAG_FIN);
	if (n < 0) {
		ngtcp2_connection_close_error_set_application_error(
		    &c->last_error, nghttp3_err_infer_quic_app_error_code((int)n), NULL, 0);
		return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	extend(c, sid, (size_t)n);
	return 0;
}

static int acked_stream_data_offset(ngtcp2_conn *conn, int64_t sid, uint64_t offset, uint64_t len,
                                    void *ud, void *sd)
{
	struct client *c = ud;
	c->acked_bytes += len; /* uploads move --key-update-kb on too */
	return c->h3 == NULL || nghttp3_conn_add_ack_offset(c->h3, sid, len) == 0
	           ? 0
	           : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t sid, uint64_t code, void *ud,
                        void *sd)
{
	struct client *c = ud;
	if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET))
		code = NGHTTP3_H3_NO_ERROR;
	if (c->h3 != NULL) {
		int rc = nghttp3_conn_close_stream(c->h3, sid, code);
		if (rc != 0 && rc != NGHTTP3_ERR_STREAM_NOT_FOUND)
			return NGTCP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int stream_reset(ngtcp2_conn *conn, int64_t sid, uint64_t final_size, uint64_t code,
                        void *ud, void *sd)
{
	struct client *c = ud;
	return c->h3 == NULL || nghttp3_conn_shutdown_stream_read(c->h3, sid) == 0
	           ? 0
	           : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int stream_stop_sending(ngtcp2_conn *conn, int64_t sid, uint64_t code, void *ud, void *sd)
{
	return stream_reset(conn, sid, 0, code, ud, sd);
}

static int extend_max_local_streams_bidi(ngtcp2_conn *conn, uint64_t max, void *ud)
{
	return open_requests(ud) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int extend_max_stream_data(ngtcp2_conn *conn, int64_t sid, uint64_t max, void *ud, void *sd)
{
	struct client *c = ud;
	return c->h3 == NULL || nghttp3_conn_unblock_stream(c->h3, sid) == 0
	           ? 0
	           : NGTCP2_ERR_CALLBACK_FAILURE;
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
	gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int get_new_connection_id(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                                 void *ud)
{
	cid->datalen = cidlen;
	if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0 ||
	    gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return 0;
}

/* ---- set-up ---- */

static int setup_tls(struct client *c)
{
	char priority[256];
	const char *ciphers = "+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305";
	if (cipher != NULL && strcmp(cipher, "aes-128-gcm") == 0)
		ciphers = "+AES-128-GCM";
	else if (cipher != NULL && strcmp(cipher, "aes-256-gcm") == 0)
		ciphers = "+AES-256-GCM";
	else if (cipher != NULL && strcmp(cipher, "chacha20-poly1305") == 0)
		ciphers = "+CHACHA20-POLY1305";
	else if (cipher != NULL) {
		fprintf(stderr,
		        "keyway-h3: --cipher %s: fix: use aes-128-gcm, aes-256-gcm or "
		        "chacha20-poly1305\n",
		        cipher);
		return -1;
	}
	snprintf(priority, sizeof(priority),
	         "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:%s:-GROUP-ALL:+GROUP-X25519:"
	         "+GROUP-SECP256R1:+GROUP-SECP384R1:%%DISABLE_TLS13_COMPAT_MODE",
	         ciphers);
	static const gnutls_datum_t alpn = {(unsigned char *)"h3", 2};
	int rc = gnutls_certificate_allocate_credentials(&c->cred);
	if (rc == 0)
		rc = ca_file != NULL ? gnutls_certificate_set_x509_trust_file(c->cred, ca_file,
		                                                              GNUTLS_X509_FMT_PEM)
		                     : gnutls_certificate_set_x509_system_trust(c->cred);
	if (rc <= 0 && !insecure) {
		fprintf(stderr, "keyway-h3: no trusted certificate loaded%s%s: %s\n",
		        ca_file ? " from " : "", ca_file ? ca_file : "", gnutls_strerror(rc));
		return -1;
	}
	if (gnutls_init(&c->tls, GNUTLS_CLIENT) != 0 ||
	    ngtcp2_crypto_gnutls_configure_client_session(c->tls) != 0 ||
	    gnutls_priority_set_direct(c->tls, priority, NULL) != 0 ||
	    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred) != 0 ||
	    gnutls_alpn_set_protocols(c->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0)
		return -1;
	gnutls_session_set_ptr(c->tls, &c->ref);
	gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, c->host, strlen(c->host));
	if (!insecure)
		gnutls_session_set_verify_cert(c->tls, c->host, 0);
	return 0;
}

static int setup_conn(struct client *c)
{
	ngtcp2_callbacks cb = {
	    .client_initial = ngtcp2_crypto_client_initial_cb,
	    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
	    .handshake_completed = handshake_completed,
	    .encrypt = ngtcp2_crypto_encrypt_cb,
	    .decrypt = ngtcp2_crypto_decrypt_cb,
	    .hp_mask = ngtcp2_crypto_hp_mask_cb,
	    .recv_stream_data = recv_stream_data,
	    .acked_stream_data_offset = acked_stream_data_offset,
	    .stream_close = stream_close,
	    .recv_retry = ngtcp2_crypto_recv_retry_cb,
	    .extend_max_local_streams_bidi = extend_max_local_streams_bidi,
	    .rand = rand_cb,
	    .get_new_connection_id = get_new_connection_id,
	    .update_key = ngtcp2_crypto_update_key_cb,
	    .stream_reset = stream_reset,
	    .extend_max_stream_data = extend_max_stream_data,
	    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
	    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
	    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
	    .stream_stop_sending = stream_stop_sending,
	    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
	};
	ngtcp2_cid dcid, scid;
	ngtcp2_settings settings;
	ngtcp2_transport_params params;
	ngtcp2_path path = {
	    {(struct sockaddr *)&c->local, c->local_len},
	    {(struct sockaddr *)&c->remote, c->remote_len},
	    NULL,
	};
	dcid.datalen = 18;
	scid.datalen = 8;
	gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
	gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
	ngtcp2_settings_default(&settings);
	settings.initial_ts = now_ns();
	settings.max_window = 32u << 20;
	settings.max_stream_window = 16u << 20;
	ngtcp2_transport_params_default(&params);
	params.initial_max_streams_uni = 3;
	params.initial_max_stream_data_bidi_local = 4u << 20;
	params.initial_max_stream_data_uni = 1u << 20;
	params.initial_max_data = 16u << 20;
	params.max_idle_timeout = 30 * NGTCP2_SECONDS;
	params.active_connection_id_limit = 8; /* spare server IDs for --migrate-kb */
	if (ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb,
	                           &settings, &params, NULL, c) != 0)
		return -1;
	ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
	return 0;
}

/* parse_url splits https://HOST[:PORT]/PATH; *port "443" when absent. */
static int parse_url(struct client *c, const char *url, char *port, size_t portlen)
{
	if (strncmp(url, "https://", 8) != 0)
		return -1;
	const char *h = url + 8, *slash = strchr(h, '/');
	size_t alen = slash != NULL ? (size_t)(slash - h) : strlen(h);
	if (alen == 0 || alen >= sizeof(c->authority))
		return -1;
	memcpy(c->authority, h, alen);
	c->authority[alen] = 0;
	snprintf(c->path, sizeof(c->path), "%s", slash != NULL ? slash : "/");
	const char *hs = c->authority, *he, *colon;
	if (*hs == '[') {
		he = strchr(hs, ']');
		if (he == NULL)
			return -1;
		hs++;
		colon = he[1] == ':' ? he + 1 : NULL;
	} else {
		colon = strrchr(hs, ':');
		he = colon != NULL ? colon : hs + alen;
	}
	snprintf(c->host, sizeof(c->host), "%.*s", (int)(he - hs), hs);
	snprintf(port, portlen, "%s", colon != NULL ? colon + 1 : "443");
	return 0;
}

/* open_socket connects a UDP socket to host:port. */
static int open_socket(struct client *c, const char *host, const char *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "keyway-h3: %s:%s: %s\n", host, port, gai_strerror(rc));
		return -1;
	}
	c->fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	memcpy(&c->remote, res->ai_addr, res->ai_addrlen);
	c->remote_len = res->ai_addrlen;
	freeaddrinfo(res);
	int size = 8 << 20;
	c->local_len = sizeof(c->local);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&c->remote, c->remote_len) != 0 ||
	    getsockname(c->fd, (struct sockaddr *)&c->local, &c->local_len) != 0) {
		fprintf(stderr, "keyway-h3: cannot connect to %s:%s: %s\n", host, port,
		        strerror(errno));
		return -1;
	}
	setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	return 0;
}

/* ---- I/O ---- */

static int read_all(struct client *c)
{
	static uint8_t buf[65536];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : (fail(c, "recv failed"), -1);
		ngtcp2_path path = {
		    {(struct sockaddr *)&c->local, c->local_len},
		    {(struct sockaddr *)&c->remote, c->remote_len},
		    NULL,
		};
		ngtcp2_pkt_info pi = {0};
		int rc = ngtcp2_conn_read_pkt(c->conn, &path, &pi, buf, (size_t)n, now_ns());
		if (rc != 0) {
			if (rc == NGTCP2_ERR_CRYPTO)
				ngtcp2_connection_close_error_set_transport_error_tls_alert(
				    &c->last_error, ngtcp2_conn_get_tls_alert(c->conn), NULL, 0);
			else if (!c->last_error.error_code)
				ngtcp2_connection_close_error_set_transport_error_liberr(
				    &c->last_error, rc, NULL, 0);
			fprintf(stderr, "keyway-h3: %s\n", ngtcp2_strerror(rc));
			fail(c, rc == NGTCP2_ERR_CRYPTO ? "the TLS handshake failed"
			                                : "the connection failed");
			return -1;
		}
	}
}

static int write_all(struct client *c)
{
	uint8_t buf[1500];
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	for (;;) {
		int64_t sid = -1;
		int fin = 0;
		nghttp3_vec vec[16];
		nghttp3_ssize nvec = 0;
		if (c->h3 != NULL && ngtcp2_conn_get_max_data_left(c->conn) > 0) {
			nvec = nghttp3_conn_writev_stream(c->h3, &sid, &fin, vec, 16);
			if (nvec < 0)
				return -1;
		}
		ngtcp2_ssize ndata = -1;
		ngtcp2_pkt_info pi;
		uint32_t flags =
		    NGTCP2_WRITE_STREAM_FLAG_MORE | (fin ? NGTCP2_WRITE_STREAM_FLAG_FIN : 0);
		ngtcp2_ssize n = ngtcp2_conn_writev_stream(
		    c->conn, &ps.path, &pi, buf, sizeof(buf), &ndata, flags, sid,
		    (const ngtcp2_vec *)vec, (size_t)nvec, now_ns());
		if (n < 0) {
			if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
				nghttp3_conn_block_stream(c->h3, sid);
				continue;
			}
			if (n == NGTCP2_ERR_STREAM_SHUT_WR) {
				nghttp3_conn_shutdown_stream_write(c->h3, sid);
				continue;
			}
			if (n == NGTCP2_ERR_WRITE_MORE) {
				nghttp3_conn_add_write_offset(c->h3, sid, (size_t)ndata);
				continue;
			}
			ngtcp2_connection_close_error_set_transport_error_liberr(&c->last_error,
			                                                         (int)n, NULL, 0);
			fail(c, "cannot write a packet");
			return -1;
		}
		if (ndata >= 0 && c->h3 != NULL)
			nghttp3_conn_add_write_offset(c->h3, sid, (size_t)ndata);
		if (n == 0)
			return 0;
		if (send(c->fd, buf, (size_t)n, 0) < 0 && errno != EAGAIN && errno != ENOBUFS &&
		    errno != ECONNREFUSED) {
			fail(c, "send failed");
			return -1;
		}
	}
}

static void close_conn(struct client *c)
{
	uint8_t buf[1500];
	ngtcp2_path_storage ps;
	ngtcp2_pkt_info pi;
	if (c->conn == NULL || ngtcp2_conn_is_in_closing_period(c->conn) ||
	    ngtcp2_conn_is_in_draining_period(c->conn))
		return;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, buf,
	                                                    sizeof(buf), &c->last_error, now_ns());
	if (n > 0)
		(void)send(c->fd, buf, (size_t)n, 0);
}

/* maybe_key_update starts a key update every --key-update-kb of body received or sent. */
static void maybe_key_update(struct client *c)
{
	uint64_t moved = c->body_bytes + c->acked_bytes;
	if (key_update_kb == 0 || moved < c->next_key_update)
		return;
	if (ngtcp2_conn_initiate_key_update(c->conn, now_ns()) == 0) {
		c->key_updates++;
		c->next_key_update = moved + (uint64_t)key_update_kb * 1024;
	}
}

/* maybe_migrate moves to a new UDP socket (a new local port) every --migrate-kb of body. */
static void maybe_migrate(struct client *c)
{
	if (migrate_kb == 0 || c->body_bytes < c->next_migrate)
		return;
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	int fd = socket(c->remote.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	ngtcp2_path path = {
	    {(struct sockaddr *)&local, 0},
	    {(struct sockaddr *)&c->remote, c->remote_len},
	    NULL,
	};
	if (connect(fd, (struct sockaddr *)&c->remote, c->remote_len) != 0 ||
	    getsockname(fd, (struct sockaddr *)&local, &llen) != 0 ||
	    (path.local.addrlen = llen,
	     ngtcp2_conn_initiate_immediate_migration(c->conn, &path, now_ns()) != 0)) {
		close(fd); /* not now (no spare connection ID yet): tried again later */
		return;
	}
	close(c->fd);
	c->fd = fd;
	memcpy(&c->local, &local, llen);
	c->local_len = llen;
	c->migrations++;
	c->next_migrate = c->body_bytes + (uint64_t)migrate_kb * 1024;
}

static int run(struct client *c)
{
	uint64_t deadline = now_ns() + (uint64_t)timeout_s * 1000000000ull;
	c->next_key_update = (uint64_t)key_update_kb * 1024;
	c->next_migrate = (uint64_t)migrate_kb * 1024;
	if (write_all(c) < 0)
		return -1;
	while (c->finished < nreq && c->why == NULL) {
		uint64_t now = now_ns(), expiry = ngtcp2_conn_get_expiry(c->conn);
		if (now >= deadline) {
			fail(c, "timed out");
			return -1;
		}
		uint64_t wake = expiry < deadline ? expiry : deadline;
		if (interval_ms != 0 && c->h3 != NULL && c->opened < nreq &&
		    next_request_ns(c) < wake)
			wake = next_request_ns(c);
		int ms = wake <= now ? 0 : (int)((wake - now + 999999) / 1000000);
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		if (poll(&p, 1, ms) < 0 && errno != EINTR)
			return -1;
		if ((p.revents & POLLIN) && read_all(c) < 0)
			return -1;
		if (ngtcp2_conn_get_expiry(c->conn) <= now_ns()) {
			int rc = ngtcp2_conn_handle_expiry(c->conn, now_ns());
			if (rc != 0) {
				fprintf(stderr, "keyway-h3: %s\n", ngtcp2_strerror(rc));
				fail(c, "the connection timed out");
				return -1;
			}
		}
		if (ngtcp2_conn_is_in_draining_period(c->conn)) {
			fail(c, "the server closed the connection");
			return -1;
		}
		if (open_requests(c) != 0)
			return -1;
		maybe_key_update(c);
		maybe_migrate(c);
		if (write_all(c) < 0)
			return -1;
	}
	return c->why == NULL ? 0 : -1;
}

/* reset_conn ends the connection made for --repeat's last round and clears what it held. */
static void reset_conn(struct client *c)
{
	nghttp3_conn_del(c->h3);
	ngtcp2_conn_del(c->conn);
	if (c->tls != NULL)
		gnutls_deinit(c->tls);
	if (c->cred != NULL)
		gnutls_certificate_free_credentials(c->cred);
	if (c->fd >= 0)
		close(c->fd);
	c->h3 = NULL;
	c->conn = NULL;
	c->tls = NULL;
	c->cred = NULL;
	c->fd = -1;
	memset(c->reqs, 0, nreq * sizeof(*c->reqs));
	c->opened = c->finished = c->failed = 0;
	c->body_bytes = c->key_updates = c->migrations = 0;
	c->handshake_done = false;
	ngtcp2_connection_close_error_default(&c->last_error);
}

/* short_options maps the two short forms -n and -o to their long names, in place. */
static void short_options(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return;
		if (strcmp(argv[i], "-n") == 0)
			argv[i] = "--parallel";
		else if (strcmp(argv[i], "-o") == 0)
			argv[i] = "--output";
	}
}

int main(int argc, char **argv)
{
	struct client c = {.fd = -1};
	if (argc < 1)
		return 2;
	char err[1024], port[16];
	char **pos = calloc((size_t)argc + 1, sizeof(char *));
	int npos = 0;
	short_options(argc, argv);
	if (pos == NULL) {
		fprintf(stderr, "keyway-h3: out of memory\n");
		return 1;
	}
	int rc = kw_config_parse(opts, argc, argv, usage, pos, &npos, err, sizeof(err));
	if (rc == 1) {
		free(pos);
		return 0;
	}
	if (rc == 0 && npos != 1) {
		snprintf(err, sizeof(err), "give one URL (https://HOST:PORT/PATH)");
		rc = -1;
	}
	if (rc == 0 && parse_url(&c, pos[0], port, sizeof(port)) != 0) {
		snprintf(err, sizeof(err), "'%s': fix: give an https://HOST[:PORT]/PATH URL",
		         pos[0]);
		rc = -1;
	}
	if (rc != 0) {
		fprintf(stderr, "keyway-h3: %s\n", err);
		free(pos);
		return 2;
	}
	/* pos holds pointers into argv: keep the URL, drop the array. */
	const char *url = pos[0];
	free(pos);
	pos = NULL;
	const char *chost = c.host, *cport = port;
	char cbuf[300];
	if (connect_to != NULL) {
		snprintf(cbuf, sizeof(cbuf), "%s", connect_to);
		char *colon = strrchr(cbuf, ':');
		if (colon == NULL) {
			fprintf(stderr, "keyway-h3: --connect '%s': fix: give HOST:PORT\n",
			        connect_to);
			return 2;
		}
		*colon = 0;
		chost = cbuf[0] == '[' ? cbuf + 1 : cbuf;
		if (cbuf[0] == '[' && colon[-1] == ']')
			colon[-1] = 0;
		cport = colon + 1;
	}
	c.out = stdout;
	if (output != NULL && (c.out = fopen(output, "wb")) == NULL) {
		fprintf(stderr, "keyway-h3: cannot write %s: %s\n", output, strerror(errno));
		return 1;
	}
	if (data_file != NULL) {
		FILE *f = fopen(data_file, "rb");
		long len = -1;
		if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
		    fseek(f, 0, SEEK_SET) == 0 && (c.data = malloc((size_t)len + 1)) != NULL &&
		    fread(c.data, 1, (size_t)len, f) == (size_t)len) {
			c.data_len = (size_t)len;
		} else {
			fprintf(stderr, "keyway-h3: cannot read --data %s: %s\n", data_file,
			        strerror(errno));
			if (f != NULL)
				fclose(f);
			free(c.data);
			return 1;
		}
		fclose(f);
		snprintf(c.data_len_text, sizeof(c.data_len_text), "%zu", c.data_len);
	}
	c.reqs = calloc(nreq, sizeof(*c.reqs));
	c.ref.get_conn = get_conn;
	c.ref.user_data = &c;
	ngtcp2_connection_close_error_default(&c.last_error);
	uint64_t t0 = now_ns();
	int status = 1;
	for (unsigned i = 0; i < repeat && (i == 0 || status == 0); i++) {
		if (i > 0)
			reset_conn(&c);
		status = 1;
		if (c.reqs != NULL && open_socket(&c, chost, cport) == 0 && setup_tls(&c) == 0 &&
		    setup_conn(&c) == 0) {
			status = run(&c) == 0 ? 0 : 1;
			close_conn(&c);
		} else {
			fail(&c, "cannot start");
		}
	}
	if (stats) {
		unsigned ok = 0;
		int st = 0;
		for (unsigned i = 0; i < nreq; i++) {
			ok += c.reqs != NULL && c.reqs[i].ended && c.reqs[i].closed;
			if (c.reqs != NULL && st == 0)
				st = c.reqs[i].status;
		}
		fprintf(stderr,
		        "keyway-h3: responses=%u status=%d body_bytes=%llu seconds=%.3f "
		        "key_updates=%llu migrations=%llu\n",
		        ok, st, (unsigned long long)c.body_bytes, (double)(now_ns() - t0) / 1e9,
		        (unsigned long long)c.key_updates, (unsigned long long)c.migrations);
	}
	if (status != 0)
		fprintf(stderr, "keyway-h3: %s: %s\n", url, c.why != NULL ? c.why : "failed");
	if (c.out != stdout)
		fclose(c.out);
	else
		fflush(stdout);
	nghttp3_conn_del(c.h3);
	ngtcp2_conn_del(c.conn);
	if (c.tls != NULL)
		gnutls_deinit(c.tls);
	if (c.cred != NULL)
		gnutls_certificate_free_credentials(c.cred);
	if (c.fd >= 0)
		close(c.fd);
	free(c.reqs);
	free(c.data);
	free(pos);
	kw_config_free(opts);
	return status;
}
