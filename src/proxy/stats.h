/*
 * stats.h - a worker's counters: the block /metrics sums, the reasons it
 * counts by, and the single-writer update helpers.
 *
 * Each worker is the only writer of its block; the main thread reads it with
 * relaxed loads, so an update is a load and a store, never a locked add.
 */
#ifndef KPX_STATS_H
#define KPX_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "keyway/offload.h"

/* Why a connection ended badly (handshake_failures_total{reason}). */
enum kpx_fail {
	KPX_FAIL_TLS,      /* TLS alert or protocol error */
	KPX_FAIL_CLOSED,   /* the client closed or reset before finishing */
	KPX_FAIL_TIMEOUT,  /* handshake not done within --handshake-timeout */
	KPX_FAIL_INTERNAL, /* out of memory, offload error */
	KPX_NFAIL
};

/* What made the worker reap completions (polls_total{trigger}). */
enum kpx_trigger {
	KPX_TRIG_THRESHOLD,  /* in-flight ops reached --poll-threshold */
	KPX_TRIG_TIMELINESS, /* in-flight ops >= active connections */
	KPX_TRIG_TIMER,      /* heuristic failover timer, or --poll timer */
	KPX_TRIG_WAKEUP,     /* the armed eventfd woke a sleeping worker */
	KPX_TRIG_BUSY,       /* --poll busy, every loop turn */
	KPX_NTRIG
};

/* Why a connection closed: the access log's reason= and closes_total{reason}. */
enum kpx_reason {
	KPX_R_NONE,
	KPX_R_DONE,                    /* finished normally */
	KPX_R_CLIENT_CLOSE,            /* the client closed, reset or failed first */
	KPX_R_UPSTREAM_CLOSE,          /* the upstream reset or failed */
	KPX_R_UPSTREAM_CONNECT_FAILED, /* connecting to the upstream failed */
	KPX_R_UPSTREAM_TIMEOUT,        /* connecting took longer than --connect-timeout */
	KPX_R_IDLE_TIMEOUT,            /* no traffic for --idle-timeout (or keep-alive timeout) */
	KPX_R_HANDSHAKE_TIMEOUT,       /* no handshake within --handshake-timeout */
	KPX_R_HANDSHAKE_FAILED,        /* TLS error during the handshake */
	KPX_R_TOO_MANY_BYTES,          /* over --max-handshake-bytes before the handshake ended */
	KPX_R_MAX_CONNECTIONS,         /* refused: --max-connections reached */
	KPX_R_DRAIN,                   /* still open at the end of --drain-timeout */
	KPX_R_TLS_ERROR,               /* bad TLS record after the handshake */
	KPX_R_HTTP_ERROR,              /* --respond: malformed request */
	KPX_R_REQUEST_TIMEOUT,         /* --respond: a request not read in time */
	KPX_R_INTERNAL,                /* out of memory or descriptors */
	KPX_NREASON
};

/* kpx_reason_names: each reason as the access log and the closes_total label spell it. */
extern const char *const kpx_reason_names[KPX_NREASON];

struct kpx_wmetrics {
	_Atomic uint64_t accepted, handshakes, failures[KPX_NFAIL];
	_Atomic uint64_t requests, http_errors, closed;
	_Atomic uint64_t active, idle;           /* gauges */
	_Atomic uint64_t inflight[KW_OPK_COUNT]; /* gauges, refreshed every loop turn */
	_Atomic uint64_t polls[KPX_NTRIG], polled_ops;
	_Atomic uint64_t async_pauses; /* SSL_ERROR_WANT_ASYNC */
	_Atomic uint64_t async_queue_wakeups, async_fd_wakeups;
	_Atomic uint64_t job_waits;      /* SSL_ERROR_WANT_ASYNC_JOB */
	_Atomic uint64_t capacity_waits; /* paused with ASYNC_STATUS_EAGAIN */
	/* termination */
	_Atomic uint64_t closes[KPX_NREASON];  /* by close reason */
	_Atomic uint64_t relay_bytes[2];       /* 0: client->upstream, 1: upstream->client */
	_Atomic uint64_t upstream_connects[3]; /* 0: ok, 1: failed, 2: timeout */
	_Atomic uint64_t relays;               /* gauge: connections relaying */
	/* QUIC (--quic-listen) */
	_Atomic uint64_t quic_accepted, quic_handshakes, quic_closed, quic_refused;
	_Atomic uint64_t quic_hs_steps;        /* handshake steps run on handshake threads */
	_Atomic uint64_t quic_hs_held_dropped; /* datagrams dropped while a step ran */
	_Atomic uint64_t quic_conns;           /* gauge */
	_Atomic uint64_t quic_datagrams[2];    /* 0: received, 1: sent */
	_Atomic uint64_t quic_sends, quic_send_errors; /* sendmsg calls (one per GSO batch) */
	_Atomic uint64_t quic_receives;                /* recvmmsg calls that returned datagrams */
	_Atomic uint64_t quic_dropped; /* datagrams dropped before any connection saw them */
	_Atomic uint64_t quic_stateless_resets, quic_version_negotiations;
	_Atomic uint64_t quic_retries, quic_bad_tokens; /* Retry packets sent, tokens refused */
	_Atomic uint64_t quic_requests, quic_http_errors;
	/* --quic-crypto engine */
	_Atomic uint64_t quic_packets_protected, quic_protect_batches, quic_protect_failures;
	_Atomic uint64_t quic_engine_cpu_ns, quic_key_limit_updates;
	_Atomic uint64_t quic_packets_opened, quic_open_failures;
	/* Receive batches: opens by path (0: pre-opened with the batch, 1: alone in ngtcp2's
	 * callbacks), engine runs over a batch, packets pre-opened, of which not used. */
	_Atomic uint64_t quic_rx_opens[2];
	_Atomic uint64_t quic_rx_batches, quic_rx_batch_packets, quic_rx_batch_unused;
};

/* kpx_add adds n to counter c, kpx_set stores v in gauge c: single-writer updates (the
 * owning worker is the only one storing), so a relaxed load and store suffice. */
static inline void kpx_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}
static inline void kpx_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

#endif
