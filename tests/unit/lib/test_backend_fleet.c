/*
 * test_backend_fleet.c - the keyless backend's fleet behaviour against
 * scripted keyservers on unix sockets (one thread each): attempt timeouts
 * and hedging to another keyserver, health probes bringing a keyserver back,
 * idle pings, and fallback keys (at the deadline and when every keyserver is
 * unreachable), plus the fallback key directory's rules.
 *
 * A server answers every request (a response echoing the payload, a pong for
 * a ping) unless it is silent: then it reads and answers nothing, like a
 * stopped process whose connections stay open.
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
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "check.h"
#include "keyless_fixture.h"
#include "keyway/backend_keyless.h"
#include "keyway/buf.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/keyset.h"
#include "keyway/loop.h"
#include "keyway/protocol.h"

struct srv {
	struct fake_keyserver ks;
	atomic_bool silent;
	atomic_bool paused; /* the thread saw silent: it reads nothing until it is cleared */
	atomic_int requests, pings;
};

static void handle(void *arg, int fd, uint32_t id, const struct kw_msg *m)
{
	struct srv *s = arg;
	if (m->opcode == KW_OP_PING) {
		atomic_fetch_add(&s->pings, 1);
		poll_server_reply(fd, id, KW_OP_PONG, m->payload.data, m->payload.len);
	} else {
		atomic_fetch_add(&s->requests, 1);
		poll_server_reply(fd, id, KW_OP_RESPONSE, m->payload.data, m->payload.len);
	}
}

/* A silent server is stopped: it reads nothing, answers nothing. */
static bool held(void *arg)
{
	struct srv *s = arg;
	bool silent = atomic_load(&s->silent);
	atomic_store(&s->paused, silent);
	return silent;
}

static void srv_start(struct srv *s, int which)
{
	memset(s, 0, sizeof(*s));
	fake_keyserver_start(&s->ks, "fl", which, handle, held, s);
}

/* ---- ops ---- */

struct top {
	struct kw_op op;
	uint8_t in[32];
	uint64_t done_ns;
};

static void on_done(struct kw_op *op, void *arg)
{
	((struct top *)arg)->done_ns = kw_now_ns();
}

static void on_release(struct kw_op *op)
{
	free(op);
}

static struct top *mk(const uint8_t ski[KW_SKI_LEN])
{
	struct top *t = calloc(1, sizeof(*t));
	kw_op_init(&t->op, KW_OPK_ASYM, KW_OP_ECDSA_SIGN_SHA256);
	for (int i = 0; i < 32; i++)
		t->in[i] = (uint8_t)(i * 7 + 1);
	t->op.in = t->in;
	t->op.in_len = 32;
	memcpy(t->op.ski, ski, KW_SKI_LEN);
	t->op.done = on_done;
	t->op.done_arg = t;
	t->op.release = on_release;
	return t;
}

/* Submits n fresh ops for key ski to b, each accepted. */
static void submit_all(struct kw_backend *b, struct top **ops, int n, const uint8_t *ski)
{
	for (int i = 0; i < n; i++) {
		ops[i] = mk(ski);
		CHECK_EQ(kw_backend_submit(b, &ops[i]->op), 0);
	}
}

/* Runs the loop until the n ops are done (3 s at most); each must have succeeded. */
static void expect_all_ok(struct kw_loop *loop, struct top **ops, int n)
{
	FIXTURE_RUN_UNTIL_DONE(loop, ops, n, 3000);
	for (int i = 0; i < n; i++) {
		CHECK_EQ(ops[i]->op.status, 0);
		kw_op_unref(&ops[i]->op);
	}
}

static struct kw_backend *mkb(struct kw_loop *loop, struct kw_addr *addrs, size_t n,
                              unsigned timeout_ms, unsigned attempt_ms, unsigned idle_ms,
                              struct kw_keyset *fb, struct kw_keyless_counters *ctr)
{
	return fixture_keyless_new(loop,
	                           (struct kw_keyless_config){.addrs = addrs,
	                                                      .nservers = n,
	                                                      .timeout_ms = timeout_ms,
	                                                      .attempt_timeout_ms = attempt_ms,
	                                                      .idle_ping_ms = idle_ms,
	                                                      .fallback = fb,
	                                                      .counters = ctr});
}

/* ---- fallback keys ---- */

static char keydir[64];
static EVP_PKEY *fbkey;

static void write_key(const char *name, EVP_PKEY *k, mode_t mode)
{
	fixture_write_pem(keydir, name, NULL, k, mode);
}

