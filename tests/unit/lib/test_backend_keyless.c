/*
 * test_backend_keyless.c - the keyless backend against tiny scripted
 * keyservers on unix sockets (one thread each).
 *
 * A server answers each request by its payload: "silent..." gets no answer,
 * anything else a response echoing the payload -- unless the server is in
 * "nokey" mode (every request: KEY_NOT_FOUND). Covered: results and
 * in-flight counts, the in-flight cap (-EAGAIN), failover from a dead
 * keyserver and from one without the key, the op deadline with a late
 * answer dropped, pinning, completion outside submit, detached ops and
 * freeing the backend with ops in flight.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "keyless_fixture.h"
#include "keyway/backend_keyless.h"
#include "keyway/buf.h"
#include "keyway/err.h"
#include "keyway/loop.h"
#include "keyway/protocol.h"

/* ---- scripted keyserver ---- */

struct srv {
	struct fake_keyserver ks;
	bool nokey;
	atomic_int requests;
};

static void handle(void *arg, int fd, uint32_t id, const struct kw_msg *m)
{
	struct srv *s = arg;
	atomic_fetch_add(&s->requests, 1);
	if (m->opcode == KW_OP_PING) {
		poll_server_reply(fd, id, KW_OP_PONG, m->payload.data, m->payload.len);
	} else if (s->nokey) {
		uint8_t e = KW_ERR_KEY_NOT_FOUND;
		poll_server_reply(fd, id, KW_OP_ERROR, &e, 1);
	} else if (!(m->payload.len >= 6 && memcmp(m->payload.data, "silent", 6) == 0)) {
		poll_server_reply(fd, id, KW_OP_RESPONSE, m->payload.data, m->payload.len);
	}
}

static void srv_start(struct srv *s, int which, bool nokey)
{
	memset(s, 0, sizeof(*s));
	s->nokey = nokey;
	fake_keyserver_start(&s->ks, "bk", which, handle, NULL, s);
}

/* ---- ops ---- */

struct top {
	struct kw_op op;
	uint8_t in[32];
	int done_calls;
	bool freed_flag;
};

static int releases;

static void on_done(struct kw_op *op, void *arg)
{
	((struct top *)arg)->done_calls++;
}

static void on_release(struct kw_op *op)
{
	releases++;
	free(op);
}

static struct top *mk(const char *payload)
{
	struct top *t = calloc(1, sizeof(*t));
	kw_op_init(&t->op, KW_OPK_ASYM, KW_OP_ECDSA_SIGN_SHA256);
	size_t n = strlen(payload);
	memcpy(t->in, payload, n);
	t->op.in = t->in;
	t->op.in_len = n;
	memset(t->op.ski, 0xab, KW_SKI_LEN);
	t->op.done = on_done;
	t->op.done_arg = t;
	t->op.release = on_release;
	return t;
}

static struct kw_backend *mkb(struct kw_loop *loop, struct kw_addr *addrs, size_t n, unsigned max,
                              unsigned timeout_ms, struct kw_keyless_counters *ctr)
{
	return fixture_keyless_new(loop, (struct kw_keyless_config){.addrs = addrs,
	                                                            .nservers = n,
	                                                            .timeout_ms = timeout_ms,
	                                                            .max_inflight = max,
	                                                            .counters = ctr});
}

