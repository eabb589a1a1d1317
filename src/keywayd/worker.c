/* worker.c - a keywayd worker thread (see worker.h). */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "batch.h"
#include "conn.h"
#include "executor.h"
#include "keyway/err.h"
#include "keyway/list.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/net.h"

#define ACCEPTS_PER_TURN 64
#define ACCEPT_PAUSE_MS 100 /* after EMFILE and friends */

/* The worker's record of one of its connections; its list runs through these. */
struct wconn {
	struct kw_list link; /* in kwd_worker.conns */
	struct kwd_conn *conn;
};

struct kwd_worker {
	unsigned id;
	pthread_t thread;
	bool started;
	struct kw_loop *loop;

	int tcp_fd;                   /* own listener, -1 if none */
	int unix_fd;                  /* the shared listener (not ours), -1 if none */
	struct kw_io tcp_io;          /* watches tcp_fd */
	struct kw_io unix_io;         /* watches unix_fd, registered exclusive */
	struct kw_timer accept_timer; /* re-enables accepting after EMFILE */
	struct kw_hook hook;          /* picks up reloads and the drain request */

	struct kwd_gen_slot *gens; /* where the server publishes generations */
	struct kwd_gen *gen;       /* the generation this worker serves with */
	uint64_t gen_seq;          /* gen->seq, compared with the slot's */

	struct kwd_conn_env env; /* for the connections; its exec and ks follow gen */
	struct kw_list conns;    /* the open connections (struct wconn), oldest first */
	struct kw_list settled;  /* those evict_one found past their handshake */
	unsigned nconns;
	unsigned max_conns;     /* the process-wide cap (--max-connections) */
	atomic_uint *all_conns; /* open connections of every worker, against max_conns */
	atomic_uint own_conns;  /* all_conns when the config shares no count */
	int reserve_fd;         /* spent on EMFILE to accept a connection anyway; -1 if none */

	atomic_bool drain_requested; /* set by kwd_worker_drain (any thread) */
	bool draining;               /* this thread has begun draining */
	bool accept_lost;            /* neither the accept timer nor a listener could be armed */
	uint64_t drain_ms;
	struct kw_timer drain_timer; /* closes what is left at the drain deadline */

	struct kwd_audit *audit;         /* --audit-log, or NULL */
	struct kw_timer audit_timer;     /* hands env.audit in at each interval boundary */
	struct kwd_rsa_batcher *batcher; /* --rsa-batch, else NULL */

	struct kwd_wmetrics metrics;
};

static int listeners_start(struct kwd_worker *w)
{
	int rc = 0;
	if (w->tcp_fd >= 0 && w->tcp_io.fd < 0 &&
	    (rc = kw_io_start(w->loop, &w->tcp_io, w->tcp_fd, KW_EV_READ)) < 0)
		kw_warn("worker %u: cannot watch the TCP listener: %s", w->id, kw_strerror(rc));
	int rc2 = 0;
	if (w->unix_fd >= 0 && w->unix_io.fd < 0 &&
	    (rc2 = kw_io_start_exclusive(w->loop, &w->unix_io, w->unix_fd, KW_EV_READ)) < 0)
		kw_warn("worker %u: cannot watch the Unix listener: %s", w->id, kw_strerror(rc2));
	return rc < 0 ? rc : rc2;
}

static void listeners_stop(struct kwd_worker *w)
{
	kw_io_stop(w->loop, &w->tcp_io);
	kw_io_stop(w->loop, &w->unix_io);
}

