/*
 * worker.h - one keywayd worker thread: its own kw_loop, its own TCP
 * listener (SO_REUSEPORT), the shared Unix listener (EPOLLEXCLUSIVE), its
 * connections, its execution context cache and its metrics.
 */
#ifndef KEYWAYD_WORKER_H
#define KEYWAYD_WORKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "gen.h"
#include "metrics.h"

struct kwd_worker;

/* What a worker is made of. */
struct kwd_worker_config {
	unsigned id;               /* for its thread name and log lines */
	int tcp_fd;                /* its own TCP listener, or -1: owned by the worker */
	int unix_fd;               /* the shared Unix listener, or -1: borrowed */
	struct kwd_gen_slot *gens; /* where the current generation is published */
	size_t out_bound;          /* unsent output bytes at which a connection stops being read */
	uint64_t idle_ns;          /* idle connection timeout */
	uint64_t handshake_ns;     /* TLS handshake bound from accept (0: idle_ns only) */
	unsigned max_conns;        /* open connections allowed across all workers (0: no cap) */
	atomic_uint *nconns;       /* the count of those, shared by all workers (NULL: own) */
	uint64_t drain_ms;         /* after kwd_worker_drain, close what is left after this */
	struct kwd_audit *audit;   /* --audit-log, or NULL: where the worker hands its counts */
};

/*
 * kwd_worker_new prepares a worker (loop, listeners registered, the current
 * generation taken) in *out; nothing runs yet. It owns cfg->tcp_fd from the
 * call on, even when it fails. Returns 0 or -errno.
 */
int kwd_worker_new(struct kwd_worker **out, const struct kwd_worker_config *cfg);
/* kwd_worker_start runs the worker's loop in a new thread; 0 or -errno. */
int kwd_worker_start(struct kwd_worker *w);
/* kwd_worker_metrics is the worker's block of counters (to register before it starts). */
struct kwd_wmetrics *kwd_worker_metrics(struct kwd_worker *w);
/* kwd_worker_wake makes the worker look for a new generation now (any thread). */
void kwd_worker_wake(struct kwd_worker *w);
/*
 * kwd_worker_drain asks the worker to stop accepting, answer what its clients
 * already sent, close their connections and end its loop, within drain_ms
 * (any thread; idempotent).
 */
void kwd_worker_drain(struct kwd_worker *w);
/* kwd_worker_join waits for a started worker's thread to end. */
void kwd_worker_join(struct kwd_worker *w);
/* kwd_worker_free frees a worker that was joined (or never started). NULL ok. */
void kwd_worker_free(struct kwd_worker *w);

#endif
