/*
 * metrics.h - keywayd's Prometheus metrics, named as gokeyless v1.17.6 names
 * them, and the small HTTP server that exposes them on --metrics.
 *
 * Each worker owns a struct kwd_wmetrics and is its only writer: updates are
 * a relaxed load and store, no lock and no locked instruction. The metrics
 * thread reads them with relaxed loads and sums the workers at scrape time,
 * so a scrape may be a few events behind but never blocks a worker.
 */
#ifndef KEYWAYD_METRICS_H
#define KEYWAYD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "keyway/buf.h"
#include "keyway/loop.h"
#include "keyway/net.h"

#define KWD_HIST_BUCKETS 15 /* 100 us doubling to 1.6384 s, as gokeyless */
#define KWD_NFAMILY 7       /* enum kw_op_family */
#define KWD_NERR 13         /* error codes 0x00..0x0B, then "unknown error" */
#define KWD_NTRANSPORT 2    /* enum kwd_transport */
#define KWD_NACL_REASON 3   /* the denials of enum kwd_acl_verdict */

/* How a connection reached keywayd (indexes the per-transport counters). */
enum kwd_transport { KWD_TRANSPORT_TCP = 0, KWD_TRANSPORT_UNIX };
_Static_assert(KWD_TRANSPORT_UNIX + 1 == KWD_NTRANSPORT,
               "KWD_NTRANSPORT counts enum kwd_transport");

/* Bucket counts are not cumulative here; the last one is +Inf. */
struct kwd_hist {
	_Atomic uint64_t bucket[KWD_HIST_BUCKETS + 1];
	_Atomic uint64_t sum_ns;
};

struct kwd_wmetrics {
	_Atomic uint64_t requests[256];               /* keyless_requests by opcode */
	struct kwd_hist exec[KWD_NFAMILY][KWD_NERR];  /* time inside kwd_exec_run */
	struct kwd_hist total[KWD_NFAMILY][KWD_NERR]; /* frame read to response written */
	_Atomic uint64_t conns_open[KWD_NTRANSPORT];  /* gauge: opened minus closed */
	_Atomic uint64_t conns_total[KWD_NTRANSPORT];
	_Atomic uint64_t failed_conns; /* TLS handshake failures/timeouts */
	_Atomic uint64_t buffer_bytes; /* gauge: heap held by connection buffers */
	_Atomic uint64_t evicted;      /* handshaking connections displaced at the cap */
	_Atomic uint64_t refused;      /* new connections closed at the cap (none to evict) */
	_Atomic uint64_t acl_denied[KWD_NACL_REASON]; /* requests --acl denied, by reason */
	_Atomic uint64_t reverify_closed; /* closed when their certificate no longer verified */
	_Atomic uint64_t rsa_batches;     /* multi-buffer RSA batches run (batch.c) */
	_Atomic uint64_t rsa_batch_lanes;
	_Atomic uint64_t rsa_batch_fallbacks; /* batchable requests computed by OpenSSL alone */
};

/* Single-writer increment: the owner thread is the only one storing. */
static inline void kwd_counter_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}

static inline void kwd_gauge_dec(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - 1,
	                      memory_order_relaxed);
}

/* kwd_hist_observe records one duration (owner thread only). */
void kwd_hist_observe(struct kwd_hist *h, uint64_t ns);

/* kwd_metrics_error_index maps a protocol error code to its label slot. */
static inline unsigned kwd_metrics_error_index(uint8_t err)
{
	return err < KWD_NERR - 1 ? err : KWD_NERR - 1;
}

struct kwd_metrics;

/* kwd_metrics_new allocates the registry; 0 or -ENOMEM. */
int kwd_metrics_new(struct kwd_metrics **out);
/* kwd_metrics_free stops serving and frees; the workers' blocks are not freed. NULL ok. */
void kwd_metrics_free(struct kwd_metrics *m);

/* kwd_metrics_add_worker registers a worker's block; call before the workers start. */
int kwd_metrics_add_worker(struct kwd_metrics *m, struct kwd_wmetrics *wm);

struct kwd_devpool;
/*
 * kwd_metrics_set_devpool adds the PKCS#11 device threads' counters
 * (keyway_keywayd_pkcs11_*) to the page; pool outlives the metrics server.
 */
void kwd_metrics_set_devpool(struct kwd_metrics *m, struct kwd_devpool *pool);

/* Process-wide values, written by the main thread. */
void kwd_metrics_set_keys(struct kwd_metrics *m, uint64_t n);
void kwd_metrics_reload(struct kwd_metrics *m, int ok);

/* kwd_metrics_render appends the Prometheus text format 0.0.4 to out; 0 or -ENOMEM. */
int kwd_metrics_render(struct kwd_metrics *m, struct kw_buf *out);

/*
 * kwd_metrics_serve starts libkeyway's /metrics server (keyway/metrics_server.h:
 * GET /metrics, 404/405/400 otherwise, one request per connection, idle
 * timeout, connection cap) on addr in loop, and writes the port really
 * listened on into addr (so that port 0 can be logged as the kernel's pick).
 * Returns 0 or -errno with the reason in err.
 */
int kwd_metrics_serve(struct kwd_metrics *m, struct kw_loop *loop, struct kw_addr *addr, char *err,
                      size_t errlen);

#endif