static int reserve_open(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void accept_lost(struct kwd_worker *w)
{
	if (!w->accept_lost)
		kw_error("worker %u: cannot watch the listeners nor arm the accept timer; "
		         "retrying every %d ms",
		         w->id, ACCEPT_PAUSE_MS);
	w->accept_lost = true;
}

static void on_accept_timer(struct kw_loop *loop, void *arg)
{
	struct kwd_worker *w = arg;
	if (w->reserve_fd < 0)
		w->reserve_fd = reserve_open();
	if (w->draining || listeners_start(w) == 0)
		return;
	/* Still cannot watch a listener: try again later rather than never accept
	 * again. The timer has just left the heap, so re-arming it needs no memory. */
	if (kw_timer_start_ms(loop, &w->accept_timer, ACCEPT_PAUSE_MS) < 0)
		accept_lost(w);
}

/*
 * accept_retry runs every turn (on_hook): a listener neither watched nor
 * timed to be (both refused in a row) is tried again, and until it is
 * watched the loop waits at most ACCEPT_PAUSE_MS, so accepting resumes.
 */
static void accept_retry(struct kwd_worker *w)
{
	if (!w->accept_lost)
		return;
	if (w->draining || listeners_start(w) == 0) {
		w->accept_lost = false;
		if (!w->draining)
			kw_info("worker %u: watching the listeners again", w->id);
		return;
	}
	kw_loop_wake_within(w->loop, ACCEPT_PAUSE_MS);
}

/* set_generation makes g (whose reference w takes) the keys, rules and trust served. */
static void set_generation(struct kwd_worker *w, struct kwd_gen *g)
{
	kwd_executor_use(w->env.executor, g);
	w->gen = g;
	w->gen_seq = g->seq;
	w->env.gen = g;
}

/* reverify_all closes the connections whose client certificate the current trust refuses. */
static void reverify_all(struct kwd_worker *w)
{
	struct kw_list *lists[] = {&w->conns, &w->settled};
	for (size_t i = 0; i < 2; i++) {
		struct kw_list *pos, *tmp;
		kw_list_for_each_safe(pos, tmp, lists[i])
		    kwd_conn_reverify(kw_container_of(pos, struct wconn, link)->conn);
	}
}

/*
 * refresh_slow swaps to the published generation, with a fresh context cache
 * (the old one belongs to the old keystore). If that cannot be had, the
 * worker goes on with what it has and tries again at its next batch.
 */
static void refresh_slow(struct kwd_worker *w)
{
	struct kwd_gen *g = kwd_gen_slot_get(w->gens);
	if (g == w->gen) {
		w->gen_seq = g->seq;
		kwd_gen_unref(g);
		return;
	}
	struct kwd_gen *old = w->gen;
	/* Jobs still running on the old keys hold their own references to it. */
	set_generation(w, g);
	/* New CAs or CRLs: the clients already connected must pass them too. */
	if (g->ssl_ctx != NULL && memcmp(old->trust, g->trust, sizeof(g->trust)) != 0)
		reverify_all(w);
	kwd_gen_unref(old);
	kw_debug("worker %u: serving key generation %llu", w->id, (unsigned long long)g->seq);
}

/* refresh is one atomic load when no reload published a new generation. */
static inline void refresh(struct kwd_worker *w)
{
	if (kwd_gen_slot_seq(w->gens) != w->gen_seq)
		refresh_slow(w);
}

static void on_conn_refresh(void *arg)
{
	refresh(arg);
}

/* on_audit_timer hands this interval's counts in, just past its boundary. */
static void on_audit_timer(struct kw_loop *loop, void *arg)
{
	struct kwd_worker *w = arg;
	kwd_audit_hand_in(w->audit, w->env.audit);
	if (kw_timer_start_at(loop, &w->audit_timer, kwd_audit_next_boundary(kw_now_ns())) < 0)
		kw_error("worker %u: cannot re-arm the audit timer", w->id);
}

static void finish(struct kwd_worker *w)
{
	kw_timer_stop(w->loop, &w->drain_timer);
	kw_loop_stop(w->loop);
}

static void on_conn_closed(void *arg, void *owner)
{
	struct kwd_worker *w = arg;
	struct wconn *n = owner;
	kw_list_del(&n->link);
	free(n);
	w->nconns--;
	atomic_fetch_sub_explicit(w->all_conns, 1, memory_order_relaxed);
	if (w->draining && w->nconns == 0)
		finish(w);
}

/* serve starts a connection on the accepted fd (whose ownership it takes). */
static void serve(struct kwd_worker *w, int fd, enum kwd_transport t, const char *peer)
{
	struct wconn *n = calloc(1, sizeof(*n));
	int rc = -ENOMEM;
	if (n == NULL) {
		close(fd);
	} else {
		refresh(w);
		SSL_CTX *ctx = t == KWD_TRANSPORT_TCP ? w->gen->ssl_ctx : NULL;
		rc = kwd_conn_open(&n->conn, &w->env, n, fd, t, ctx, peer);
	}
	if (rc < 0) {
		free(n);
		atomic_fetch_sub_explicit(w->all_conns, 1, memory_order_relaxed);
		kw_warn("worker %u: cannot serve %s: %s", w->id, peer, kw_strerror(rc));
		return;
	}
	kw_list_add_tail(&w->conns, &n->link);
	w->nconns++;
	kw_debug("connection %s accepted by worker %u", peer, w->id);
	if (w->draining)
		kwd_conn_drain(n->conn);
}

/*
 * evict_one closes this worker's oldest connection still in its TLS
 * handshake; false when every one is authenticated (or on the Unix socket):
 * those are never displaced by a newcomer. A connection found past its
 * handshake moves to the settled list for good (it cannot go back), so under
 * a flood each one is looked at once, not at every new connection.
 */
static bool evict_one(struct kwd_worker *w)
{
	while (!kw_list_empty(&w->conns)) {
		struct wconn *n = kw_list_entry(kw_list_first(&w->conns), struct wconn, link);
		if (kwd_conn_handshaking(n->conn)) {
			kwd_counter_add(&w->metrics.evicted, 1);
			kwd_conn_evict(n->conn); /* unlinks it and gives its slot back */
			return true;
		}
		kw_list_del(&n->link);
		kw_list_add_tail(&w->settled, &n->link);
	}
	return false;
}

/*
 * admit takes a slot under --max-connections for a new connection, evicting
 * a handshaking one when the cap is reached; false means the newcomer must
 * be closed (counted as refused).
 */
static bool admit(struct kwd_worker *w)
{
	unsigned n = atomic_fetch_add_explicit(w->all_conns, 1, memory_order_relaxed);
	if (n < w->max_conns || evict_one(w))
		return true;
	atomic_fetch_sub_explicit(w->all_conns, 1, memory_order_relaxed);
	kwd_counter_add(&w->metrics.refused, 1);
	return false;
}

/* pause_accepts rests the listeners (ENOMEM and the like, or no reserve). */
static void pause_accepts(struct kwd_worker *w, int err)
{
	kw_warn("worker %u: accept: %s; pausing accepts for %d ms", w->id, strerror(err),
	        ACCEPT_PAUSE_MS);
	listeners_stop(w);
	/* Better a busy listener than a dead worker; with neither, the hook retries. */
	if (kw_timer_start_ms(w->loop, &w->accept_timer, ACCEPT_PAUSE_MS) < 0 &&
	    listeners_start(w) < 0)
		accept_lost(w);
}

/*
 * out_of_fds handles EMFILE/ENFILE without leaving the connection in the
 * backlog, where real clients would time out behind silent ones: the
 * reserve descriptor is spent to accept it, a handshaking connection
 * evicted to make room for it (or the newcomer refused), and the reserve
 * taken again. Without a reserve (another thread took the slot) accepting
 * pauses briefly rather than spinning. Returns the accepted fd, already
 * admitted under --max-connections, or -1 (*paused tells whether the
 * listeners rest).
 */
static int out_of_fds(struct kwd_worker *w, int lfd, int err, bool *paused)
{
	*paused = false;
	/* The reserve was lost to another thread taking the slot it was to reopen in:
	 * a handshaking connection gives its descriptor back instead. */
	if (w->reserve_fd < 0 && evict_one(w))
		w->reserve_fd = reserve_open();
	if (w->reserve_fd < 0) {
		*paused = true;
		pause_accepts(w, err);
		return -1;
	}
	close(w->reserve_fd);
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	bool room = fd >= 0 && evict_one(w);
	if (room) /* the evicted one's slot is the newcomer's now */
		atomic_fetch_add_explicit(w->all_conns, 1, memory_order_relaxed);
	else if (fd >= 0) {
		kwd_counter_add(&w->metrics.refused, 1);
		close(fd);
		fd = -1;
	}
	w->reserve_fd = reserve_open();
	return fd;
}

/* accept_some accepts up to ACCEPTS_PER_TURN connections; returns how many it tried. */
static int accept_some(struct kwd_worker *w, int lfd, enum kwd_transport t)
{
	int i;
	for (i = 0; i < ACCEPTS_PER_TURN; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int e = errno;
			if (e == EINTR || e == ECONNABORTED || e == EPROTO)
				continue;
			if (e == EAGAIN || e == EWOULDBLOCK)
				return i;
			if (e != EMFILE && e != ENFILE) {
				pause_accepts(w, e);
				return -1;
			}
			bool paused;
			fd = out_of_fds(w, lfd, e, &paused);
			if (paused)
				return -1;
			if (fd < 0)
				continue;
			/* The reserve's accept4 took no address: ask for it, for the log. */
			len = sizeof(ss);
			if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
				ss.ss_family = AF_UNSPEC;
		} else if (!admit(w)) {
			close(fd);
			continue;
		}
		char peer[64];
		kw_sockaddr_format((const struct sockaddr *)&ss, "unix", peer, sizeof(peer));
		if (t == KWD_TRANSPORT_TCP)
			kw_set_nodelay(fd);
		serve(w, fd, t, peer);
	}
	return i;
}

