/*
 * worker.c - a worker thread: its loop, listener, ASYNC job pool, offload
 * backend, the async queue and the wait lists.
 *
 * The async queue is QTLS's application-defined queue: completions run on
 * this thread (the loop polls the backend), the SSL async callback appends
 * the connection, and the loop resumes everything queued before it waits
 * again, so a notification costs no system call.
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
#include "proxy.h"
#include "tlsctx.h"

#define ACCEPT_BATCH 64
#define JOB_PREWARM 16
#define ACCEPT_PAUSE_MS 100

static _Thread_local struct kpx_worker *current;

struct kpx_worker *kpx_worker_current(void)
{
	return current;
}

static struct kpx_list *wait_list(struct kpx_worker *w, enum kpx_wait which)
{
	switch (which) {
	case KPX_WAIT_ASYNCQ:
		return &w->asyncq;
	case KPX_WAIT_JOB:
		return &w->job_wait;
	case KPX_WAIT_CAPACITY:
		return &w->cap_wait;
	default:
		return NULL;
	}
}

void kpx_wait_off(struct kpx_conn *c)
{
	if (c->waiting != KPX_WAIT_NONE) {
		kpx_list_del(&c->wait);
		c->waiting = KPX_WAIT_NONE;
	}
}

void kpx_wait_on(struct kpx_conn *c, enum kpx_wait which)
{
	kpx_wait_off(c);
	kpx_list_add_tail(wait_list(c->w, which), &c->wait);
	c->waiting = which;
}

static struct kpx_conn *conn_of_wait(struct kpx_list *l)
{
	return (struct kpx_conn *)((char *)l - offsetof(struct kpx_conn, wait));
}

void kpx_job_freed(struct kpx_worker *w)
{
	if (kpx_list_empty(&w->job_wait))
		return;
	/* One job came back, so one waiter can have it; the async queue runs it this turn. */
	struct kpx_conn *c = conn_of_wait(w->job_wait.next);
	kpx_wait_on(c, KPX_WAIT_ASYNCQ);
}

void kpx_set_active(struct kpx_conn *c, bool active)
{
	if (c->counted_active == active)
		return;
	c->counted_active = active;
	c->w->active += active ? 1 : -1u;
	kpx_set(&c->w->m.active, c->w->active);
}

void kpx_set_idle(struct kpx_conn *c, bool idle)
{
	if (c->counted_idle == idle)
		return;
	c->counted_idle = idle;
	c->w->idle += idle ? 1 : -1u;
	kpx_set(&c->w->m.idle, c->w->idle);
}

/* run_asyncq resumes every connection queued when it starts (new ones wait a turn). */
static void run_asyncq(struct kpx_worker *w)
{
	struct kpx_list batch;

	if (atomic_exchange_explicit(&w->remote_pending, false, memory_order_acquire)) {
		pthread_mutex_lock(&w->remote_mu);
		while (!kpx_list_empty(&w->remote_q)) {
			struct kpx_conn *c = (struct kpx_conn *)((char *)w->remote_q.next -
			                                         offsetof(struct kpx_conn, rnode));
			kpx_list_del(&c->rnode);
			c->rqueued = false;
			kpx_wait_on(c, KPX_WAIT_ASYNCQ);
			kpx_add(&w->m.async_queue_wakeups, 1);
		}
		pthread_mutex_unlock(&w->remote_mu);
	}
	if (kpx_list_empty(&w->asyncq))
		return;
	/* Move the queue aside: resuming may queue the same connection again. */
	batch = w->asyncq;
	batch.next->prev = &batch;
	batch.prev->next = &batch;
	kpx_list_init(&w->asyncq);
	while (!kpx_list_empty(&batch)) {
		struct kpx_conn *c = conn_of_wait(batch.next);
		kpx_list_del(&c->wait);
		c->waiting = KPX_WAIT_NONE;
		kpx_conn_resume(c);
	}
}

SSL *kpx_worker_ssl_new(struct kpx_worker *w)
{
	/* A SIGHUP published another set: take it for this and later connections. */
	if (w->tls == NULL || kpx_tls_generation() != w->tls_gen) {
		struct kpx_tls *t = kpx_tls_current(&w->tls_gen);
		kpx_tls_unref(w->tls);
		w->tls = t;
	}
	return w->tls != NULL ? kpx_tls_ssl_new(w->tls) : NULL;
}

static void accept_resume(struct kw_loop *loop, void *arg)
{
	struct kpx_worker *w = arg;
	if (!atomic_load_explicit(&w->stop, memory_order_relaxed) && w->lio.fd < 0)
		kw_io_start(loop, &w->lio, w->lfd, KW_EV_READ);
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
				kw_io_stop(loop, &w->lio);
				kw_timer_start_ms(loop, &w->accept_pause, ACCEPT_PAUSE_MS);
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
		kpx_conn_accept_from(w, cfd, (struct sockaddr *)&ss, len);
	}
}