static void test_keyset(void)
{
	struct kw_keyset *ks = NULL;
	char err[512];

	snprintf(keydir, sizeof(keydir), "/tmp/kw-fl-keys-%d", (int)getpid());
	mkdir(keydir, 0700);
	fbkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK(fbkey != NULL);

	/* Empty directory: refused, named. */
	CHECK_EQ(kw_keyset_load(keydir, &ks, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strstr(err, "no key files") != NULL);

	/* Group-readable: refused with the fix. */
	write_key("a.key", fbkey, 0640);
	CHECK_EQ(kw_keyset_load(keydir, &ks, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strstr(err, "readable by group or others") != NULL);
	CHECK(strstr(err, "chmod 600") != NULL);
	CHECK(ks == NULL);

	/* Not a key: loads (bytes), refused when decoded. */
	char path[128];
	snprintf(path, sizeof(path), "%s/a.key", keydir);
	chmod(path, 0600);
	snprintf(path, sizeof(path), "%s/junk.key", keydir);
	FILE *f = fopen(path, "w");
	fputs("not a key\n", f);
	fclose(f);
	chmod(path, 0600);
	CHECK_EQ(kw_keyset_load(keydir, &ks, err, sizeof(err)), 0);
	CHECK_EQ(kw_keyset_prepare(ks, NULL, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strstr(err, "junk.key: not a private key") != NULL);
	kw_keyset_free(ks);
	ks = NULL;
	unlink(path);
}

int main(void)
{
	struct kw_loop *loop = NULL;
	struct srv a, b2;
	struct kw_addr addrs[2], dead[2];
	struct kw_keyless_counters ctr = {0};
	struct kw_keyless_stats st;
	struct top *ops[16];
	uint8_t ski[KW_SKI_LEN], other[KW_SKI_LEN];
	char err[512];

	signal(SIGPIPE, SIG_IGN);
	CHECK_EQ(kw_loop_new(&loop), 0);
	test_keyset();
	CHECK_EQ(kw_key_ski(fbkey, ski), 0);
	memset(other, 0x5a, sizeof(other));
	srv_start(&a, 1);
	srv_start(&b2, 2);
	fixture_unix_addr(&addrs[0], a.ks.path);
	fixture_unix_addr(&addrs[1], b2.ks.path);
	fixture_unix_addr(&dead[0], "/tmp/kw-fl-nobody-1.sock");
	fixture_unix_addr(&dead[1], "/tmp/kw-fl-nobody-2.sock");

	/* A silent keyserver: every op succeeds on the other one, well before the deadline. */
	struct kw_backend *b = mkb(loop, addrs, 2, 5000, 100, 100000, NULL, &ctr);
	submit_all(b, ops, 4, other); /* connect both first */
	expect_all_ok(loop, ops, 4);
	atomic_store(&a.silent, true);
	while (!atomic_load(&a.paused))
		usleep(1000);
	uint64_t t0 = kw_now_ns();
	submit_all(b, ops, 16, other);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 16, 4000);
	uint64_t worst = 0;
	for (int i = 0; i < 16; i++) {
		CHECK_EQ(ops[i]->op.status, 0);
		CHECK_EQ(ops[i]->op.server, 1);
		if (ops[i]->done_ns - t0 > worst)
			worst = ops[i]->done_ns - t0;
		kw_op_unref(&ops[i]->op);
	}
	printf("silent keyserver: slowest op %.1f ms (attempt timeout 100 ms, deadline 5000 ms)\n",
	       worst / 1e6);
	CHECK(worst < 2500 * 1000000ull); /* the hedge saved them, not the deadline */
	CHECK_EQ(kw_backend_keyless_stats(b, &st), 0);
	CHECK(st.attempt_timeouts >= 1);
	CHECK(st.failovers >= 1);
	CHECK_EQ(st.unhealthy, 1);

	/* Ops after that go to the healthy one at once. */
	t0 = kw_now_ns();
	ops[0] = mk(other);
	CHECK_EQ(kw_backend_submit(b, &ops[0]->op), 0);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 1, 3000);
	CHECK_EQ(ops[0]->op.status, 0);
	CHECK_EQ(ops[0]->op.attempts, 1);
	kw_op_unref(&ops[0]->op);

	/* It comes back: a probe's answer makes it healthy, and it gets work again. */
	fixture_run_ms(loop, 300);
	CHECK_EQ(kw_backend_keyless_stats(b, &st), 0);
	CHECK(st.probes >= 1);
	CHECK_EQ(st.unhealthy, 1);
	atomic_store(&a.silent, false);
	for (int i = 0; i < 300; i++) {
		kw_loop_run_once(loop, 10);
		CHECK_EQ(kw_backend_keyless_stats(b, &st), 0);
		if (st.unhealthy == 0)
			break;
	}
	CHECK_EQ(st.unhealthy, 0);
	fixture_run_ms(loop, 200); /* the answers it owed come in: its in-flight count drops */
	CHECK_EQ(kw_backend_keyless_stats(b, &st), 0);
	CHECK(st.dropped >= 1); /* answers to tries the hedges had already won */
	int before = atomic_load(&a.requests);
	submit_all(b, ops, 16, other);
	expect_all_ok(loop, ops, 16);
	CHECK(atomic_load(&a.requests) > before);
	kw_backend_free(b);
	kw_loop_run_once(loop, 0);

	/* Idle connections get pings. */
	b = mkb(loop, addrs, 1, 2000, 300, 100, NULL, NULL);
	ops[0] = mk(other);
	CHECK_EQ(kw_backend_submit(b, &ops[0]->op), 0);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 1, 3000);
	CHECK_EQ(ops[0]->op.status, 0);
	kw_op_unref(&ops[0]->op);
	int pings = atomic_load(&a.pings);
	fixture_run_ms(loop, 400);
	CHECK_EQ(kw_backend_keyless_stats(b, &st), 0);
	CHECK(st.idle_pings >= 1);
	CHECK(atomic_load(&a.pings) > pings);
	kw_backend_free(b);
	kw_loop_run_once(loop, 0);

	/* Fallback keys: every keyserver unreachable -> at once, no deadline wait. */
	struct kw_keyset *ks = NULL;
	write_key("fb.key", fbkey, 0600);
	CHECK_EQ(kw_keyset_load(keydir, &ks, err, sizeof(err)), 0);
	CHECK(kw_keyset_find(ks, ski) == NULL); /* not prepared yet */
	CHECK_EQ(kw_keyset_prepare(ks, NULL, err, sizeof(err)), 0);
	CHECK_EQ(kw_keyset_count(ks), 1);
	CHECK(kw_keyset_find(ks, ski) != NULL);
	struct kw_keyless_counters fctr = {0};
	b = mkb(loop, dead, 2, 3000, 300, 0, ks, &fctr);
	t0 = kw_now_ns();
	ops[0] = mk(ski);
	ops[1] = mk(other);
	CHECK_EQ(kw_backend_submit(b, &ops[0]->op), 0);
	CHECK_EQ(kw_backend_submit(b, &ops[1]->op), 0);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 2, 5000);
	CHECK(kw_now_ns() - t0 < 2000 * 1000000ull);
	CHECK_EQ(ops[0]->op.status, 0);
	CHECK(ops[1]->op.status != 0 && ops[1]->op.status != -KW_ETIMEOUT);
	EVP_PKEY_CTX *vc = EVP_PKEY_CTX_new(fbkey, NULL);
	CHECK(vc != NULL && EVP_PKEY_verify_init(vc) == 1);
	CHECK(EVP_PKEY_verify(vc, ops[0]->op.out, ops[0]->op.out_len, ops[0]->in, 32) == 1);
	EVP_PKEY_CTX_free(vc);
	CHECK_EQ(kw_backend_keyless_stats(b, &st), 0);
	CHECK_EQ(st.fallbacks, 1);
	CHECK_EQ(atomic_load(&fctr.fallbacks), 1);
	CHECK(atomic_load(&fctr.in_fallback));
	kw_op_unref(&ops[0]->op);
	kw_op_unref(&ops[1]->op);
	kw_backend_free(b);
	kw_loop_run_once(loop, 0);

	/* Silent keyservers: the fallback at the deadline; back to keyservers when they answer. */
	atomic_store(&a.silent, true);
	while (!atomic_load(&a.paused))
		usleep(1000);
	b = mkb(loop, addrs, 1, 400, 100, 0, ks, &fctr);
	kw_keyset_free(ks); /* the backend holds its own reference */
	t0 = kw_now_ns();
	ops[0] = mk(ski);
	CHECK_EQ(kw_backend_submit(b, &ops[0]->op), 0);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 1, 3000);
	CHECK_EQ(ops[0]->op.status, 0);
	CHECK(kw_now_ns() - t0 >= 350 * 1000000ull);
	kw_op_unref(&ops[0]->op);
	atomic_store(&a.silent, false);
	ops[0] = mk(ski);
	CHECK_EQ(kw_backend_submit(b, &ops[0]->op), 0);
	FIXTURE_RUN_UNTIL_DONE(loop, ops, 1, 3000);
	CHECK_EQ(ops[0]->op.status, 0);
	kw_op_unref(&ops[0]->op);
	CHECK_EQ(atomic_load(&fctr.fallbacks), 2);
	CHECK(!atomic_load(&fctr.in_fallback));
	kw_backend_free(b);
	kw_loop_run_once(loop, 0);

	fake_keyserver_stop(&a.ks);
	fake_keyserver_stop(&b2.ks);
	kw_loop_free(loop);
	char path[128];
	snprintf(path, sizeof(path), "%s/a.key", keydir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/fb.key", keydir);
	unlink(path);
	rmdir(keydir);
	EVP_PKEY_free(fbkey);
	CHECK_DONE();
}
