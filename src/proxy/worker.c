/*
 * worker.c - a worker thread: its loop, listener, ASYNC job pool, offload
 * backend, poller and wait lists, and the connections it accepts.
 *
 * Each loop turn first resumes the connections the wait queue holds
 * (waitq.c), then lets the poller choose the sleep (poller.c). At accept
 * the worker gives each connection its certificate set's SSL and its mode
 * table (respond or upstream), so conn.c names neither.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/err.h>

#include "keyway/backend.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/provider_api.h"
#include "conn.h"
#include "poller.h"
#include "quic_listen.h"
#include "respond.h"
#include "tlsctx.h"
#include "upstream.h"
#include "waitq.h"
#include "worker.h"

#define ACCEPT_BATCH 64
#define JOB_PREWARM 16
#define ACCEPT_PAUSE_MS 100

/* ssl_new makes a new connection's SSL from the current certificate set. */
static SSL *ssl_new(struct kpx_worker *w)
{
	/* A SIGHUP published another set: take it for this and later connections. */
	if (w->tls == NULL || kpx_tls_generation() != w->tls_gen) {
		struct kpx_tls *t = kpx_tls_current(&w->tls_gen);
		kpx_tls_unref(w->tls);
		w->tls = t;
	}
	return w->tls != NULL ? kpx_tls_ssl_new(w->tls) : NULL;
}

/*
 * accept_lost: neither a timer nor the listener's watch could be armed. The
 * loop then retries the watch every turn, with its wait bounded by
 * ACCEPT_PAUSE_MS (accept_retry), so the worker accepts again as soon as the
 * loop can take the watch.
 */
static void accept_lost(struct kpx_worker *w)
{
	if (!w->accept_lost)
		kw_error("worker %u: cannot watch the listener nor arm a timer; retrying every "
		         "%d ms",
		         w->id, ACCEPT_PAUSE_MS);
	w->accept_lost = true;
}

/* accept_retry re-watches a lost listener, else bounds the coming wait so it tries again. */
static void accept_retry(struct kpx_worker *w)
{
	if (!w->accept_lost)
		return;
	if (w->lio.fd >= 0 || kw_io_start(w->loop, &w->lio, w->lfd, KW_EV_READ) == 0) {
		w->accept_lost = false;
		kw_info("worker %u: watching the listener again", w->id);
		return;
	}
	kw_loop_wake_within(w->loop, ACCEPT_PAUSE_MS);
}

static void accept_resume(struct kw_loop *loop, void *arg)
{
	struct kpx_worker *w = arg;
	if (atomic_load_explicit(&w->stop, memory_order_relaxed) || w->lio.fd >= 0)
		return;
	/* Still cannot watch the listener: try again later rather than never accept again.
	 * The timer has just left the heap, so re-arming it needs no memory. */
	if (kw_io_start(loop, &w->lio, w->lfd, KW_EV_READ) < 0 &&
	    kw_timer_start_ms(loop, &w->accept_pause, ACCEPT_PAUSE_MS) < 0)
		accept_lost(w);
}

/* pause_accepts rests the listener for ACCEPT_PAUSE_MS (out of descriptors or memory). */
static void pause_accepts(struct kpx_worker *w)
{
	kw_io_stop(w->loop, &w->lio);
	/* Without the timer nothing would watch the listener again: better a busy
	 * listener than a worker that never accepts again. */
	if (kw_timer_start_ms(w->loop, &w->accept_pause, ACCEPT_PAUSE_MS) < 0 &&
	    kw_io_start(w->loop, &w->lio, w->lfd, KW_EV_READ) < 0)
		accept_lost(w);
}

/*
 * on_accept takes a --max-connections slot for each connection (process-wide);
 * over the limit the connection is accepted and closed at once (counted and
 * logged), so the backlog never fills with clients that wait for nothing.
 * Out of descriptors, accepting pauses for ACCEPT_PAUSE_MS: the listener is
 * level-triggered and would otherwise spin.
 */
