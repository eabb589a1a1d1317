/*
 * remote.c - the provider's I/O thread (see remote.h).
 *
 * Application threads append ops to a mutex-protected queue and wake the
 * loop (kw_loop_wake). The I/O thread drains the queue each turn and sends
 * each op on one of `connections` kw_clients of a keyserver, round-robin;
 * the clients batch what a turn produced into few writes. An op whose
 * keyserver cannot be reached, or does not hold the key, is tried on the
 * next keyserver while its deadline allows. Ops refused because every
 * connection of a keyserver is full wait in a backlog retried each turn.
 */
#include "remote.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "keyway/client.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/loop.h"

/* A keyserver that failed is skipped this long while another one is left to try. */
#define DOWN_NS (1000ull * 1000 * 1000)

struct server {
	struct kw_client **conns;
	unsigned next_conn;
	uint64_t down_until_ns;
};

struct kwp_remote {
	const struct kwp_settings *settings;
	OSSL_LIB_CTX *libctx;
	pid_t pid;
	struct kw_loop *loop;

	pthread_mutex_t mu;   /* guards queue, started, stopping */
	struct kwp_op *queue; /* submitted, not yet seen by the I/O thread (LIFO) */
	bool started;
	atomic_bool stopping;
	pthread_t thread;

	/* I/O thread only. */
	SSL_CTX *ssl_ctx;
	struct server *servers;
	size_t nservers;
	unsigned next_server;
	struct kwp_op *backlog; /* refused with -EAGAIN: retried each turn */
	char *setup_error;      /* set once by the I/O thread before any op completes */
	atomic_bool setup_failed;
};

uint64_t kwp_deadline_after_ms(unsigned ms)
{
	return kw_now_ns() + (uint64_t)ms * 1000000u;
}

/* ---- ops ---- */

struct kwp_op *kwp_op_new(uint8_t opcode, const uint8_t *ski, const uint8_t *payload, size_t len)
{
	struct kwp_op *op = calloc(1, sizeof(*op));
	pthread_condattr_t ca;

	if (op == NULL)
		return NULL;
	op->in = malloc(len ? len : 1);
	if (op->in == NULL) {
		free(op);
		return NULL;
	}
	if (len)
		memcpy(op->in, payload, len);
	op->in_len = len;
	op->opcode = opcode;
	if (ski != NULL) {
		op->has_ski = true;
		memcpy(op->ski, ski, KW_SKI_LEN);
	}
	op->server = -1;
	op->last_server = -1;
	atomic_init(&op->refs, 1);
	pthread_mutex_init(&op->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&op->cv, &ca);
	pthread_condattr_destroy(&ca);
	return op;
}

void kwp_op_put(struct kwp_op *op)
{
	if (op == NULL || atomic_fetch_sub(&op->refs, 1) != 1)
		return;
	OPENSSL_cleanse(op->in, op->in_len);
	free(op->in);
	if (op->out != NULL)
		OPENSSL_cleanse(op->out, op->out_len);
	free(op->out);
	pthread_mutex_destroy(&op->mu);
	pthread_cond_destroy(&op->cv);
	free(op);
}

int kwp_op_wait(struct kwp_op *op, uint64_t deadline_ns)
{
	struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
	                      .tv_nsec = (long)(deadline_ns % 1000000000u)};
	int rc = 0;

	pthread_mutex_lock(&op->mu);
	while (!op->done) {
		if (pthread_cond_timedwait(&op->cv, &op->mu, &ts) == ETIMEDOUT && !op->done) {
			op->abandoned = true;
			rc = -KW_ETIMEOUT;
			break;
		}
	}
	pthread_mutex_unlock(&op->mu);
	return rc;
}

/* complete finishes op on the I/O thread and drops the thread's reference. */
static void complete(struct kwp_op *op, int status)
{
	kwp_op_done_fn fn;

	pthread_mutex_lock(&op->mu);
	op->status = status;
	op->done_ns = kw_now_ns();
	op->done = true;
	fn = op->abandoned ? NULL : op->done_fn;
	pthread_cond_broadcast(&op->cv);
	pthread_mutex_unlock(&op->mu);
	if (fn != NULL)
		fn(op, op->done_arg);
	kwp_op_put(op);
}

