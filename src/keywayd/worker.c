/* worker.c - a keywayd worker thread (see worker.h). */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/protocol.h"

#define ACCEPTS_PER_TURN 64
#define ACCEPT_PAUSE_MS 100 /* after EMFILE and friends */

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, outlen, "%s:%u", host, (unsigned)ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, outlen, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
	} else {
		snprintf(out, outlen, "unix");
	}
}

static int listeners_start(struct kwd_worker *w)
{
	int rc = 0;
	if (w->tcp_fd >= 0 && w->tcp_io.fd < 0 &&
	    (rc = kw_io_start(w->loop, &w->tcp_io, w->tcp_fd, KW_EV_READ)) < 0)
		kw_warn("worker %u: cannot watch the TCP listener: %s", w->id, kw_strerror(rc));
	int rc2 = 0;
	if (w->srv->unix_fd >= 0 && w->unix_io.fd < 0 &&
	    (rc2 = kw_io_start_exclusive(w->loop, &w->unix_io, w->srv->unix_fd, KW_EV_READ)) < 0)
		kw_warn("worker %u: cannot watch the Unix listener: %s", w->id, kw_strerror(rc2));
	return rc < 0 ? rc : rc2;
}

static void listeners_stop(struct kwd_worker *w)
{
	kw_io_stop(w->loop, &w->tcp_io);
	kw_io_stop(w->loop, &w->unix_io);
}

static void on_accept_timer(struct kw_loop *loop, void *arg)
{
	struct kwd_worker *w = arg;
	if (!w->draining)
		listeners_start(w);
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
			/* Out of descriptors or memory: a level-triggered listener would spin. */
			kw_warn("worker %u: accept: %s; pausing accepts for %d ms", w->id,
			        strerror(e), ACCEPT_PAUSE_MS);
			listeners_stop(w);
			kw_timer_start_ms(w->loop, &w->accept_timer, ACCEPT_PAUSE_MS);
			return -1;
		}
		char peer[64];
		format_peer(&ss, peer, sizeof(peer));
		if (t == KWD_TRANSPORT_TCP)
			kw_set_nodelay(fd);
		kwd_worker_refresh(w);
		int rc =
		    kwd_conn_open(w, fd, t, t == KWD_TRANSPORT_TCP ? w->gen->ssl_ctx : NULL, peer);
		if (rc < 0)
			kw_warn("worker %u: cannot serve %s: %s", w->id, peer, kw_strerror(rc));
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
		if (w->srv->unix_fd >= 0 && w->unix_io.fd >= 0)
			n += accept_some(w, w->srv->unix_fd, KWD_TRANSPORT_UNIX);
		if (n < ACCEPTS_PER_TURN)
			return;
	}
}

void kwd_worker_refresh_slow(struct kwd_worker *w)
{
	struct kwd_gen *g = kwd_server_current(w->srv);
	if (g == w->gen) {
		w->gen_seq = g->seq;
		kwd_gen_unref(g);
		return;
	}
	/* The context cache belongs to the old keystore: start a fresh one. */
	struct kwd_exec *s = NULL;
	int rc = kwd_exec_new(&s);
	if (rc < 0) {
		kw_warn("worker %u: cannot switch to the reloaded keys yet: %s", w->id,
		        kw_strerror(rc));
		kwd_gen_unref(g);
		return;
	}
	kwd_exec_free(w->signer);
	w->signer = s;
	kwd_gen_unref(w->gen);
	w->gen = g;
	w->gen_seq = g->seq;
	kw_debug("worker %u: serving key generation %llu", w->id, (unsigned long long)g->seq);
}

static void finish(struct kwd_worker *w)
{
	kw_timer_stop(w->loop, &w->drain_timer);
	kw_loop_stop(w->loop);
}

void kwd_worker_conn_closed(struct kwd_worker *w)
{
	w->nconns--;
	if (w->draining && w->nconns == 0)
		finish(w);
}

static void on_drain_deadline(struct kw_loop *loop, void *arg)
{
	struct kwd_worker *w = arg;
	kw_warn("worker %u: drain timeout; closing %u connection%s", w->id, w->nconns,
	        w->nconns == 1 ? "" : "s");
	while (w->conns != NULL)
		kwd_conn_abort(w->conns);
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
		kw_timer_start_ms(w->loop, &w->drain_timer,
		                  (uint64_t)w->srv->opt->drain_timeout_s * 1000u);
	}
	for (struct kwd_conn *c = w->conns, *next; c != NULL; c = next) {
		next = kwd_conn_next(c);
		kwd_conn_drain(c);
	}
	if (w->nconns == 0)
		finish(w);
}

static void on_hook(struct kw_loop *loop, void *arg)
{
	struct kwd_worker *w = arg;
	kwd_worker_refresh(w);
	if (!w->draining && atomic_load_explicit(&w->srv->draining, memory_order_acquire))
		begin_drain(w);
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
	while (w->conns != NULL)
		kwd_conn_abort(w->conns);
	listeners_stop(w);
	kw_timer_stop(w->loop, &w->accept_timer);
	kw_timer_stop(w->loop, &w->drain_timer);
	kw_hook_remove(w->loop, &w->hook);
	return NULL;
}

int kwd_worker_new(struct kwd_server *srv, unsigned id, struct kwd_worker **out)
{
	struct kwd_worker *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->srv = srv;
	w->id = id;
	w->tcp_fd = -1;
	kw_io_init(&w->tcp_io, on_tcp_listener, w);
	kw_io_init(&w->unix_io, on_unix_listener, w);
	kw_timer_init(&w->accept_timer, on_accept_timer, w);
	kw_timer_init(&w->drain_timer, on_drain_deadline, w);
	kw_hook_init(&w->hook, on_hook, w);
	w->out_bound = (size_t)srv->opt->max_inflight * KW_PADDED_LEN;
	w->idle_ns = (uint64_t)srv->opt->idle_timeout_s * 1000000000u;

	int rc = kw_loop_new(&w->loop);
	if (rc < 0)
		goto err;
	if ((rc = kwd_exec_new(&w->signer)) < 0)
		goto err;
	w->gen = kwd_server_current(srv);
	w->gen_seq = w->gen->seq;
	/* The worker owns its TCP listener from here on. */
	if (srv->tcp_fds != NULL) {
		w->tcp_fd = srv->tcp_fds[id];
		srv->tcp_fds[id] = -1;
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

void kwd_worker_wake(struct kwd_worker *w)
{
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
		while (w->conns != NULL)
			kwd_conn_abort(w->conns);
		listeners_stop(w);
		kw_timer_stop(w->loop, &w->accept_timer);
		kw_timer_stop(w->loop, &w->drain_timer);
		kw_hook_remove(w->loop, &w->hook);
		kw_loop_free(w->loop);
	}
	if (w->tcp_fd >= 0)
		close(w->tcp_fd);
	kwd_exec_free(w->signer);
	kwd_gen_unref(w->gen);
	free(w);
}