static void on_accept(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_worker *w = arg;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int cfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				kw_warn("worker %u: accept: %s; pausing accepts for %d ms", w->id,
				        strerror(errno), ACCEPT_PAUSE_MS);
				pause_accepts(w);
			} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				kw_warn("worker %u: accept: %s", w->id, strerror(errno));
			}
			return;
		}
		if (!kpx_conn_take_slot(w->opt->max_connections)) {
			kpx_conn_refuse(w, cfd, (struct sockaddr *)&ss);
			continue;
		}
		kw_set_nodelay(cfd);
		kpx_conn_accept(w, cfd, ssl_new(w), (struct sockaddr *)&ss, len,
		                w->opt->upstream != NULL ? &kpx_upstream_ops : &kpx_respond_ops);
	}
}

/* capacity_freed: the poller reaped completions, so backend slots came free. */
static void capacity_freed(void *arg)
{
	struct kpx_worker *w = arg;
	kpx_waitq_capacity_freed(&w->waitq);
}

int kpx_worker_init(struct kpx_worker *w, unsigned id, const struct kpx_options *opt, int lfd)
{
	int rc;
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->opt = opt;
	w->lfd = lfd;
	w->qfd = -1;
	if ((rc = kw_loop_new(&w->loop)) < 0)
		return rc;
	/* What runs on the loop: the listener, the connections, the wait lists, the poller. */
	kw_io_init(&w->lio, on_accept, w);
	kw_timer_init(&w->accept_pause, accept_resume, w);
	kw_list_init(&w->conns);
	kpx_waitq_init(&w->waitq, w->loop, &w->m.async_queue_wakeups);
	kpx_poller_init(&w->poller, w->loop, opt->poll, opt->poll_interval_us, opt->poll_threshold,
	                &w->m, capacity_freed, w);
	return 0;
}

/* make_backend makes the worker's backend; *ring: it has completion rings to reap. */
static int make_backend(struct kpx_worker *w, bool *ring)
{
	const struct kpx_options *o = w->opt;
	int rc;
	*ring = false;
	switch (o->backend) {
	case KPX_BACKEND_THREADS:
		rc = kw_backend_threads_new(&w->backend, o->crypto_threads, o->ring_size);
		*ring = rc == 0;
		return rc;
	case KPX_BACKEND_INLINE:
		return kw_backend_inline_new(&w->backend);
	default: {
		/* The provider's keyless backend on this loop: this worker's own connections. */
		char why[512];
		rc = kw_provider_keyless_backend(o->provider, w->loop, &w->backend, why,
		                                 sizeof(why));
		if (rc < 0)
			kw_error("worker %u: %s", w->id, why);
		return rc;
	}
	}
}

/* close_conns closes the worker's connections for the drain: only those waiting for a
 * client request (idle keep-alive) or for a job (which may never come), or all. */
static void close_conns(struct kpx_worker *w, bool only_waiting)
{
	struct kw_list *l = w->conns.next;
	while (l != &w->conns) {
		struct kpx_conn *c = kw_container_of(l, struct kpx_conn, node);
		l = l->next;
		if (!only_waiting || c->counted_idle || c->waiter.waiting == KPX_WAIT_JOB)
			kpx_conn_close_why(c, KPX_R_DRAIN);
	}
}

static void drain_step(struct kpx_worker *w)
{
	/* Stop accepting; idle keep-alive connections go now, the rest finish their request
	 * (relayed ones run on until --drain-timeout). */
	if (w->lio.fd >= 0)
		kw_io_stop(w->loop, &w->lio);
	kw_timer_stop(w->loop, &w->accept_pause);
	w->accept_lost = false;
	close_conns(w, true);
	kpx_quic_drain(w);
}

/* run turns the loop until the worker is stopped and drained, or the loop fails. */
static void run(struct kpx_worker *w)
{
	uint64_t drain_deadline = 0;

	for (;;) {
		if (atomic_load_explicit(&w->stop, memory_order_acquire)) {
			if (drain_deadline == 0) {
				drain_deadline =
				    kw_now_ns() + (uint64_t)w->opt->drain_timeout_s * 1000000000ull;
				drain_step(w);
			}
			if (w->nconns == 0 && kpx_quic_conns(w) == 0)
				return;
			if (kw_now_ns() > drain_deadline) {
				close_conns(w,
				            false); /* paused ones close when their op completes */
				kpx_quic_close_all(w);
			}
		}
		kpx_waitq_run(&w->waitq, kpx_conn_resume_waiter);
		int timeout = kpx_poller_before_sleep(&w->poller);
		if (drain_deadline == 0)
			accept_retry(w);
		if (kpx_waitq_pending(&w->waitq))
			timeout = 0;
		if (drain_deadline != 0 && (timeout < 0 || timeout > 10))
			timeout = 10;
		int rc = kw_loop_run_once(w->loop, timeout);
		kpx_poller_after_wake(&w->poller);
		if (rc < 0) {
			kw_error("worker %u: event loop failed: %s", w->id, kw_strerror(rc));
			return;
		}
	}
}

