/*
 * test_client.c - the pipelined keyless client against a tiny scripted
 * keyless server running in a thread (unix socket, and TCP with mutual TLS
 * from a throwaway PKI generated here).
 *
 * The server answers each request by its payload:
 *   ping            -> pong echoing the payload
 *   "hold..."       -> no answer until a "release" comes
 *   "release"       -> answers every held request, newest first, then this one
 *   "close"         -> closes the connection without answering
 *   "garbage"       -> a malformed frame (an item running past the body)
 *   "err" / "err0"  -> error 0x02 / an error without its code byte
 *   "pong"          -> a pong to a non-ping
 *   "silent"        -> no answer
 *   "stall"         -> no answer, and nothing read for 600 ms
 *   anything else   -> a response echoing the payload
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "keyless_fixture.h"
#include "keyway/buf.h"
#include "keyway/client.h"
#include "keyway/err.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "keyway/protocol.h"
#include "keyway/tls.h"

/* ---- the scripted server ---- */

struct held {
	uint32_t id;
	uint8_t payload[64];
	size_t len;
};

struct srv {
	int lfd;
	SSL_CTX *ctx; /* NULL: plain */
	pthread_t th;
	atomic_bool stop;
	atomic_int conn_fd;
	atomic_int nconns;
	char path[108]; /* unix socket path, or "" */
};

static int srv_read(SSL *ssl, int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r;
		if (ssl != NULL) {
			size_t got;
			r = SSL_read_ex(ssl, p, n, &got) == 1 ? (ssize_t)got : -1;
		} else {
			r = read(fd, p, n);
		}
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int srv_write(SSL *ssl, int fd, struct kw_buf *b)
{
	while (kw_buf_unread(b) > 0) {
		ssize_t w;
		if (ssl != NULL) {
			size_t put;
			w = SSL_write_ex(ssl, kw_buf_head(b), kw_buf_unread(b), &put) == 1
			        ? (ssize_t)put
			        : -1;
		} else {
			w = send(fd, kw_buf_head(b), kw_buf_unread(b), MSG_NOSIGNAL);
		}
		if (w <= 0)
			return -1;
		kw_buf_consume(b, (size_t)w);
	}
	return 0;
}

static bool is(const struct kw_msg *m, const char *s)
{
	return m->payload.data != NULL && m->payload.len == strlen(s) &&
	       memcmp(m->payload.data, s, m->payload.len) == 0;
}

static void srv_serve(struct srv *s, int fd)
{
	struct held held[1100];
	size_t nheld = 0;
	struct kw_buf out = KW_BUF_INIT;
	uint8_t body[65536];
	SSL *ssl = NULL;

	if (s->ctx != NULL) {
		ssl = SSL_new(s->ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) != 1)
			goto out;
	}
	for (;;) {
		uint8_t hdr[KW_HEADER_LEN];
		struct kw_header h;
		struct kw_msg m;

		if (srv_read(ssl, fd, hdr, sizeof(hdr)) < 0)
			break;
		kw_header_parse(&h, hdr, sizeof(hdr));
		if (srv_read(ssl, fd, body, h.length) < 0 || kw_msg_parse(&m, body, h.length) < 0)
			break;
		if (m.opcode == KW_OP_PING) {
			kw_encode_response(&out, h.id, KW_OP_PONG, m.payload.data, m.payload.len,
			                   true);
		} else if (m.payload.len >= 4 && memcmp(m.payload.data, "hold", 4) == 0 &&
		           nheld < sizeof(held) / sizeof(held[0]) && m.payload.len <= 64) {
			held[nheld].id = h.id;
			held[nheld].len = m.payload.len;
			memcpy(held[nheld].payload, m.payload.data, m.payload.len);
			nheld++;
		} else if (is(&m, "release")) {
			while (nheld > 0) {
				nheld--;
				kw_encode_response(&out, held[nheld].id, KW_OP_RESPONSE,
				                   held[nheld].payload, held[nheld].len, true);
			}
			kw_encode_response(&out, h.id, KW_OP_RESPONSE, m.payload.data,
			                   m.payload.len, true);
		} else if (is(&m, "close")) {
			break;
		} else if (is(&m, "garbage")) {
			/* A payload item claiming 255 bytes in a 3-byte body. */
			uint8_t bad[] = {1,
			                 0,
			                 0,
			                 3,
			                 (uint8_t)(h.id >> 24),
			                 (uint8_t)(h.id >> 16),
			                 (uint8_t)(h.id >> 8),
			                 (uint8_t)h.id,
			                 KW_TAG_PAYLOAD,
			                 0,
			                 255};
			kw_buf_append(&out, bad, sizeof(bad));
		} else if (is(&m, "err")) {
			kw_encode_error(&out, h.id, KW_ERR_KEY_NOT_FOUND, true);
		} else if (is(&m, "err0")) {
			kw_encode_response(&out, h.id, KW_OP_ERROR, (const uint8_t *)"", 0, true);
		} else if (is(&m, "pong")) {
			kw_encode_response(&out, h.id, KW_OP_PONG, NULL, 0, true);
		} else if (is(&m, "silent")) {
			continue;
		} else if (is(&m, "stall")) {
			usleep(600 * 1000);
			continue;
		} else {
			kw_encode_response(&out, h.id, KW_OP_RESPONSE, m.payload.data,
			                   m.payload.len, true);
		}
		if (srv_write(ssl, fd, &out) < 0)
			break;
	}
out:
	kw_buf_cleanup(&out);
	SSL_free(ssl);
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = s->lfd, .events = POLLIN};
		if (poll(&p, 1, 20) <= 0)
			continue;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		atomic_fetch_add(&s->nconns, 1);
		atomic_store(&s->conn_fd, fd);
		srv_serve(s, fd);
		atomic_store(&s->conn_fd, -1);
		close(fd);
	}
	return NULL;
}

