/*
 * conn.h - one client connection of a keywayd worker: mutual TLS over TCP or
 * plain over the Unix socket. Everything readable is read, every complete
 * frame answered, and the batch of responses written at once.
 *
 * A connection knows nothing of the worker that owns it: it sees only the
 * worker's kwd_conn_env (its loop, keys, counters and limits) and tells the
 * owner through env->closed when it is gone.
 */
#ifndef KEYWAYD_CONN_H
#define KEYWAYD_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "acl.h"
#include "audit.h"
#include "executor.h"
#include "keyway/loop.h"
#include "metrics.h"

struct kwd_conn;

/* kwd_conn_refresh_fn brings env->executor's key generation up to date (loop thread). */
typedef void kwd_conn_refresh_fn(void *arg);
/*
 * kwd_conn_closed_fn is told, once per connection, that the connection
 * opened with owner is closed; its struct stays readable until the end of
 * the loop turn but must not be passed to kwd_conn_* again.
 */
typedef void kwd_conn_closed_fn(void *arg, void *owner);

/*
 * struct kwd_conn_env - what the connections of one worker share. The
 * worker fills it in and keeps it alive longer than its connections; conn.c
 * only reads it (and calls back through it).
 */
struct kwd_conn_env {
	struct kw_loop *loop;          /* the loop every connection of this env lives in */
	struct kwd_wmetrics *metrics;  /* counters; written by the loop thread only */
	size_t out_bound;              /* unsent output bytes at which reading pauses */
	uint64_t idle_ns;              /* close a connection without progress this long */
	uint64_t handshake_ns;         /* TLS handshake bound from accept; 0: idle_ns only */
	struct kwd_executor *executor; /* answers the requests (its keys follow refresh) */
	kwd_conn_refresh_fn *refresh;  /* called before each batch of requests is served */
	kwd_conn_closed_fn *closed;    /* called when a connection is closed */
	void *arg;                     /* the callbacks' first argument */
	/* The generation the executor answers with (set by refresh): its keys, its
	 * --acl rules (NULL: all allowed), its client CAs and CRLs. */
	const struct kwd_gen *gen;
	/* --audit-log counts of this worker, NULL without. */
	struct kwd_audit_tab *audit;
};

/*
 * kwd_conn_open takes ownership of the accepted, non-blocking fd and starts
 * serving it in env->loop; *out is the connection and owner is what
 * env->closed will be given for it. ctx is the TLS context for TCP
 * connections (NULL for the Unix socket). On failure the fd is closed,
 * -errno returned and env->closed never called.
 */
int kwd_conn_open(struct kwd_conn **out, struct kwd_conn_env *env, void *owner, int fd,
                  enum kwd_transport transport, SSL_CTX *ctx, const char *peer);

/*
 * kwd_conn_drain stops reading new requests once what the peer already sent
 * is answered, then closes the connection cleanly. It may close c at once.
 */
void kwd_conn_drain(struct kwd_conn *c);

/*
 * kwd_conn_buffer_bytes is the heap c holds for its buffers. Input stops being
 * read past MAX_BUFFERED_IN and output stops being produced past env->out_bound,
 * so a busy connection holds about those two bounds; empty buffers grown past a
 * few tens of KiB are given back after each turn.
 */
size_t kwd_conn_buffer_bytes(const struct kwd_conn *c);

/* kwd_conn_abort closes c now without flushing (drain deadline, shutdown). */
void kwd_conn_abort(struct kwd_conn *c);

/*
 * kwd_conn_handshaking is whether c is a TLS connection still in its
 * handshake (its peer not yet authenticated): the only kind that may be
 * evicted. A Unix-socket connection never is.
 */
bool kwd_conn_handshaking(const struct kwd_conn *c);

/*
 * kwd_conn_reverify verifies c's client certificate again against the client
 * CAs and CRLs of the current generation (after a reload changed them) and
 * closes c if it no longer verifies; true if it did close it. Not for Unix
 * sockets or connections still in their handshake (checked when it ends).
 */
bool kwd_conn_reverify(struct kwd_conn *c);

/* kwd_conn_evict closes c now, to make room for a new connection. */
void kwd_conn_evict(struct kwd_conn *c);

#endif
