/*
 * keyway/backend_keyless.h - the keyless offload backend: kw_ops answered by
 * one or more keyservers over pipelined kw_client connections.
 *
 * It implements struct kw_backend_ops (keyway/offload.h) on one kw_loop and
 * belongs to that loop's thread: submit, poll, inflight and free are called
 * there, and ops complete there (from socket readiness and timers, during a
 * loop turn; never inside submit). poll does nothing: responses are read
 * when the keyserver sockets, registered in the same loop, become readable.
 * Requests submitted during a loop turn go out together before the loop
 * waits (the clients' before-sleep hook).
 *
 * Each keyserver (TCP with mutual TLS, or unix:) gets `connections`
 * clients, opened lazily. An op is sent to the healthy keyserver with the
 * fewest requests in flight that it has not tried yet, on its least busy
 * connection; unhealthy keyservers (least recently failed first) only when
 * no healthy one is left.
 *
 * Two time bounds: attempt_timeout_ms for one try, the op's deadline
 * (timeout_ms) for all of them. When a try's link fails (refused, reset,
 * closed, TLS), or the keyserver does not hold the key, the op is sent to
 * another keyserver while its deadline allows (retries; failovers when the
 * keyserver differs). When a try gets no answer within attempt_timeout_ms,
 * the op is also sent to another keyserver (a hedge) but the first try stays
 * alive: the first answer wins, the other is dropped, so a keyserver that is
 * merely slow still answers when it is the only one.
 *
 * Health: a keyserver whose link fails or whose try times out is marked
 * unhealthy and probed (a ping) after 100 ms, then with the delay doubling
 * up to 5 s; any successful answer from it (a probe's, or a late one) makes
 * it healthy again. Connections idle for idle_ping_ms get a ping, so a
 * keyserver's idle timeout (keywayd: 30 s) never closes a connection under
 * the next request.
 *
 * When no keyserver can answer -- the deadline arrives, or every keyserver
 * failed at the link level for this op and none is left to try -- an op
 * whose SKI is in the fallback keyset is computed locally with that key
 * (kw_op_compute, on the loop's thread) and succeeds ("fallbacks"); any
 * other completes with -KW_ETIMEOUT or the last link error. Pinned ops and
 * pings never fall back.
 *
 * Each try is an attempt object of its own, the client's callback argument,
 * so an op can give a try up (completed by another try, its deadline) while
 * the client still holds the request: the late answer finds an abandoned
 * attempt and is dropped.
 */
#ifndef KEYWAY_BACKEND_KEYLESS_H
#define KEYWAY_BACKEND_KEYLESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "keyway/loop.h"
#include "keyway/net.h"
#include "keyway/keyset.h"
#include "keyway/offload.h"

#define KW_KEYLESS_MAX_SERVERS 64

/* Counters shared between backends (several workers) and their owner; all relaxed atomics. */
struct kw_keyless_counters {
	_Atomic uint64_t retries;   /* ops sent again after a failed try */
	_Atomic uint64_t failovers; /* retries that went to another keyserver */
	_Atomic uint64_t fallbacks; /* ops computed with a fallback key */
	atomic_bool in_fallback;    /* one log line per transition, whichever backend sees it */
};

struct kw_keyless_config {
	const struct kw_addr *addrs; /* nservers keyserver addresses (TCP or unix) */
	const char *const *names;    /* as configured, for messages; NULL: formatted addrs */
	size_t nservers;             /* 1..KW_KEYLESS_MAX_SERVERS */
	SSL_CTX *ssl_ctx;            /* client context for TCP keyservers (referenced) */
	const char *server_name;     /* certificate name / SNI override; NULL: each addr's host */
	unsigned connections;        /* per keyserver; 0 means 2 */
	unsigned timeout_ms;         /* deadline of ops submitted without one; 0 means 2000 */
	unsigned max_inflight;       /* submit returns -EAGAIN at this many ops; 0 means 1024 */
	unsigned conn_max_inflight;  /* requests pipelined per connection; 0 means 1000 */
	struct kw_keyless_counters *counters; /* optional, added to (not owned) */
	unsigned attempt_timeout_ms; /* one try before a hedge to another keyserver; 0 means 300 */
	unsigned idle_ping_ms;       /* ping a connection idle this long; 0 means 10000 */
	struct kw_keyset *fallback;  /* local keys by SKI (a reference is taken), or NULL */
};

/*
 * kw_backend_keyless_new makes a keyless backend on loop (which must outlive
 * it, and must run for anything to happen). Nothing connects yet. 0,
 * -EINVAL (no servers, TCP without ssl_ctx) or -ENOMEM.
 */
int kw_backend_keyless_new(struct kw_loop *loop, const struct kw_keyless_config *cfg,
                           struct kw_backend **out);

/* kw_backend_is_keyless tells a keyless backend from the others. */
bool kw_backend_is_keyless(const struct kw_backend *b);

/*
 * kw_backend_keyless_submit_to is submit pinned to keyserver `server` (no
 * failover): for health checks and `keyway ping`.
 */
int kw_backend_keyless_submit_to(struct kw_backend *b, struct kw_op *op, size_t server);

/*
 * kw_backend_keyless_forget_fds is for a forked child that inherited b from
 * a thread that does not exist there: it closes every keyserver
 * connection's descriptor (kw_client_forget_fd: close(2) only, nothing
 * written) and leaves the rest. b must not be used or freed afterwards.
 */
void kw_backend_keyless_forget_fds(struct kw_backend *b);

/* kw_backend_keyless_server_name is keyserver i's name for messages (as configured). */
const char *kw_backend_keyless_server_name(const struct kw_backend *b, size_t i);

struct kw_keyless_stats {
	uint64_t submitted; /* ops accepted */
	uint64_t completed;
	uint64_t eagain; /* submits refused at max_inflight */
	uint64_t retries;
	uint64_t failovers;
	uint64_t timeouts;         /* ops that reached their deadline */
	uint64_t dropped;          /* answers that came after their op gave the try up */
	uint64_t attempt_timeouts; /* tries unanswered within attempt_timeout_ms */
	uint64_t fallbacks;        /* ops computed with a fallback key */
	uint64_t probes;           /* health-check pings to unhealthy keyservers */
	uint64_t idle_pings;       /* pings on idle connections */
	uint64_t unhealthy;        /* keyservers unhealthy now */
};

/* kw_backend_keyless_stats reads the counters (owning thread); -EINVAL if b is not keyless. */
int kw_backend_keyless_stats(const struct kw_backend *b, struct kw_keyless_stats *out);

#endif