static int srv_start(struct srv *s, struct kw_addr *addr, SSL_CTX *ctx)
{
	char err[256];

	atomic_store(&s->stop, false);
	atomic_store(&s->conn_fd, -1);
	atomic_store(&s->nconns, 0);
	s->ctx = ctx;
	if (ctx == NULL) {
		snprintf(s->path, sizeof(s->path), "/tmp/kw-test-client-%d.sock", (int)getpid());
		unlink(s->path);
		char text[128];
		snprintf(text, sizeof(text), "unix:%s", s->path);
		if (kw_addr_parse(addr, text, err, sizeof(err)) < 0)
			return -1;
		s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&addr->ss, addr->len) < 0 ||
		    listen(s->lfd, 16) < 0)
			return -1;
	} else {
		s->path[0] = '\0';
		struct kw_addr any;
		if (kw_addr_parse(&any, "127.0.0.1:0", err, sizeof(err)) < 0)
			return -1;
		s->lfd = kw_listen_tcp(&any, false, 16);
		if (s->lfd < 0)
			return -1;
		char text[64];
		snprintf(text, sizeof(text), "127.0.0.1:%d", kw_bound_port(s->lfd));
		if (kw_addr_parse(addr, text, err, sizeof(err)) < 0)
			return -1;
	}
	return pthread_create(&s->th, NULL, srv_main, s) == 0 ? 0 : -1;
}