static void on_tcp_listener(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	(void)accept_some(arg, fd, KWD_TRANSPORT_TCP);
}

static void on_unix_listener(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	(void)accept_some(arg, fd, KWD_TRANSPORT_UNIX);
}

/*
 * A client whose connect() completed before the drain is waiting in the
 * listener's backlog and may already have sent requests: closing the
 * listener would reset it. Take those connections in first (bounded by the
 * backlog), so the drain answers what they sent.
 */
static void accept_backlog(struct kwd_worker *w)
{
	for (int round = 0; round < 64; round++) {
		int n = 0;
		if (w->tcp_fd >= 0 && w->tcp_io.fd >= 0)
			n += accept_some(w, w->tcp_fd, KWD_TRANSPORT_TCP);
		if (w->unix_fd >= 0 && w->unix_io.fd >= 0)
			n += accept_some(w, w->unix_fd, KWD_TRANSPORT_UNIX);
		if (n < ACCEPTS_PER_TURN)
			return;
	}
}

/* abort_all closes every connection now (each close unlinks it). */
static void abort_all(struct kwd_worker *w)
{
	while (!kw_list_empty(&w->conns))
		kwd_conn_abort(kw_list_entry(kw_list_first(&w->conns), struct wconn, link)->conn);
	while (!kw_list_empty(&w->settled))
		kwd_conn_abort(kw_list_entry(kw_list_first(&w->settled), struct wconn, link)->conn);
}

