/*
 * worker.h - one keywayd worker thread: its own kw_loop, its own TCP
 * listener (SO_REUSEPORT), the shared Unix listener (EPOLLEXCLUSIVE), its
 * connections, its signing-context cache and its metrics.
 */
#ifndef KEYWAYD_WORKER_H
#define KEYWAYD_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "keyway/loop.h"
#include "metrics.h"
#include "exec.h"
#include "server.h"

struct kwd_conn;

/* Per-turn record of the answered requests, for the total-duration histogram. */
#define KWD_BATCH_MAX 256

struct kwd_batch_entry {
	uint8_t family;
	uint8_t err;
};

struct kwd_worker {
	struct kwd_server *srv;
	unsigned id;
	pthread_t thread;
	bool started;
	struct kw_loop *loop;

	int tcp_fd; /* own listener, -1 if none */
	struct kw_io tcp_io;
	struct kw_io unix_io;         /* srv->unix_fd, registered exclusive */
	struct kw_timer accept_timer; /* re-enables accepting after EMFILE */
	struct kw_hook hook;          /* picks up reloads and the drain request */

	struct kwd_gen *gen; /* the generation this worker serves with */
	uint64_t gen_seq;
	struct kwd_exec *signer; /* context cache for gen->ks */

	struct kwd_conn *conns; /* list of open connections */
	unsigned nconns;
	bool draining;
	struct kw_timer drain_timer;

	size_t out_bound; /* backpressure: unsent output bytes per connection */
	uint64_t idle_ns;

	struct kwd_exec_result result; /* scratch for kwd_exec_run */
	struct kwd_batch_entry batch[KWD_BATCH_MAX];
	unsigned nbatch;

	struct kwd_wmetrics metrics;
};

/* kwd_worker_new prepares worker id (loop, listeners registered); 0 or -errno. */
int kwd_worker_new(struct kwd_server *srv, unsigned id, struct kwd_worker **out);
/* kwd_worker_start runs the worker's loop in a new thread; 0 or -errno. */
int kwd_worker_start(struct kwd_worker *w);
/* kwd_worker_wake makes the worker look at the drain flag and gen_seq (any thread). */
void kwd_worker_wake(struct kwd_worker *w);
void kwd_worker_join(struct kwd_worker *w);
/* kwd_worker_free frees a worker that was joined (or never started). NULL ok. */
void kwd_worker_free(struct kwd_worker *w);

/*
 * kwd_worker_refresh swaps to the server's current generation if a reload
 * published a new one; cheap (one atomic load) when nothing changed.
 */
void kwd_worker_refresh_slow(struct kwd_worker *w);
static inline void kwd_worker_refresh(struct kwd_worker *w)
{
	if (atomic_load_explicit(&w->srv->gen_seq, memory_order_acquire) != w->gen_seq)
		kwd_worker_refresh_slow(w);
}

/* Called by conn.c when a connection of this worker is gone. */
void kwd_worker_conn_closed(struct kwd_worker *w);

#endif