/* srv_kick closes the server's side of the current connection. */
static void srv_kick(struct srv *s)
{
	int fd = atomic_load(&s->conn_fd);
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

static void srv_stop(struct srv *s)
{
	atomic_store(&s->stop, true);
	srv_kick(s);
	pthread_join(s->th, NULL);
	close(s->lfd);
	if (s->path[0])
		unlink(s->path);
}

/* ---- client side helpers ---- */

struct req {
	char payload[32];
	int calls;
	int status;
	uint8_t opcode;
	uint8_t remote_error;
	uint8_t answer[64];
	size_t answer_len;
	struct kw_client *client; /* for callbacks that act on the client */
	int action;               /* see on_done */
	int resubmit_rc;
};

enum { ACT_NONE, ACT_FREE, ACT_RESUBMIT };

static bool in_submit;
static int callbacks_in_submit;
static int total_calls;

static void on_done(void *arg, const struct kw_client_result *res)
{
	struct req *r = arg;

	if (in_submit)
		callbacks_in_submit++;
	total_calls++;
	r->calls++;
	r->status = res->status;
	r->opcode = res->opcode;
	r->remote_error = res->remote_error;
	r->answer_len = 0;
	if (res->status == 0 && res->payload_len <= sizeof(r->answer)) {
		if (res->payload_len)
			memcpy(r->answer, res->payload, res->payload_len);
		r->answer_len = res->payload_len;
	}
	if (r->action == ACT_FREE)
		kw_client_free(r->client);
	else if (r->action == ACT_RESUBMIT)
		r->resubmit_rc = kw_client_submit(
		    r->client, &(struct kw_msg){.has_opcode = true, .opcode = KW_OP_PING}, on_done,
		    r + 1, NULL);
}

static int submit(struct kw_client *c, struct req *r, uint8_t op, const char *payload, uint32_t *id)
{
	struct kw_msg m = {.has_opcode = true, .opcode = op, .has_ski = true};

	snprintf(r->payload, sizeof(r->payload), "%s", payload);
	memset(m.ski, 0xab, sizeof(m.ski));
	m.payload.data = (const uint8_t *)r->payload;
	m.payload.len = strlen(r->payload);
	in_submit = true;
	int rc = kw_client_submit(c, &m, on_done, r, id);
	in_submit = false;
	return rc;
}

static bool answered_ok(const struct req *r)
{
	return r->calls == 1 && r->status == 0 && r->answer_len == strlen(r->payload) &&
	       memcmp(r->answer, r->payload, r->answer_len) == 0;
}

/* run runs the loop until *count reaches want or ms pass; true if reached. */
static bool run(struct kw_loop *loop, const int *count, int want, int ms)
{
	uint64_t end = kw_now_ns() + (uint64_t)ms * 1000000u;
	while (*count < want && kw_now_ns() < end)
		kw_loop_run_once(loop, 10);
	return *count >= want;
}

static void spin(struct kw_loop *loop, int ms)
{
	uint64_t end = kw_now_ns() + (uint64_t)ms * 1000000u;
	while (kw_now_ns() < end)
		kw_loop_run_once(loop, 5);
}

static struct kw_client *client_new(struct kw_loop *loop, const struct kw_addr *addr, SSL_CTX *ctx,
                                    const char *name, unsigned timeout_ms, unsigned max_inflight)
{
	struct kw_client_config cfg = {.addr = *addr,
	                               .ssl_ctx = ctx,
	                               .server_name = name,
	                               .timeout_ms = timeout_ms,
	                               .max_inflight = max_inflight};
	struct kw_client *c = NULL;
	int rc = kw_client_new(loop, &cfg, &c);
	CHECK_EQ(rc, 0);
	return c;
}

/* ---- scenarios, each against a running server ---- */

#define NPIPE 300

static void test_pipelined_out_of_order(struct kw_loop *loop, const struct kw_addr *addr,
                                        SSL_CTX *ctx)
{
	static struct req r[NPIPE + 1];
	struct kw_client *c = client_new(loop, addr, ctx, NULL, 5000, 0);
	uint32_t first = 0, id = 0;

	memset(r, 0, sizeof(r));
	total_calls = 0;
	CHECK(!kw_client_connected(c));
	for (int i = 0; i < NPIPE; i++) {
		char p[32];
		snprintf(p, sizeof(p), "hold-%d", i);
		CHECK_EQ(submit(c, &r[i], KW_OP_RSA_SIGN_SHA256, p, &id), 0);
		if (i == 0)
			first = id;
		CHECK_EQ(id, first + (uint32_t)i); /* sequential IDs */
	}
	CHECK_EQ(kw_client_inflight(c), NPIPE);
	CHECK_EQ(submit(c, &r[NPIPE], KW_OP_RSA_SIGN_SHA256, "release", NULL), 0);
	CHECK_EQ(total_calls, 0);
	CHECK(run(loop, &total_calls, NPIPE + 1, 5000));
	for (int i = 0; i <= NPIPE; i++)
		CHECK(answered_ok(&r[i]));
	CHECK_EQ(r[0].opcode, KW_OP_RESPONSE);
	CHECK(kw_client_connected(c));
	CHECK_EQ(kw_client_inflight(c), 0);
	spin(loop, 20);
	CHECK_EQ(total_calls, NPIPE + 1); /* nothing called twice */
	kw_client_free(c);
}

static void test_answers(struct kw_loop *loop, const struct kw_addr *addr, SSL_CTX *ctx,
                         struct srv *s)
{
	struct req r[6];
	struct kw_client *c = client_new(loop, addr, ctx, NULL, 5000, 0);
	int conns = atomic_load(&s->nconns);

	memset(r, 0, sizeof(r));
	total_calls = 0;
	CHECK_EQ(submit(c, &r[0], KW_OP_PING, "hello", NULL), 0);
	CHECK_EQ(submit(c, &r[1], KW_OP_ECDSA_SIGN_SHA256, "err", NULL), 0);
	CHECK_EQ(submit(c, &r[2], KW_OP_ECDSA_SIGN_SHA256, "err0", NULL), 0);
	CHECK_EQ(submit(c, &r[3], KW_OP_ECDSA_SIGN_SHA256, "pong", NULL), 0);
	CHECK_EQ(submit(c, &r[4], KW_OP_PING, "", NULL), 0);
	CHECK_EQ(submit(c, &r[5], KW_OP_ED25519_SIGN, "sig", NULL), 0);
	CHECK(run(loop, &total_calls, 6, 5000));
	CHECK(answered_ok(&r[0]));
	CHECK_EQ(r[0].opcode, KW_OP_PONG);
	CHECK_EQ(r[1].status, -KW_EREMOTE);
	CHECK_EQ(r[1].remote_error, KW_ERR_KEY_NOT_FOUND);
	CHECK_EQ(r[1].opcode, KW_OP_ERROR);
	CHECK_EQ(r[2].status, -KW_EPROTO);
	CHECK_EQ(r[3].status, -KW_EPROTO);
	CHECK(answered_ok(&r[4]));
	CHECK(answered_ok(&r[5]));
	/* Per-request protocol errors keep the connection. */
	CHECK(kw_client_connected(c));
	CHECK_EQ(atomic_load(&s->nconns), conns + 1);
	kw_client_free(c);
}

static void test_timeout_and_late_answer(struct kw_loop *loop, const struct kw_addr *addr,
                                         SSL_CTX *ctx, struct srv *s)
{
	struct req r[3];
	struct kw_client *c = client_new(loop, addr, ctx, NULL, 150, 0);

	memset(r, 0, sizeof(r));
	total_calls = 0;
	uint64_t t0 = kw_now_ns();
	CHECK_EQ(submit(c, &r[0], KW_OP_RSA_SIGN_SHA256, "hold-late", NULL), 0);
	CHECK(run(loop, &total_calls, 1, 3000));
	uint64_t waited_ms = (kw_now_ns() - t0) / 1000000u;
	CHECK_EQ(r[0].status, -KW_ETIMEOUT);
	CHECK(waited_ms >= 140 && waited_ms < 1500);
	CHECK_EQ(kw_client_inflight(c), 0);
	int conns = atomic_load(&s->nconns);
	/* The server now answers the held request (late, dropped) and then this one. */
	CHECK_EQ(submit(c, &r[1], KW_OP_RSA_SIGN_SHA256, "release", NULL), 0);
	CHECK(run(loop, &total_calls, 2, 3000));
	CHECK(answered_ok(&r[1]));
	spin(loop, 30);
	CHECK_EQ(r[0].calls, 1);
	CHECK_EQ(total_calls, 2);
	CHECK(kw_client_connected(c));
	CHECK_EQ(atomic_load(&s->nconns), conns);
	kw_client_free(c);
}

static void test_server_close_and_reconnect(struct kw_loop *loop, const struct kw_addr *addr,
                                            SSL_CTX *ctx, struct srv *s)
{
	struct req r[5];
	struct kw_client *c = client_new(loop, addr, ctx, NULL, 5000, 0);

	memset(r, 0, sizeof(r));
	total_calls = 0;
	int conns = atomic_load(&s->nconns);
	CHECK_EQ(submit(c, &r[0], KW_OP_PING, "one", NULL), 0);
	CHECK(run(loop, &total_calls, 1, 3000));
	CHECK(answered_ok(&r[0]));
	CHECK_EQ(submit(c, &r[1], KW_OP_RSA_SIGN_SHA256, "hold-a", NULL), 0);
	CHECK_EQ(submit(c, &r[2], KW_OP_RSA_SIGN_SHA256, "hold-b", NULL), 0);
	CHECK_EQ(submit(c, &r[3], KW_OP_RSA_SIGN_SHA256, "close", NULL), 0);
	CHECK(run(loop, &total_calls, 4, 3000));
	for (int i = 1; i <= 3; i++) {
		CHECK_EQ(r[i].calls, 1);
		CHECK(r[i].status < 0 && r[i].status != -KW_ETIMEOUT);
	}
	CHECK(!kw_client_connected(c));
	CHECK_EQ(kw_client_inflight(c), 0);
	/* The next submit reconnects. */
	CHECK_EQ(submit(c, &r[4], KW_OP_PING, "again", NULL), 0);
	CHECK(run(loop, &total_calls, 5, 3000));
	CHECK(answered_ok(&r[4]));
	CHECK_EQ(atomic_load(&s->nconns), conns + 2);

	/* An idle connection the server drops is noticed and replaced too. */
	srv_kick(s);
	spin(loop, 50);
	CHECK(!kw_client_connected(c));
	memset(&r[0], 0, sizeof(r[0]));
	CHECK_EQ(submit(c, &r[0], KW_OP_PING, "third", NULL), 0);
	CHECK(run(loop, &total_calls, 6, 3000));
	CHECK(answered_ok(&r[0]));
	CHECK_EQ(atomic_load(&s->nconns), conns + 3);
	kw_client_free(c);
}

static void test_malformed_closes(struct kw_loop *loop, const struct kw_addr *addr, SSL_CTX *ctx,
                                  struct srv *s)
{
	struct req r[3];
	struct kw_client *c = client_new(loop, addr, ctx, NULL, 5000, 0);

	memset(r, 0, sizeof(r));
	total_calls = 0;
	int conns = atomic_load(&s->nconns);
	CHECK_EQ(submit(c, &r[0], KW_OP_RSA_SIGN_SHA256, "hold-x", NULL), 0);
	CHECK_EQ(submit(c, &r[1], KW_OP_RSA_SIGN_SHA256, "garbage", NULL), 0);
	CHECK(run(loop, &total_calls, 2, 3000));
	CHECK_EQ(r[0].status, -KW_EPROTO);
	CHECK_EQ(r[1].status, -KW_EPROTO);
	CHECK(!kw_client_connected(c));
	CHECK_EQ(submit(c, &r[2], KW_OP_PING, "after", NULL), 0);
	CHECK(run(loop, &total_calls, 3, 3000));
	CHECK(answered_ok(&r[2]));
	CHECK_EQ(atomic_load(&s->nconns), conns + 2);
	kw_client_free(c);
}

static void test_max_inflight_and_reentrancy(struct kw_loop *loop, const struct kw_addr *addr,
                                             SSL_CTX *ctx)
{
	struct req r[12];
	struct kw_client *c = client_new(loop, addr, ctx, NULL, 5000, 4);

	memset(r, 0, sizeof(r));
	total_calls = 0;
	callbacks_in_submit = 0;
	for (int i = 0; i < 4; i++)
		CHECK_EQ(submit(c, &r[i], KW_OP_PING, "x", NULL), 0);
	CHECK_EQ(submit(c, &r[4], KW_OP_PING, "x", NULL), -EAGAIN);
	CHECK_EQ(kw_client_inflight(c), 4);
	CHECK(run(loop, &total_calls, 4, 3000));
	CHECK_EQ(r[4].calls, 0);
	CHECK_EQ(submit(c, &r[4], KW_OP_PING, "y", NULL), 0);
	CHECK(run(loop, &total_calls, 5, 3000));
	CHECK(answered_ok(&r[4]));

	/* Callbacks that submit again: a chain r[5] -> r[6] -> ... -> r[10]. */
	for (int i = 5; i < 10; i++) {
		r[i].client = c;
		r[i].action = ACT_RESUBMIT;
	}
	CHECK_EQ(submit(c, &r[5], KW_OP_PING, "chain", NULL), 0);
	CHECK(run(loop, &total_calls, 11, 3000));
	for (int i = 5; i <= 10; i++)
		CHECK_EQ(r[i].calls, 1);
	for (int i = 5; i < 10; i++)
		CHECK_EQ(r[i].resubmit_rc, 0);
	CHECK_EQ(r[10].status, 0);
	CHECK_EQ(callbacks_in_submit, 0);
	kw_client_free(c);
}

static void test_free(struct kw_loop *loop, const struct kw_addr *addr, SSL_CTX *ctx)
{
	struct req r[8];
	struct kw_client *c = client_new(loop, addr, ctx, NULL, 5000, 0);

	memset(r, 0, sizeof(r));
	total_calls = 0;
	/* Pending requests fail with ECANCELED before kw_client_free returns. */
	CHECK_EQ(submit(c, &r[0], KW_OP_PING, "p", NULL), 0);
	CHECK(run(loop, &total_calls, 1, 3000));
	CHECK_EQ(submit(c, &r[1], KW_OP_RSA_SIGN_SHA256, "silent", NULL), 0);
	CHECK_EQ(submit(c, &r[2], KW_OP_RSA_SIGN_SHA256, "silent", NULL), 0);
	r[2].client = c;
	r[2].action = ACT_RESUBMIT; /* refused: the client is going away */
	spin(loop, 20);
	kw_client_free(c);
	CHECK_EQ(r[1].status, -KW_ECANCELED);
	CHECK_EQ(r[2].status, -KW_ECANCELED);
	CHECK_EQ(r[2].resubmit_rc, -KW_ECANCELED);
	CHECK_EQ(r[3].calls, 0);
	CHECK_EQ(total_calls, 3);
	spin(loop, 10);

	/* A callback frees its client while other answers are still being parsed. */
	memset(r, 0, sizeof(r));
	total_calls = 0;
	c = client_new(loop, addr, ctx, NULL, 5000, 0);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(submit(c, &r[i], KW_OP_RSA_SIGN_SHA256, "hold-f", NULL), 0);
	CHECK_EQ(submit(c, &r[4], KW_OP_RSA_SIGN_SHA256, "release", NULL), 0);
	r[3].client = c;
	r[3].action = ACT_FREE; /* answered first (newest held first) */
	CHECK(run(loop, &total_calls, 5, 3000));
	CHECK_EQ(r[3].status, 0);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(r[i].status, -KW_ECANCELED);
	CHECK_EQ(r[4].status, -KW_ECANCELED);
	spin(loop, 20);
	CHECK_EQ(total_calls, 5);

	/* Freeing a client that never connected, and NULL. */
	kw_client_free(client_new(loop, addr, ctx, NULL, 0, 0));
	kw_client_free(NULL);
}

/* A server that stops reading: the client gives up on the link after a timeout. */
static void test_stuck_server(struct kw_loop *loop, const struct kw_addr *addr, struct srv *s)
{
	enum { N = 1000 };
	static struct req r[N + 1];
	struct kw_client *c = client_new(loop, addr, NULL, NULL, 150, N);

	memset(r, 0, sizeof(r));
	total_calls = 0;
	int conns = atomic_load(&s->nconns);
	CHECK_EQ(submit(c, &r[0], KW_OP_RSA_SIGN_SHA256, "stall", NULL), 0);
	for (int i = 1; i < N; i++)
		CHECK_EQ(submit(c, &r[i], KW_OP_PING, "x", NULL), 0);
	CHECK(run(loop, &total_calls, N, 3000));
	for (int i = 0; i < N; i++)
		CHECK_EQ(r[i].status, -KW_ETIMEOUT);
	CHECK(!kw_client_connected(c));
	spin(loop, 600); /* the server wakes up and notices */
	CHECK_EQ(submit(c, &r[N], KW_OP_PING, "back", NULL), 0);
	CHECK(run(loop, &total_calls, N + 1, 3000));
	CHECK(answered_ok(&r[N]));
	CHECK_EQ(atomic_load(&s->nconns), conns + 2);
	kw_client_free(c);
}

static void test_connect_failures(struct kw_loop *loop, const char *tmpdir, SSL_CTX *ctx)
{
	struct req r[2];
	struct kw_addr a;
	char text[300], err[256];

	memset(r, 0, sizeof(r));
	total_calls = 0;
	callbacks_in_submit = 0;
	snprintf(text, sizeof(text), "unix:%s/nobody-listens.sock", tmpdir);
	CHECK_EQ(kw_addr_parse(&a, text, err, sizeof(err)), 0);
	struct kw_client *c = client_new(loop, &a, NULL, NULL, 2000, 0);
	CHECK_EQ(submit(c, &r[0], KW_OP_PING, "x", NULL), 0);
	CHECK_EQ(r[0].calls, 0);
	CHECK(run(loop, &total_calls, 1, 2000));
	CHECK_EQ(r[0].status, -ENOENT);
	CHECK_EQ(callbacks_in_submit, 0);
	kw_client_free(c);

	/* A TCP port nobody listens on (bound, never listened). */
	struct kw_addr any;
	CHECK_EQ(kw_addr_parse(&any, "127.0.0.1:0", err, sizeof(err)), 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(bind(fd, (struct sockaddr *)&any.ss, any.len) == 0);
	snprintf(text, sizeof(text), "127.0.0.1:%d", kw_bound_port(fd));
	CHECK_EQ(kw_addr_parse(&a, text, err, sizeof(err)), 0);
	c = client_new(loop, &a, ctx, NULL, 2000, 0);
	CHECK_EQ(submit(c, &r[1], KW_OP_PING, "x", NULL), 0);
	CHECK(run(loop, &total_calls, 2, 2000));
	CHECK_EQ(r[1].status, -ECONNREFUSED);
	kw_client_free(c);
	close(fd);

	/* TCP without TLS is refused. */
	struct kw_client_config cfg = {.addr = a};
	CHECK_EQ(kw_client_new(loop, &cfg, &c), -EINVAL);
}

static SSL_CTX *ctx_from(const char *dir, bool server, const char *cert, const char *key,
                         const char *ca)
{
	char c[512], k[512], a[512], err[512];
	snprintf(c, sizeof(c), "%s/%s", dir, cert ? cert : "");
	snprintf(k, sizeof(k), "%s/%s", dir, key ? key : "");
	snprintf(a, sizeof(a), "%s/%s", dir, ca);
	SSL_CTX *ctx =
	    server ? kw_tls_server_ctx(c, k, a, err, sizeof(err))
	           : kw_tls_client_ctx(cert ? c : NULL, key ? k : NULL, a, err, sizeof(err));
	if (ctx == NULL)
		fprintf(stderr, "TLS context: %s\n", err);
	CHECK(ctx != NULL);
	return ctx;
}

static void test_tls_refusals(struct kw_loop *loop, const struct kw_addr *addr, const char *dir)
{
	struct req r[3];
	memset(r, 0, sizeof(r));
	total_calls = 0;

	/* Wrong name: the certificate names 127.0.0.1 and keyserver.test only. */
	SSL_CTX *good = ctx_from(dir, false, "client.pem", "client.key", "ca.pem");
	struct kw_client *c = client_new(loop, addr, good, "wrong.test", 2000, 0);
	CHECK_EQ(submit(c, &r[0], KW_OP_PING, "x", NULL), 0);
	CHECK(run(loop, &total_calls, 1, 3000));
	CHECK_EQ(r[0].status, -KW_ETLS);
	kw_client_free(c);

	/* The right DNS name works against the same address. */
	c = client_new(loop, addr, good, "keyserver.test", 2000, 0);
	CHECK_EQ(submit(c, &r[1], KW_OP_PING, "named", NULL), 0);
	CHECK(run(loop, &total_calls, 2, 3000));
	CHECK(answered_ok(&r[1]));
	kw_client_free(c);

	/* A server from another CA is refused. */
	SSL_CTX *other = ctx_from(dir, false, "client.pem", "client.key", "other-ca.pem");
	c = client_new(loop, addr, other, NULL, 2000, 0);
	CHECK_EQ(submit(c, &r[2], KW_OP_PING, "x", NULL), 0);
	CHECK(run(loop, &total_calls, 3, 3000));
	CHECK_EQ(r[2].status, -KW_ETLS);
	kw_client_free(c);
	SSL_CTX_free(other);
	SSL_CTX_free(good);
	spin(loop, 20);
}

static void run_all(struct kw_loop *loop, const struct kw_addr *addr, SSL_CTX *ctx, struct srv *s,
                    const char *tmpdir)
{
	test_pipelined_out_of_order(loop, addr, ctx);
	test_answers(loop, addr, ctx, s);
	test_timeout_and_late_answer(loop, addr, ctx, s);
	test_server_close_and_reconnect(loop, addr, ctx, s);
	test_malformed_closes(loop, addr, ctx, s);
	test_max_inflight_and_reentrancy(loop, addr, ctx);
	test_free(loop, addr, ctx);
	spin(loop, 20);
}

int main(void)
{
	struct kw_loop *loop = NULL;
	struct srv s;
	struct kw_addr addr;
	char tmpdir[] = "/tmp/kw-test-client-XXXXXX";

	signal(SIGPIPE, SIG_IGN);
	CHECK(mkdtemp(tmpdir) != NULL);
	CHECK_EQ(kw_loop_new(&loop), 0);

	/* Unix socket, no TLS. */
	CHECK_EQ(srv_start(&s, &addr, NULL), 0);
	run_all(loop, &addr, NULL, &s, tmpdir);
	test_stuck_server(loop, &addr, &s);
	srv_stop(&s);

	/* TCP with mutual TLS. */
	pki_make(tmpdir);
	SSL_CTX *sctx = ctx_from(tmpdir, true, "server.pem", "server.key", "ca.pem");
	SSL_CTX *cctx = ctx_from(tmpdir, false, "client.pem", "client.key", "ca.pem");
	if (sctx != NULL && cctx != NULL) {
		CHECK_EQ(srv_start(&s, &addr, sctx), 0);
		run_all(loop, &addr, cctx, &s, tmpdir);
		test_tls_refusals(loop, &addr, tmpdir);
		srv_stop(&s);
	}
	test_connect_failures(loop, tmpdir, cctx);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);

	kw_loop_free(loop);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	CHECK_EQ(system(cmd), 0);
	CHECK_DONE();
}
