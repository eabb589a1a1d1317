/*
 * io.c - the provider's I/O thread (see io.h).
 *
 * Application threads append accepted ops to a queue and wake the loop
 * (kw_loop_wake). Each turn the thread takes the queue and submits every op
 * to the keyless backend, whose clients batch what the turn produced into
 * few writes and read answers on readiness. The thread holds a reference on
 * each queued op until the backend has taken its own.
 */
#include "io.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/loop.h"

struct kwp_io {
	const struct kwp_settings *settings;
	OSSL_LIB_CTX *libctx;
	struct kw_keyless_counters *counters;
	pid_t pid;
	struct kw_loop *loop;

	pthread_mutex_t mu;  /* guards queue, started, joined */
	struct kw_op *queue; /* submitted, not yet seen by the I/O thread (LIFO) */
	bool started;
	bool joined; /* the thread was stopped and joined (kwp_io_stop) */
	atomic_bool stopping;
	pthread_t thread;

	/* I/O thread only. */
	struct kw_backend *backend;
	struct kw_op *backlog, *backlog_tail; /* refused by a full backend: retried each turn */
	char *setup_error; /* set once by the I/O thread before any op completes */
	atomic_bool setup_failed;

	bool abandoned; /* in a forked child: descriptors closed (kwp_io_abandon) */
};

uint64_t kwp_io_deadline_ms(unsigned ms)
{
	return kw_now_ns() + (uint64_t)ms * 1000000u;
}

/* finish completes an op the backend never took, dropping the thread's reference. */
static void finish(struct kw_op *op, int status)
{
	kw_op_complete(op, status);
	kw_op_unref(op);
}

static void backlog_push(struct kwp_io *io, struct kw_op *op)
{
	op->next = NULL;
	if (io->backlog_tail != NULL)
		io->backlog_tail->next = op;
	else
		io->backlog = op;
	io->backlog_tail = op;
}

/* hand_over submits op to the backend: false when the backend is full (op kept). */
static bool hand_over(struct kwp_io *io, struct kw_op *op)
{
	int rc;

	if (atomic_load(&io->setup_failed)) {
		finish(op, -KW_ECONFIG);
		return true;
	}
	/* op->server >= 0 here is a pin (kwp_io_submit_to); the backend resets it. */
	if (op->server >= 0)
		rc = kw_backend_keyless_submit_to(io->backend, op, (size_t)op->server);
	else
		rc = kw_backend_submit(io->backend, op);
	if (rc == -EAGAIN)
		return false;
	if (rc < 0)
		finish(op, rc);
	else
		kw_op_unref(op); /* the backend holds its own reference now */
	return true;
}

/* ---- the thread ---- */

static int setup(struct kwp_io *io)
{
	const struct kwp_settings *s = io->settings;
	SSL_CTX *ctx = NULL;
	char err[512];
	int rc;

	if (kwp_settings_need_tls(s)) {
		ctx = kwp_settings_ssl_ctx(s, io->libctx, err, sizeof(err));
		if (ctx == NULL)
			goto fail;
	}
	struct kw_keyless_config cfg;
	if (kwp_settings_keyless_config(s, io->libctx, ctx, io->counters, &cfg, err, sizeof(err)) <
	    0) {
		SSL_CTX_free(ctx);
		goto fail;
	}
	rc = kw_backend_keyless_new(io->loop, &cfg, &io->backend);
	SSL_CTX_free(ctx);
	if (rc < 0) {
		snprintf(err, sizeof(err), "cannot set up keyserver connections: %s",
		         kw_strerror(rc));
		goto fail;
	}
	return 0;
fail:
	io->setup_error = strdup(err);
	atomic_store(&io->setup_failed, true);
	return -KW_ECONFIG;
}

/* take_queue returns the submitted ops in submission order. */
static struct kw_op *take_queue(struct kwp_io *io)
{
	struct kw_op *lifo, *fifo = NULL;

	pthread_mutex_lock(&io->mu);
	lifo = io->queue;
	io->queue = NULL;
	pthread_mutex_unlock(&io->mu);
	while (lifo != NULL) {
		struct kw_op *next = lifo->next;
		lifo->next = fifo;
		fifo = lifo;
		lifo = next;
	}
	return fifo;
}

