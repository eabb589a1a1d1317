/*
 * test_device.c - the PKCS#11 device threads on a SoftHSM2 token: requests
 * completed back to a loop through an eventfd while the loop keeps turning,
 * a full queue refused rather than waited on, queued requests run at free,
 * cancelled requests skipped, and the counters. Skipped (77) when SoftHSM2 is not installed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>

#include <openssl/err.h>

#include "check.h"
#include "device.h"
#include "keyway/keyid.h"
#include "keyway/loop.h"
#include "p11_fixture.h"

static EVP_PKEY *p256;
static struct kwd_p11_set *set;

/* The loop side: finished requests handed back through a locked list and an eventfd. */
struct sink {
	pthread_mutex_t lock;
	struct kwd_devreq *done; /* finished, not yet taken by the loop */
	int efd;
	struct kw_io io;
	size_t taken, good, bad;
	/* A gate the device threads wait at in done (to fill the queue on purpose). */
	pthread_mutex_t gate_lock;
	pthread_cond_t gate_cond;
	bool gate_closed;
};

struct req {
	struct kwd_devreq r;
	uint8_t in[32], out[KW_RESULT_MAX];
};

static void on_done(struct kwd_devreq *r)
{
	struct sink *s = r->arg;
	pthread_mutex_lock(&s->gate_lock);
	while (s->gate_closed)
		pthread_cond_wait(&s->gate_cond, &s->gate_lock);
	pthread_mutex_unlock(&s->gate_lock);
	pthread_mutex_lock(&s->lock);
	r->next = s->done;
	s->done = r;
	pthread_mutex_unlock(&s->lock);
	uint64_t one = 1;
	if (write(s->efd, &one, sizeof(one)) != sizeof(one))
		abort();
}

static bool good_sig(struct req *q)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, p256, NULL);
	bool ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
	          EVP_PKEY_verify(ctx, q->out, q->r.out_len, q->in, 32) == 1;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

static void on_efd(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct sink *s = arg;
	uint64_t n;
	(void)loop;
	(void)events;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return;
	pthread_mutex_lock(&s->lock);
	struct kwd_devreq *list = s->done;
	s->done = NULL;
	pthread_mutex_unlock(&s->lock);
	while (list != NULL) {
		struct req *q = (struct req *)list;
		list = list->next;
		s->taken++;
		if (q->r.error == KW_ERR_NONE && good_sig(q))
			s->good++;
		else
			s->bad++;
		free(q);
	}
}

static void sink_init(struct sink *s, struct kw_loop *loop)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->gate_lock, NULL);
	pthread_cond_init(&s->gate_cond, NULL);
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	kw_io_init(&s->io, on_efd, s);
	CHECK(kw_io_start(loop, &s->io, s->efd, KW_EV_READ) == 0);
}

/* sink_wait turns the loop until s has taken n answers (a minute at most). */
static void sink_wait(struct sink *s, struct kw_loop *loop, unsigned n)
{
	for (int i = 0; i < 600 && s->taken < n; i++)
		kw_loop_run_once(loop, 100);
}

/* sink_fini stops watching s's eventfd and frees loop (the pool is freed first). */
static void sink_fini(struct sink *s, struct kw_loop *loop)
{
	kw_io_stop(loop, &s->io);
	close(s->efd);
	kw_loop_free(loop);
}

static void gate(struct sink *s, bool closed)
{
	pthread_mutex_lock(&s->gate_lock);
	s->gate_closed = closed;
	pthread_cond_broadcast(&s->gate_cond);
	pthread_mutex_unlock(&s->gate_lock);
}

static struct req *new_req(struct sink *s, unsigned i)
{
	struct req *q = calloc(1, sizeof(*q));
	for (size_t j = 0; j < sizeof(q->in); j++)
		q->in[j] = (uint8_t)(i + j);
	q->r = (struct kwd_devreq){
	    .key = kwd_p11_set_key(set, 0),
	    .desc = kw_opcode_desc(KW_OP_ECDSA_SIGN_SHA256),
	    .in = q->in,
	    .in_len = sizeof(q->in),
	    .out = q->out,
	    .out_cap = sizeof(q->out),
	    .done = on_done,
	    .arg = s,
	};
	return q;
}

static void tick(struct kw_loop *loop, void *arg)
{
	(void)loop;
	(*(unsigned *)arg)++;
}