/* quiesce leaves the loop with nothing of this worker in it. */
static void quiesce(struct kwd_worker *w)
{
	abort_all(w);
	listeners_stop(w);
	kw_timer_stop(w->loop, &w->accept_timer);
	kw_timer_stop(w->loop, &w->drain_timer);
	kw_timer_stop(w->loop, &w->audit_timer);
	kw_hook_remove(w->loop, &w->hook);
	/* What was counted since the last boundary goes into the last lines. */
	if (w->audit != NULL && w->env.audit != NULL)
		kwd_audit_hand_in(w->audit, w->env.audit);
}

static void on_drain_deadline(struct kw_loop *loop, void *arg)
{
	struct kwd_worker *w = arg;
	kw_warn("worker %u: drain timeout; closing %u connection%s", w->id, w->nconns,
	        w->nconns == 1 ? "" : "s");
	abort_all(w);
	finish(w);
}

static void begin_drain(struct kwd_worker *w)
{
	accept_backlog(w);
	w->draining = true;
	listeners_stop(w);
	kw_timer_stop(w->loop, &w->accept_timer);
	if (w->tcp_fd >= 0) {
		close(w->tcp_fd);
		w->tcp_fd = -1;
	}
	if (w->nconns > 0) {
		kw_debug("worker %u: draining %u connection%s", w->id, w->nconns,
		         w->nconns == 1 ? "" : "s");
		if (kw_timer_start_ms(w->loop, &w->drain_timer, w->drain_ms) < 0) {
			/* Without its deadline a drain could wait for ever on one client. */
			kw_warn(
			    "worker %u: cannot arm the drain deadline; closing %u connection%s now",
			    w->id, w->nconns, w->nconns == 1 ? "" : "s");
			abort_all(w);
		}
	}
	struct kw_list *pos, *tmp;
	kw_list_for_each_safe(pos, tmp, &w->conns)
	    kwd_conn_drain(kw_container_of(pos, struct wconn, link)->conn);
	kw_list_for_each_safe(pos, tmp, &w->settled)
	    kwd_conn_drain(kw_container_of(pos, struct wconn, link)->conn);
	if (w->nconns == 0)
		finish(w);
}

static void on_hook(struct kw_loop *loop, void *arg)
{
	struct kwd_worker *w = arg;
	refresh(w);
	if (!w->draining && atomic_load_explicit(&w->drain_requested, memory_order_acquire))
		begin_drain(w);
	accept_retry(w);
}

static void *worker_main(void *arg)
{
	struct kwd_worker *w = arg;
	char name[16];
	snprintf(name, sizeof(name), "keywayd-w%u", w->id);
	pthread_setname_np(pthread_self(), name);

	int rc = kw_loop_run(w->loop);
	if (rc < 0)
		kw_error("worker %u: event loop failed: %s", w->id, kw_strerror(rc));
	quiesce(w);
	return NULL;
}