static void *io_main(void *arg)
{
	struct kwp_io *io = arg;

	(void)setup(io);
	while (!atomic_load(&io->stopping)) {
		struct kw_op *retry = io->backlog, *op = take_queue(io);
		io->backlog = io->backlog_tail = NULL;
		while (retry != NULL) {
			struct kw_op *next = retry->next;
			if (!hand_over(io, retry))
				backlog_push(io, retry);
			retry = next;
		}
		while (op != NULL) {
			struct kw_op *next = op->next;
			op->next = NULL;
			if (!hand_over(io, op))
				backlog_push(io, op);
			op = next;
		}
		/* A backlog only forms if the backend's cap is below the callers' (never by
		 * design). */
		if (kw_loop_run_once(io->loop, io->backlog != NULL ? 1 : -1) < 0)
			usleep(1000); /* epoll failed (EINTR is handled inside); don't spin */
	}
	/* Freeing the backend completes what it holds with -KW_ECANCELED. */
	kw_backend_free(io->backend);
	io->backend = NULL;
	for (struct kw_op *op = io->backlog, *next; op != NULL; op = next) {
		next = op->next;
		finish(op, -KW_ECANCELED);
	}
	io->backlog = io->backlog_tail = NULL;
	for (struct kw_op *op = take_queue(io), *next; op != NULL; op = next) {
		next = op->next;
		finish(op, -KW_ECANCELED);
	}
	/* Runs the clients' deferred frees. */
	kw_loop_run_once(io->loop, 0);
	OPENSSL_thread_stop();
	return NULL;
}

/* ---- public ---- */

int kwp_io_new(const struct kwp_settings *s, OSSL_LIB_CTX *libctx,
               struct kw_keyless_counters *counters, struct kwp_io **out)
{
	struct kwp_io *io = calloc(1, sizeof(*io));
	int rc;

	*out = NULL;
	if (io == NULL)
		return -ENOMEM;
	io->settings = s;
	io->libctx = libctx;
	io->counters = counters;
	io->pid = getpid();
	pthread_mutex_init(&io->mu, NULL);
	atomic_init(&io->stopping, false);
	atomic_init(&io->setup_failed, false);
	if ((rc = kw_loop_new(&io->loop)) < 0) {
		pthread_mutex_destroy(&io->mu);
		free(io);
		return rc;
	}
	*out = io;
	return 0;
}

static int start_thread(struct kwp_io *io)
{
	sigset_t all, old;
	pthread_attr_t attr;
	int rc;

	/* The application's signals are for its own threads, never for ours. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	rc = pthread_create(&io->thread, &attr, io_main, io);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

static int enqueue(struct kwp_io *io, struct kw_op *op, int server)
{
	int rc = 0;

	pthread_mutex_lock(&io->mu);
	if (atomic_load(&io->stopping))
		rc = -KW_ECANCELED;
	else if (!io->started) {
		rc = start_thread(io);
		if (rc == 0)
			io->started = true;
	}
	if (rc == 0) {
		kw_op_accept(op); /* the thread's reference until the backend takes its own */
		op->server = server;
		op->next = io->queue;
		io->queue = op;
	}
	pthread_mutex_unlock(&io->mu);
	if (rc == 0)
		kw_loop_wake(io->loop);
	return rc;
}

int kwp_io_submit(struct kwp_io *io, struct kw_op *op)
{
	return enqueue(io, op, -1);
}

int kwp_io_submit_to(struct kwp_io *io, struct kw_op *op, int server)
{
	return enqueue(io, op, server < 0 ? 0 : server);
}

const char *kwp_io_setup_error(struct kwp_io *io)
{
	return atomic_load(&io->setup_failed) ? io->setup_error : NULL;
}

pid_t kwp_io_pid(const struct kwp_io *io)
{
	return io->pid;
}

void kwp_io_stop(struct kwp_io *io)
{
	pthread_mutex_lock(&io->mu);
	bool join = io->started && !io->joined;
	io->joined = io->joined || io->started;
	atomic_store(&io->stopping, true);
	pthread_mutex_unlock(&io->mu);
	if (join) {
		kw_loop_wake(io->loop);
		pthread_join(io->thread, NULL);
	}
}

void kwp_io_free(struct kwp_io *io)
{
	if (io == NULL)
		return;
	kwp_io_stop(io);
	kw_loop_free(io->loop);
	pthread_mutex_destroy(&io->mu);
	free(io->setup_error);
	free(io);
}

void kwp_io_abandon(struct kwp_io *io)
{
	/*
	 * Only descriptors are reclaimed, with close(2): closing our copy of a
	 * socket never writes to it, while SSL_shutdown would put a close_notify
	 * into the parent's TLS stream. Memory stays: the thread may have been
	 * stopped by fork anywhere, holding locks or halfway through a list.
	 */
	if (io->abandoned)
		return;
	io->abandoned = true;
	if (io->backend != NULL && kw_backend_is_keyless(io->backend))
		kw_backend_keyless_forget_fds(io->backend);
	kw_loop_forget_fds(io->loop);
}