int kpx_worker_init(struct kpx_worker *w, unsigned id, const struct kpx_options *opt, int lfd)
{
	int rc;
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->opt = opt;
	w->lfd = lfd;
	w->timerfd = -1;
	kpx_list_init(&w->conns);
	kpx_list_init(&w->asyncq);
	kpx_list_init(&w->job_wait);
	kpx_list_init(&w->cap_wait);
	kpx_list_init(&w->remote_q);
	pthread_mutex_init(&w->remote_mu, NULL);
	kw_io_init(&w->lio, on_accept, w);
	kw_timer_init(&w->accept_pause, accept_resume, w);
	if ((rc = kw_loop_new(&w->loop)) < 0)
		return rc;
	return 0;
}

static int make_backend(struct kpx_worker *w)
{
	const struct kpx_options *o = w->opt;
	int rc;
	switch (o->backend) {
	case KPX_BACKEND_THREADS:
		rc = kw_backend_threads_new(&w->backend, o->crypto_threads, o->ring_size);
		w->ring_backend = rc == 0;
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

static void drain_step(struct kpx_worker *w)
{
	/* Stop accepting; idle keep-alive connections go now, the rest finish their request
	 * (relayed ones run on until --drain-timeout). */
	if (w->lio.fd >= 0)
		kw_io_stop(w->loop, &w->lio);
	kw_timer_stop(w->loop, &w->accept_pause);
	struct kpx_list *l = w->conns.next;
	while (l != &w->conns) {
		struct kpx_conn *c =
		    (struct kpx_conn *)((char *)l - offsetof(struct kpx_conn, node));
		l = l->next;
		if (c->state == KPX_CS_IDLE || c->waiting == KPX_WAIT_JOB)
			kpx_conn_close_why(c, KPX_R_DRAIN);
	}
}

static void close_all(struct kpx_worker *w)
{
	struct kpx_list *l = w->conns.next;
	while (l != &w->conns) {
		struct kpx_conn *c =
		    (struct kpx_conn *)((char *)l - offsetof(struct kpx_conn, node));
		l = l->next;
		kpx_conn_close_why(c, KPX_R_DRAIN);
	}
}

static void *worker_main(void *arg)
{
	struct kpx_worker *w = arg;
	const struct kpx_options *o = w->opt;
	uint64_t drain_deadline = 0;
	int rc;

	current = w;
	if (!o->async_off &&
	    ASYNC_init_thread(o->async_jobs,
	                      o->async_jobs < JOB_PREWARM ? o->async_jobs : JOB_PREWARM) != 1)
		kw_warn("worker %u: cannot prepare the ASYNC job pool; jobs are made on demand",
		        w->id);
	if ((rc = make_backend(w)) < 0) {
		kw_error("worker %u: cannot start the %s backend: %s", w->id,
		         o->backend == KPX_BACKEND_THREADS  ? "threads"
		         : o->backend == KPX_BACKEND_INLINE ? "inline"
		                                            : "keyless",
		         kw_strerror(rc));
		kill(getpid(), SIGTERM);
		return NULL;
	}
	kw_backend_bind_thread(w->backend);
	if ((rc = kpx_poller_init(w)) < 0 ||
	    (rc = kw_io_start(w->loop, &w->lio, w->lfd, KW_EV_READ)) < 0) {
		kw_error("worker %u: %s", w->id, kw_strerror(rc));
		kill(getpid(), SIGTERM);
		goto out;
	}
	for (;;) {
		if (atomic_load_explicit(&w->stop, memory_order_acquire)) {
			if (drain_deadline == 0) {
				drain_deadline =
				    kw_now_ns() + (uint64_t)o->drain_timeout_s * 1000000000ull;
				drain_step(w);
			}
			if (w->nconns == 0)
				break;
			if (kw_now_ns() > drain_deadline)
				close_all(w); /* paused ones close when their op completes */
		}
		run_asyncq(w);
		int timeout = kpx_poller_before_sleep(w);
		if (!kpx_list_empty(&w->asyncq))
			timeout = 0;
		if (drain_deadline != 0 && (timeout < 0 || timeout > 10))
			timeout = 10;
		rc = kw_loop_run_once(w->loop, timeout);
		kpx_poller_after_wake(w);
		if (rc < 0) {
			kw_error("worker %u: event loop failed: %s", w->id, kw_strerror(rc));
			break;
		}
	}
out:
	close_all(w);
	/* Ops still out complete (or are cancelled) into connections that wait for them. */
	while (w->nconns > 0 && w->backend != NULL && kw_backend_inflight_all(w->backend) > 0) {
		kpx_poll_now(w, KPX_TRIG_BUSY);
		run_asyncq(w);
		kw_loop_run_once(w->loop, 1);
	}
	kw_loop_run_once(w->loop, 0); /* run deferred frees */
	kpx_poller_cleanup(w);
	kw_io_stop(w->loop, &w->lio);
	kw_timer_stop(w->loop, &w->accept_pause);
	kw_backend_bind_thread(NULL);
	kw_backend_free(w->backend);
	w->backend = NULL;
	kpx_tls_unref(w->tls);
	w->tls = NULL;
	if (!o->async_off)
		ASYNC_cleanup_thread();
	kw_op_compute_thread_cleanup();
	OPENSSL_thread_stop();
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
	kw_loop_free(w->loop);
	w->loop = NULL;
	pthread_mutex_destroy(&w->remote_mu);
}