/* 300 signatures through 2 threads; the loop turns (a 1 ms timer fires) meanwhile. */
static void test_completions(void)
{
	struct kw_loop *loop;
	struct kwd_devpool *p;
	struct sink s;
	struct kw_timer t;
	unsigned ticks = 0;

	CHECK(kw_loop_new(&loop) == 0);
	CHECK(kwd_devpool_new(2, 1000, &p) == 0);
	CHECK_EQ(kwd_devpool_threads(p), 2);
	sink_init(&s, loop);
	for (unsigned i = 0; i < 300; i++) {
		struct req *q = new_req(&s, i);
		CHECK(kwd_devpool_submit(p, &q->r) == 0);
	}
	kw_timer_init(&t, tick, &ticks);
	uint64_t deadline = kw_now_ns() + 60ull * 1000000000;
	while (s.taken < 300 && kw_now_ns() < deadline) {
		if (!kw_timer_active(&t))
			kw_timer_start_ms(loop, &t, 1);
		kw_loop_run_once(loop, 100);
	}
	CHECK_EQ(s.taken, 300);
	CHECK_EQ(s.good, 300);
	CHECK(ticks > 0); /* the loop was never held by the device */
	struct kwd_devpool_stats st;
	kwd_devpool_stats(p, &st);
	CHECK_EQ(st.ops[KWD_DEV_OK], 300);
	CHECK_EQ(st.queued, 0);
	uint64_t b[KWD_HIST_BUCKETS + 1], sum = 0, n = 0;
	kwd_devpool_latency(p, KWD_DEV_OK, b, &sum);
	for (int i = 0; i <= KWD_HIST_BUCKETS; i++)
		n += b[i];
	CHECK_EQ(n, 300);
	CHECK(sum > 0);
	kw_timer_stop(loop, &t);
	kwd_devpool_free(p);
	sink_fini(&s, loop);
}

/* wait_queued waits (bounded) until p's queue holds n requests. */
static bool wait_queued(struct kwd_devpool *p, uint64_t n)
{
	struct kwd_devpool_stats st;
	for (int i = 0; i < 5000; i++) {
		kwd_devpool_stats(p, &st);
		if (st.queued == n)
			return true;
		usleep(1000);
	}
	return false;
}

/* A full queue refuses at once; what is queued still runs when the pool is freed. */
static void test_full_and_free(void)
{
	struct kw_loop *loop;
	struct kwd_devpool *p;
	struct sink s;
	struct req *q[4];

	CHECK(kw_loop_new(&loop) == 0);
	sink_init(&s, loop);
	gate(&s, true);
	CHECK(kwd_devpool_new(1, 2, &p) == 0);
	for (int i = 0; i < 4; i++)
		q[i] = new_req(&s, (unsigned)i);
	CHECK(kwd_devpool_submit(p, &q[0]->r) == 0);
	CHECK(wait_queued(p, 0)); /* the thread took it and waits at the gate */
	CHECK(kwd_devpool_submit(p, &q[1]->r) == 0);
	CHECK(kwd_devpool_submit(p, &q[2]->r) == 0);
	CHECK_EQ(kwd_devpool_submit(p, &q[3]->r), -EAGAIN);
	free(q[3]);
	struct kwd_devpool_stats st;
	kwd_devpool_stats(p, &st);
	CHECK_EQ(st.queued, 2);
	gate(&s, false);
	kwd_devpool_free(p); /* runs q[1] and q[2] before the thread ends */
	on_efd(loop, s.efd, KW_EV_READ, &s);
	CHECK_EQ(s.taken, 3);
	CHECK_EQ(s.good, 3);
	sink_fini(&s, loop);
}

/* A request the token refuses is an error of that request only, counted by result. */
static void test_errors_counted(void)
{
	struct kw_loop *loop;
	struct kwd_devpool *p;
	struct sink s;

	CHECK(kw_loop_new(&loop) == 0);
	sink_init(&s, loop);
	CHECK(kwd_devpool_new(1, 8, &p) == 0);
	struct req *bad = new_req(&s, 0);
	bad->r.desc = kw_opcode_desc(KW_OP_ED25519_SIGN); /* not this key's type */
	struct req *good = new_req(&s, 1);
	CHECK(kwd_devpool_submit(p, &bad->r) == 0);
	CHECK(kwd_devpool_submit(p, &good->r) == 0);
	sink_wait(&s, loop, 2);
	CHECK_EQ(s.taken, 2);
	CHECK_EQ(s.good, 1);
	CHECK_EQ(s.bad, 1);
	struct kwd_devpool_stats st;
	kwd_devpool_stats(p, &st);
	CHECK_EQ(st.ops[KWD_DEV_OK], 1);
	CHECK_EQ(st.ops[KWD_DEV_CRYPTO_ERROR] + st.ops[KWD_DEV_INTERNAL_ERROR], 1);
	kwd_devpool_free(p);
	sink_fini(&s, loop);
}

static bool always_cancelled(const struct kwd_devreq *r)
{
	(void)r;
	return true;
}

static bool never_cancelled(const struct kwd_devreq *r)
{
	(void)r;
	return false;
}

/*
 * A request whose submitter gave up on it (its connection closed) is not run
 * on the token: it comes back as an internal error, counted as cancelled and
 * kept out of the latency histogram; the others run as usual.
 */