/* finish closes what is left, lets ops still out complete, and frees the thread's state. */
static void finish(struct kpx_worker *w)
{
	close_conns(w, false);
	/* Ops still out complete (or are cancelled) into connections that wait for them. */
	while (w->nconns > 0 && w->backend != NULL && kw_backend_inflight_all(w->backend) > 0) {
		kpx_poller_poll(&w->poller, KPX_TRIG_BUSY);
		kpx_waitq_run(&w->waitq, kpx_conn_resume_waiter);
		kw_loop_run_once(w->loop, 1);
	}
	kpx_quic_stop(w);
	kw_loop_run_once(w->loop, 0); /* run deferred frees */
	kpx_poller_cleanup(&w->poller);
	kw_io_stop(w->loop, &w->lio);
	kw_timer_stop(w->loop, &w->accept_pause);
	kw_backend_bind_thread(NULL);
	kw_backend_free(w->backend);
	w->backend = NULL;
	kpx_tls_unref(w->tls);
	w->tls = NULL;
	if (w->opt->async)
		ASYNC_cleanup_thread();
	kw_op_compute_thread_cleanup();
	OPENSSL_thread_stop();
}

static void *worker_main(void *arg)
{
	struct kpx_worker *w = arg;
	const struct kpx_options *o = w->opt;
	bool ring;
	int rc;

	kpx_waitq_bind_thread(&w->waitq);
	if (o->async &&
	    ASYNC_init_thread(o->async_jobs,
	                      o->async_jobs < JOB_PREWARM ? o->async_jobs : JOB_PREWARM) != 1)
		kw_warn("worker %u: cannot prepare the ASYNC job pool; jobs are made on demand",
		        w->id);
	if ((rc = make_backend(w, &ring)) < 0) {
		kw_error("worker %u: cannot start the %s backend: %s", w->id,
		         o->backend == KPX_BACKEND_THREADS  ? "threads"
		         : o->backend == KPX_BACKEND_INLINE ? "inline"
		                                            : "keyless",
		         kw_strerror(rc));
		kill(getpid(), SIGTERM);
		return NULL;
	}
	kw_backend_bind_thread(w->backend);
	int qfd = w->qfd;
	w->qfd = -1; /* the endpoint owns it from here, started or not */
	if ((rc = kpx_poller_start(&w->poller, w->backend, ring)) < 0 ||
	    (rc = kw_io_start(w->loop, &w->lio, w->lfd, KW_EV_READ)) < 0 ||
	    (qfd >= 0 && (rc = kpx_quic_start(w, qfd)) < 0)) {
		kw_error("worker %u: %s", w->id, kw_strerror(rc));
		kill(getpid(), SIGTERM);
	} else {
		run(w);
	}
	finish(w);
	return NULL;
}

int kpx_worker_start(struct kpx_worker *w)
{
	sigset_t all, old;
	sigfillset(&all);
	/* Workers take no signals: the main thread reads them from a signalfd. */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = -pthread_create(&w->tid, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0) {
		w->started = true;
		char name[16];
		snprintf(name, sizeof(name), "kw-worker-%u", w->id);
		pthread_setname_np(w->tid, name);
	}
	return rc;
}

void kpx_worker_stop(struct kpx_worker *w)
{
	atomic_store_explicit(&w->stop, true, memory_order_release);
	kw_loop_wake(w->loop);
}

void kpx_worker_join(struct kpx_worker *w)
{
	if (w->started)
		pthread_join(w->tid, NULL);
	w->started = false;
}

void kpx_worker_cleanup(struct kpx_worker *w)
{
	if (w->lfd >= 0)
		close(w->lfd);
	w->lfd = -1;
	if (w->qfd >= 0)
		close(w->qfd);
	w->qfd = -1;
	kw_loop_free(w->loop);
	w->loop = NULL;
	kpx_waitq_cleanup(&w->waitq);
}