int main(void)
{
	struct kw_loop *loop = NULL;
	struct srv good, nokey;
	struct kw_addr addrs[3];
	struct kw_keyless_counters ctr = {0};
	struct kw_keyless_stats st;
	struct top *ops[8];

	signal(SIGPIPE, SIG_IGN);
	CHECK_EQ(kw_loop_new(&loop), 0);
	srv_start(&good, 1, false);
	srv_start(&nokey, 2, true);
	fixture_unix_addr(&addrs[0], good.ks.path);
	fixture_unix_addr(&addrs[1], nokey.ks.path);
	fixture_unix_addr(&addrs[2], "/tmp/kw-bk-nobody-listens.sock");

	/* Results, counts, the cap, completion never inside submit. */
	struct kw_backend *b = mkb(loop, addrs, 1, 2, 2000, &ctr);
	CHECK(kw_backend_is_keyless(b));
	ops[0] = mk("hello");
	ops[1] = mk("world");
	ops[2] = mk("third");
	CHECK_EQ(kw_backend_submit(b, &ops[0]->op), 0);
	CHECK_EQ(kw_backend_submit(b, &ops[1]->op), 0);
	CHECK_EQ(kw_backend_submit(b, &ops[2]->op), -EAGAIN);
	CHECK_EQ(kw_backend_inflight(b, KW_OPK_ASYM), 2);
	CHECK_EQ(kw_backend_inflight(b, KW_OPK_OTHER), 0);
	CHECK_EQ(ops[0]->done_calls, 0);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 2, 3000);
	CHECK_EQ(ops[0]->op.status, 0);
	CHECK_EQ(ops[0]->op.out_len, 5);
	CHECK(memcmp(ops[0]->op.out, "hello", 5) == 0);
	CHECK(memcmp(ops[1]->op.out, "world", 5) == 0);
	CHECK_EQ(ops[0]->done_calls, 1);
	CHECK_EQ(ops[0]->op.server, 0);
	CHECK_EQ(kw_backend_inflight(b, KW_OPK_ASYM), 0);
	CHECK_EQ(kw_backend_submit(b, &ops[2]->op), 0);
	FIXTURE_RUN_UNTIL_DONE(loop, &ops[2], 1, 3000);
	CHECK_EQ(ops[2]->op.status, 0);
	CHECK_EQ(kw_backend_keyless_stats(b, &st), 0);
	CHECK_EQ(st.submitted, 3);
	CHECK_EQ(st.eagain, 1);
	for (int i = 0; i < 3; i++)
		kw_op_unref(&ops[i]->op);

	/* The deadline: a silent keyserver; the late answer (none here) would be dropped. */
	ops[0] = mk("silent");
	ops[0]->op.deadline_ns = kw_now_ns() + 150 * 1000000ull;
	uint64_t t0 = kw_now_ns();
	CHECK_EQ(kw_backend_submit(b, &ops[0]->op), 0);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 1, 3000);
	uint64_t took = kw_now_ns() - t0;
	CHECK_EQ(ops[0]->op.status, -KW_ETIMEOUT);
	CHECK(took >= 140 * 1000000ull && took < 1000 * 1000000ull);
	CHECK_EQ(kw_backend_inflight(b, KW_OPK_ASYM), 0);
	kw_op_unref(&ops[0]->op);

	/* A detached op: done never runs; the backend's reference frees it. */
	releases = 0;
	ops[0] = mk("detached");
	CHECK_EQ(kw_backend_submit(b, &ops[0]->op), 0);
	kw_op_detach(&ops[0]->op);
	struct top *keep = ops[0];
	kw_op_unref(&ops[0]->op);
	CHECK_EQ(releases, 0);
	for (int i = 0; i < 100 && releases == 0; i++)
		kw_loop_run_once(loop, 10);
	CHECK_EQ(releases, 1);
	(void)keep;
	kw_backend_free(b);
	kw_loop_run_once(loop, 0);

	/* Failover: a keyserver nobody listens on, and one without the key, then the good one. */
	struct kw_addr order[3] = {addrs[2], addrs[1], addrs[0]};
	b = mkb(loop, order, 3, 64, 2000, &ctr);
	for (int i = 0; i < 8; i++) {
		ops[i] = mk("failover");
		CHECK_EQ(kw_backend_submit(b, &ops[i]->op), 0);
	}
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 8, 5000);
	for (int i = 0; i < 8; i++) {
		CHECK_EQ(ops[i]->op.status, 0);
		CHECK_EQ(ops[i]->op.server, 2);
		CHECK(ops[i]->op.attempts >= 1 && ops[i]->op.attempts <= 3);
		kw_op_unref(&ops[i]->op);
	}
	CHECK_EQ(kw_backend_keyless_stats(b, &st), 0);
	CHECK(st.retries >= 1);
	CHECK(atomic_load(&ctr.retries) == st.retries);
	CHECK(atomic_load(&ctr.failovers) == st.failovers);
	CHECK(st.failovers >= 1);
	CHECK(strcmp(kw_backend_keyless_server_name(b, 2), "unix:") > 0);

	/* Pinned to the keyserver without the key: its answer, no failover. */
	ops[0] = mk("pinned");
	CHECK_EQ(kw_backend_keyless_submit_to(b, &ops[0]->op, 1), 0);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 1, 3000);
	CHECK_EQ(ops[0]->op.status, -KW_EREMOTE);
	CHECK_EQ(ops[0]->op.remote_error, KW_ERR_KEY_NOT_FOUND);
	CHECK_EQ(ops[0]->op.attempts, 1);
	kw_op_unref(&ops[0]->op);

	/* Only dead keyservers: a link error, quickly. */
	ops[0] = mk("dead");
	CHECK_EQ(kw_backend_keyless_submit_to(b, &ops[0]->op, 0), 0);
	CHECK_EQ(ops[0]->done_calls, 0);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 1, 3000);
	CHECK(ops[0]->op.status != 0 && ops[0]->op.status != -KW_ETIMEOUT);
	kw_op_unref(&ops[0]->op);

	/* Freed with ops in flight: they complete with -KW_ECANCELED before free returns. */
	ops[0] = mk("silent-1");
	ops[1] = mk("silent-2");
	CHECK_EQ(kw_backend_keyless_submit_to(b, &ops[0]->op, 2), 0);
	CHECK_EQ(kw_backend_keyless_submit_to(b, &ops[1]->op, 2), 0);
	for (int i = 0; i < 5; i++)
		kw_loop_run_once(loop, 10);
	kw_backend_free(b);
	CHECK_EQ(ops[0]->op.status, -KW_ECANCELED);
	CHECK_EQ(ops[1]->op.status, -KW_ECANCELED);
	CHECK_EQ(ops[0]->done_calls, 1);
	kw_op_unref(&ops[0]->op);
	kw_op_unref(&ops[1]->op);
	kw_loop_run_once(loop, 0);

	fake_keyserver_stop(&good.ks);
	fake_keyserver_stop(&nokey.ks);
	kw_loop_free(loop);
	CHECK_DONE();
}