static bool abandoned(struct kwp_op *op)
{
	pthread_mutex_lock(&op->mu);
	bool a = op->abandoned;
	pthread_mutex_unlock(&op->mu);
	return a;
}

static void set_detail(struct kwp_op *op, struct kwp_remote *r, int server, const char *fmt,
                       const char *why)
{
	op->last_server = server;
	snprintf(op->detail, sizeof(op->detail), fmt, r->settings->server_texts[server], why);
}

/* ---- dispatch (I/O thread) ---- */

static void dispatch(struct kwp_remote *r, struct kwp_op *op);

/* is_transport tells failures of the link (another keyserver may do) from answers. */
static bool is_transport(int status)
{
	return status != 0 && status != -KW_EREMOTE && status != -KW_ETIMEOUT &&
	       status != -KW_ECANCELED && status != -KW_ECONFIG;
}

/* final_status is what op reports once no keyserver is left to try. */
static int final_status(const struct kwp_op *op)
{
	if (op->remote_error != 0)
		return -KW_EREMOTE; /* a keyserver we reached said why: the most useful answer */
	return op->status != 0 ? op->status : -KW_ECLOSED;
}

static void on_result(void *arg, const struct kw_client_result *res)
{
	struct kwp_op *op = arg;
	struct kwp_remote *r = op->remote;
	int server = op->last_server;

	if (res->status == 0) {
		op->out = malloc(res->payload_len ? res->payload_len : 1);
		if (op->out == NULL) {
			complete(op, -ENOMEM);
			return;
		}
		memcpy(op->out, res->payload, res->payload_len);
		op->out_len = res->payload_len;
		complete(op, 0);
		return;
	}
	if (res->status == -KW_EREMOTE) {
		op->remote_error = res->remote_error;
		/* Keys may be spread over keyservers: another one may hold it. */
		if (res->remote_error == KW_ERR_KEY_NOT_FOUND)
			dispatch(r, op);
		else
			complete(op, -KW_EREMOTE);
		return;
	}
	if (res->status == -KW_ETIMEOUT) {
		set_detail(op, r, server, "%s: %s", "no answer in time");
		complete(op, -KW_ETIMEOUT);
		return;
	}
	if (!is_transport(res->status)) {
		complete(op, res->status);
		return;
	}
	r->servers[server].down_until_ns = kw_now_ns() + DOWN_NS;
	set_detail(op, r, server, "%s: %s",
	           res->status == -KW_ETLS ? "TLS failure (is its certificate signed by the "
	                                     "configured ca, for the name in servers or "
	                                     "server_name?)"
	                                   : kw_strerror(res->status));
	op->status = res->status;
	dispatch(r, op);
}

/* pick_server returns the next keyserver op may use, or -1 when none is left. */
static int pick_server(struct kwp_remote *r, struct kwp_op *op)
{
	uint64_t now = kw_now_ns();
	int fallback = -1;

	if (op->server >= 0)
		return (size_t)op->server < r->nservers && !(op->tried & (1u << op->server))
		           ? op->server
		           : -1;
	for (size_t k = 0; k < r->nservers; k++) {
		int i = (int)((op->start + k) % r->nservers);
		if (op->tried & (1u << i))
			continue;
		if (r->servers[i].down_until_ns <= now)
			return i;
		if (fallback < 0)
			fallback = i; /* every one left is down: try one anyway */
	}
	return fallback;
}

/* send_to submits op on one of server's connections: 0, -EAGAIN (all full) or an error. */
static int send_to(struct kwp_remote *r, int server, struct kwp_op *op)
{
	struct server *s = &r->servers[server];
	unsigned n = r->settings->connections;
	struct kw_msg m = {.has_opcode = true, .opcode = op->opcode};
	int rc = -EAGAIN;

	m.payload.data = op->in;
	m.payload.len = op->in_len;
	if (op->has_ski) {
		m.has_ski = true;
		memcpy(m.ski, op->ski, KW_SKI_LEN);
	}
	op->remote = r;
	op->last_server = server;
	for (unsigned k = 0; k < n && rc == -EAGAIN; k++) {
		unsigned i = (s->next_conn + k) % n;
		rc = kw_client_submit(s->conns[i], &m, on_result, op, NULL);
		if (rc == 0)
			s->next_conn = (i + 1) % n;
	}
	return rc;
}