static void test_cancelled_skipped(void)
{
	struct kw_loop *loop;
	struct kwd_devpool *p;
	struct sink s;

	CHECK(kw_loop_new(&loop) == 0);
	sink_init(&s, loop);
	CHECK(kwd_devpool_new(1, 16, &p) == 0);
	for (unsigned i = 0; i < 10; i++) {
		struct req *q = new_req(&s, i);
		q->r.cancelled = i % 2 ? always_cancelled : never_cancelled;
		CHECK(kwd_devpool_submit(p, &q->r) == 0);
	}
	sink_wait(&s, loop, 10);
	CHECK_EQ(s.taken, 10);
	CHECK_EQ(s.good, 5);
	CHECK_EQ(s.bad, 5);
	struct kwd_devpool_stats st;
	kwd_devpool_stats(p, &st);
	CHECK_EQ(st.ops[KWD_DEV_OK], 5);
	CHECK_EQ(st.ops[KWD_DEV_CANCELLED], 5);
	CHECK_EQ(st.ops[KWD_DEV_INTERNAL_ERROR], 0);
	uint64_t b[KWD_HIST_BUCKETS + 1], sum = 0, n = 0;
	kwd_devpool_latency(p, KWD_DEV_OK, b, &sum);
	for (int i = 0; i <= KWD_HIST_BUCKETS; i++)
		n += b[i];
	CHECK_EQ(n, 5);
	kwd_devpool_free(p);
	sink_fini(&s, loop);
}

/* Each request's own completion time, for test_slow_token. */
struct timed {
	struct kwd_devreq r;
	uint8_t in[32], out[KW_RESULT_MAX];
	uint64_t done_ns;
	atomic_int *ndone;
};

static void timed_done(struct kwd_devreq *r)
{
	struct timed *t = (struct timed *)r;
	t->done_ns = kw_now_ns();
	atomic_fetch_add(t->ndone, 1);
}

/*
 * A slow token (50 ms a signature, through p11_shim): each answer is handed
 * back when it is ready, not held for the next operation's burst.
 */
static void test_slow_token(const char *module)
{
	const char *shim = getenv("KW_P11_SHIM");
	struct kwd_p11_set *slow = NULL;
	struct kwd_devpool *p = NULL;
	struct timed t[3];
	atomic_int ndone = 0;
	char err[512];

	if (shim == NULL) {
		fprintf(stderr, "KW_P11_SHIM is not set: the slow-token test is skipped\n");
		return;
	}
	kwd_p11_set_unref(set); /* the shim shares SoftHSM2 with no other set */
	set = NULL;
	kwd_p11_wait_teardowns();
	setenv("KW_SHIM_REAL", module, 1);
	setenv("KW_SHIM_SIGN_DELAY_US", "50000", 1);
	const char *uris[] = {"pkcs11:token=kwdev?pin-value=" P11_PIN};
	struct kwd_p11_options o = {.module = shim, .uris = uris, .nuris = 1};
	CHECK(kwd_p11_load(&o, &slow, err, sizeof(err)) == 0);
	CHECK(kwd_devpool_new(1, 8, &p) == 0);
	if (slow == NULL || p == NULL)
		goto out;
	for (int i = 0; i < 3; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].r = (struct kwd_devreq){
		    .key = kwd_p11_set_key(slow, 0),
		    .desc = kw_opcode_desc(KW_OP_ECDSA_SIGN_SHA256),
		    .in = t[i].in,
		    .in_len = sizeof(t[i].in),
		    .out = t[i].out,
		    .out_cap = sizeof(t[i].out),
		    .done = timed_done,
		};
		t[i].ndone = &ndone;
	}
	for (int i = 0; i < 3; i++)
		CHECK(kwd_devpool_submit(p, &t[i].r) == 0);
	for (int i = 0; i < 10000 && atomic_load(&ndone) < 3; i++)
		usleep(1000);
	CHECK_EQ(atomic_load(&ndone), 3);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(t[i].r.error, KW_ERR_NONE);
	/* One signature apart (50 ms), with a generous margin: not handed back together. */
	CHECK(t[1].done_ns - t[0].done_ns > 25000000);
	CHECK(t[2].done_ns - t[1].done_ns > 25000000);
out:
	kwd_devpool_free(p);
	kwd_p11_set_unref(slow);
	kwd_p11_wait_teardowns();
	unsetenv("KW_SHIM_SIGN_DELAY_US");
}

int main(void)
{
	const char *module = p11_module();
	char *dir = NULL;
	char err[512];

	if (module == NULL) {
		fprintf(stderr, "SoftHSM2 is not installed (apt-get install softhsm2): skipped\n");
		return P11_SKIP;
	}
	p256 = gen_ec("P-256");
	dir = make_tmpdir();
	if (dir == NULL || p11_setup(dir) != 0 || p11_init_token("kwdev") != 0 ||
	    p11_import(dir, "kwdev", p256, "p256", "01") != 0) {
		fprintf(stderr, "cannot make a SoftHSM2 token (softhsm2-util): skipped\n");
		rm_tree(dir);
		return P11_SKIP;
	}
	const char *uris[] = {"pkcs11:token=kwdev?pin-value=" P11_PIN};
	struct kwd_p11_options o = {.module = module, .uris = uris, .nuris = 1};
	CHECK(kwd_p11_load(&o, &set, err, sizeof(err)) == 0);
	if (set != NULL) {
		test_completions();
		test_full_and_free();
		test_errors_counted();
		test_cancelled_skipped();
		test_slow_token(module);
	}
	kwd_p11_set_unref(set);
	EVP_PKEY_free(p256);
	kwd_p11_wait_teardowns();
	rm_tree(dir);
	CHECK_DONE();
}