int kwd_worker_new(struct kwd_worker **out, const struct kwd_worker_config *cfg)
{
	struct kwd_worker *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		if (cfg->tcp_fd >= 0)
			close(cfg->tcp_fd);
		return -ENOMEM;
	}
	w->id = cfg->id;
	w->tcp_fd = cfg->tcp_fd;
	w->unix_fd = cfg->unix_fd;
	w->gens = cfg->gens;
	w->drain_ms = cfg->drain_ms;
	w->audit = cfg->audit;
	w->max_conns = cfg->max_conns != 0 ? cfg->max_conns : UINT_MAX;
	w->all_conns = cfg->nconns != NULL ? cfg->nconns : &w->own_conns;
	/* None (-1) is allowed: pausing accepts on EMFILE is the fallback. */
	w->reserve_fd = reserve_open();
	kw_list_init(&w->conns);
	kw_list_init(&w->settled);
	atomic_init(&w->drain_requested, false);
	kw_io_init(&w->tcp_io, on_tcp_listener, w);
	kw_io_init(&w->unix_io, on_unix_listener, w);
	kw_timer_init(&w->accept_timer, on_accept_timer, w);
	kw_timer_init(&w->drain_timer, on_drain_deadline, w);
	kw_timer_init(&w->audit_timer, on_audit_timer, w);
	kw_hook_init(&w->hook, on_hook, w);

	int rc = kw_loop_new(&w->loop);
	if (rc < 0)
		goto err;
	w->env = (struct kwd_conn_env){
	    .loop = w->loop,
	    .metrics = &w->metrics,
	    .out_bound = cfg->out_bound,
	    .idle_ns = cfg->idle_ns,
	    .handshake_ns = cfg->handshake_ns,
	    .refresh = on_conn_refresh,
	    .closed = on_conn_closed,
	    .arg = w,
	};
	if ((rc = kwd_executor_new(&w->env.executor, w->loop)) < 0)
		goto err;
	set_generation(w, kwd_gen_slot_get(w->gens));
	if (w->audit != NULL &&
	    ((rc = kwd_audit_tab_new(&w->env.audit)) < 0 ||
	     (rc = kw_timer_start_at(w->loop, &w->audit_timer,
	                             kwd_audit_next_boundary(kw_now_ns()))) < 0))
		goto err;
	if (cfg->rsa_batch) {
		if ((rc = kwd_rsa_batcher_new(&w->batcher, &w->metrics)) < 0)
			goto err;
		kwd_executor_set_batcher(w->env.executor, kwd_rsa_batcher_base(w->batcher));
	}
	if ((rc = listeners_start(w)) < 0)
		goto err;
	kw_hook_add(w->loop, &w->hook);
	*out = w;
	return 0;
err:
	kwd_worker_free(w);
	return rc;
}

int kwd_worker_start(struct kwd_worker *w)
{
	int rc = pthread_create(&w->thread, NULL, worker_main, w);
	if (rc != 0)
		return -rc;
	w->started = true;
	return 0;
}

struct kwd_wmetrics *kwd_worker_metrics(struct kwd_worker *w)
{
	return &w->metrics;
}

void kwd_worker_wake(struct kwd_worker *w)
{
	kw_loop_wake(w->loop);
}

void kwd_worker_drain(struct kwd_worker *w)
{
	atomic_store_explicit(&w->drain_requested, true, memory_order_release);
	kw_loop_wake(w->loop);
}

void kwd_worker_join(struct kwd_worker *w)
{
	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = false;
	}
}

void kwd_worker_free(struct kwd_worker *w)
{
	if (w == NULL)
		return;
	if (w->loop != NULL) {
		quiesce(w);
		/* Before the loop: it waits for device jobs and leaves the loop's lists. */
		kwd_executor_free(w->env.executor);
		w->env.executor = NULL;
		kw_loop_free(w->loop);
	}
	if (w->tcp_fd >= 0)
		close(w->tcp_fd);
	if (w->reserve_fd >= 0)
		close(w->reserve_fd);
	kwd_executor_free(w->env.executor);
	kwd_audit_tab_free(w->env.audit);
	kwd_rsa_batcher_free(w->batcher); /* after the executor: it ran the last batch */
	kwd_gen_unref(w->gen);
	free(w);
}