static void dispatch(struct kwp_remote *r, struct kwp_op *op)
{
	if (abandoned(op)) {
		complete(op, -KW_ETIMEOUT);
		return;
	}
	if (atomic_load(&r->setup_failed)) {
		snprintf(op->detail, sizeof(op->detail), "%s", r->setup_error);
		complete(op, -KW_ECONFIG);
		return;
	}
	for (;;) {
		if (kw_now_ns() >= op->deadline_ns) {
			if (op->detail[0] == '\0')
				snprintf(op->detail, sizeof(op->detail), "no answer in time");
			complete(op, is_transport(op->status) ? op->status : -KW_ETIMEOUT);
			return;
		}
		int server = pick_server(r, op);
		if (server < 0) {
			complete(op, final_status(op));
			return;
		}
		int rc = send_to(r, server, op);
		if (rc == -EAGAIN) {
			op->next = r->backlog;
			r->backlog = op;
			return;
		}
		op->tried |= 1u << server;
		if (rc == 0)
			return;
		set_detail(op, r, server, "%s: %s", kw_strerror(rc));
		op->status = rc;
	}
}

static void dispatch_new(struct kwp_remote *r, struct kwp_op *op)
{
	op->start = (int)(r->next_server++ % (r->nservers ? r->nservers : 1));
	dispatch(r, op);
}

/* ---- the thread ---- */

static int setup(struct kwp_remote *r)
{
	const struct kwp_settings *s = r->settings;
	char err[512];

	r->nservers = s->nservers;
	if (kwp_settings_need_tls(s)) {
		r->ssl_ctx = kwp_settings_ssl_ctx(s, r->libctx, err, sizeof(err));
		if (r->ssl_ctx == NULL)
			goto fail;
	}
	r->servers = calloc(r->nservers ? r->nservers : 1, sizeof(*r->servers));
	if (r->servers == NULL)
		goto nomem;
	for (size_t i = 0; i < r->nservers; i++) {
		struct server *sv = &r->servers[i];
		sv->conns = calloc(s->connections, sizeof(*sv->conns));
		if (sv->conns == NULL)
			goto nomem;
		for (unsigned k = 0; k < s->connections; k++) {
			struct kw_client_config cfg = {
			    .addr = s->addrs[i],
			    .ssl_ctx = s->addrs[i].is_unix ? NULL : r->ssl_ctx,
			    .server_name = s->server_name,
			    .timeout_ms = s->timeout_ms,
			    .connect_timeout_ms = s->timeout_ms,
			};
			int rc = kw_client_new(r->loop, &cfg, &sv->conns[k]);
			if (rc < 0) {
				snprintf(err, sizeof(err), "keyserver %s: %s", s->server_texts[i],
				         kw_strerror(rc));
				goto fail;
			}
		}
	}
	return 0;
nomem:
	snprintf(err, sizeof(err), "out of memory");
fail:
	r->setup_error = strdup(err);
	atomic_store(&r->setup_failed, true);
	return -KW_ECONFIG;
}

static void teardown(struct kwp_remote *r)
{
	/* Freeing a client completes its pending ops with -KW_ECANCELED. */
	for (size_t i = 0; r->servers != NULL && i < r->nservers; i++) {
		for (unsigned k = 0; r->servers[i].conns != NULL && k < r->settings->connections;
		     k++)
			kw_client_free(r->servers[i].conns[k]);
		free(r->servers[i].conns);
	}
	free(r->servers);
	r->servers = NULL;
	while (r->backlog != NULL) {
		struct kwp_op *op = r->backlog;
		r->backlog = op->next;
		op->next = NULL;
		complete(op, -KW_ECANCELED);
	}
	/* Runs the clients' deferred frees. */
	kw_loop_run_once(r->loop, 0);
	SSL_CTX_free(r->ssl_ctx);
	r->ssl_ctx = NULL;
}

/* take_queue returns the submitted ops in submission order. */
static struct kwp_op *take_queue(struct kwp_remote *r)
{
	struct kwp_op *lifo, *fifo = NULL;

	pthread_mutex_lock(&r->mu);
	lifo = r->queue;
	r->queue = NULL;
	pthread_mutex_unlock(&r->mu);
	while (lifo != NULL) {
		struct kwp_op *next = lifo->next;
		lifo->next = fifo;
		fifo = lifo;
		lifo = next;
	}
	return fifo;
}

/* wait_ms is how long the loop may sleep: until the earliest backlog deadline. */
static int wait_ms(struct kwp_remote *r)
{
	uint64_t now = kw_now_ns(), first = UINT64_MAX;

	for (struct kwp_op *op = r->backlog; op != NULL; op = op->next)
		if (op->deadline_ns < first)
			first = op->deadline_ns;
	if (first == UINT64_MAX)
		return -1;
	if (first <= now)
		return 0;
	/* Backlogged ops also wait for a free slot, which a completion makes: poll gently. */
	uint64_t ms = (first - now + 999999) / 1000000;
	return ms > 10 ? 10 : (int)ms;
}

static void *io_main(void *arg)
{
	struct kwp_remote *r = arg;

	(void)setup(r);
	while (!atomic_load(&r->stopping)) {
		struct kwp_op *op = take_queue(r), *retry = r->backlog;
		r->backlog = NULL;
		while (retry != NULL) {
			struct kwp_op *next = retry->next;
			retry->next = NULL;
			dispatch(r, retry);
			retry = next;
		}
		while (op != NULL) {
			struct kwp_op *next = op->next;
			op->next = NULL;
			dispatch_new(r, op);
			op = next;
		}
		if (kw_loop_run_once(r->loop, wait_ms(r)) < 0)
			usleep(1000); /* epoll failed (EINTR is handled inside); don't spin */
	}
	teardown(r);
	/* Ops submitted while stopping. */
	for (struct kwp_op *op = take_queue(r), *next; op != NULL; op = next) {
		next = op->next;
		op->next = NULL;
		complete(op, -KW_ECANCELED);
	}
	OPENSSL_thread_stop();
	return NULL;
}

/* ---- public ---- */

int kwp_remote_new(const struct kwp_settings *s, OSSL_LIB_CTX *libctx, struct kwp_remote **out)
{
	struct kwp_remote *r = calloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	if (r == NULL)
		return -ENOMEM;
	r->settings = s;
	r->libctx = libctx;
	r->pid = getpid();
	pthread_mutex_init(&r->mu, NULL);
	atomic_init(&r->stopping, false);
	atomic_init(&r->setup_failed, false);
	if ((rc = kw_loop_new(&r->loop)) < 0) {
		pthread_mutex_destroy(&r->mu);
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

static int start_thread(struct kwp_remote *r)
{
	sigset_t all, old;
	pthread_attr_t attr;
	int rc;

	/* The application's signals are for its own threads, never for ours. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	rc = pthread_create(&r->thread, &attr, io_main, r);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

int kwp_remote_submit(struct kwp_remote *r, struct kwp_op *op)
{
	int rc = 0;

	pthread_mutex_lock(&r->mu);
	if (!r->started) {
		rc = start_thread(r);
		if (rc == 0)
			r->started = true;
	}
	if (rc == 0) {
		atomic_fetch_add(&op->refs, 1);
		op->submit_ns = kw_now_ns();
		op->next = r->queue;
		r->queue = op;
	}
	pthread_mutex_unlock(&r->mu);
	if (rc == 0)
		kw_loop_wake(r->loop);
	return rc;
}

const char *kwp_remote_setup_error(struct kwp_remote *r)
{
	return atomic_load(&r->setup_failed) ? r->setup_error : NULL;
}

pid_t kwp_remote_pid(const struct kwp_remote *r)
{
	return r->pid;
}

void kwp_remote_free(struct kwp_remote *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	bool started = r->started;
	atomic_store(&r->stopping, true);
	pthread_mutex_unlock(&r->mu);
	if (started) {
		kw_loop_wake(r->loop);
		pthread_join(r->thread, NULL);
	}
	kw_loop_free(r->loop);
	pthread_mutex_destroy(&r->mu);
	free(r->setup_error);
	free(r);
}

void kwp_remote_abandon(struct kwp_remote *r)
{
	(void)r; /* deliberately nothing: see remote.h */
}
