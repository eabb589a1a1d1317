/* metrics.c - Prometheus registry and the /metrics HTTP server (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "keyway/metrics_server.h"
#include "keyway/prom.h"
#include "keyway/protocol.h"
#include "keyway/rsa_batch.h"

struct kwd_metrics {
	struct kwd_wmetrics **workers;
	unsigned nworkers;
	_Atomic uint64_t keys;
	_Atomic uint64_t reloads[2]; /* error, ok */
	struct kwd_devpool *devpool; /* set before serving; NULL without --pkcs11 */

	struct kw_metrics_server *server; /* NULL when not serving */
};

/* gokeyless: prometheus.ExponentialBuckets(1e-4, 2.0, 15), in Go's float formatting. */
static const char *const bucket_le[KWD_HIST_BUCKETS] = {
    "0.0001", "0.0002", "0.0004", "0.0008", "0.0016", "0.0032", "0.0064", "0.0128",
    "0.0256", "0.0512", "0.1024", "0.2048", "0.4096", "0.8192", "1.6384",
};

void kwd_hist_observe(struct kwd_hist *h, uint64_t ns)
{
	unsigned i = 0;
	uint64_t bound = 100000; /* 100 us */
	while (i < KWD_HIST_BUCKETS && ns > bound) {
		bound <<= 1;
		i++;
	}
	kwd_counter_add(&h->bucket[i], 1);
	kwd_counter_add(&h->sum_ns, ns);
}

int kwd_metrics_new(struct kwd_metrics **out)
{
	struct kwd_metrics *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	*out = m;
	return 0;
}

int kwd_metrics_add_worker(struct kwd_metrics *m, struct kwd_wmetrics *wm)
{
	struct kwd_wmetrics **p = realloc(m->workers, (m->nworkers + 1) * sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p[m->nworkers++] = wm;
	m->workers = p;
	return 0;
}

void kwd_metrics_set_keys(struct kwd_metrics *m, uint64_t n)
{
	atomic_store_explicit(&m->keys, n, memory_order_relaxed);
}

void kwd_metrics_reload(struct kwd_metrics *m, int ok)
{
	atomic_fetch_add_explicit(&m->reloads[ok ? 1 : 0], 1, memory_order_relaxed);
}

/* ---- rendering ---- */

static uint64_t load(const _Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static void render_hist(struct kwd_metrics *m, struct kw_prom *p, bool total)
{
	const char *name = total ? "keyless_request_total_duration_per_opcode"
	                         : "keyless_request_exec_duration_per_opcode";
	kw_prom_family(p, name, "histogram",
	               total ? "Total time to satisfy a request including time in queues, broken "
	                       "down by type and error code."
	                     : "Time to execute a request not including time in queues, broken "
	                       "down by type and error code.");
	for (unsigned f = 0; f < KWD_NFAMILY; f++) {
		for (unsigned e = 0; e < KWD_NERR; e++) {
			uint64_t bucket[KWD_HIST_BUCKETS + 1] = {0}, sum = 0, count = 0;
			for (unsigned w = 0; w < m->nworkers; w++) {
				const struct kwd_hist *h = total ? &m->workers[w]->total[f][e]
				                                 : &m->workers[w]->exec[f][e];
				for (unsigned i = 0; i <= KWD_HIST_BUCKETS; i++)
					bucket[i] += load(&h->bucket[i]);
				sum += load(&h->sum_ns);
			}
			for (unsigned i = 0; i <= KWD_HIST_BUCKETS; i++)
				count += bucket[i];
			if (count == 0)
				continue;
			char sum_s[32];
			kw_prom_ns_seconds(sum, sum_s, sizeof(sum_s));
			const struct kw_prom_label l[] = {
			    {"error", e < KWD_NERR - 1 ? kw_proto_error_string((uint8_t)e)
			                               : "unknown error"},
			    {"type", kw_family_name((enum kw_op_family)f)},
			};
			kw_prom_histogram(p, name, l, 2, bucket_le, bucket, KWD_HIST_BUCKETS,
			                  sum_s);
		}
	}
}

/* sum_workers adds field[index] (a uint64 counter array at offset) over the workers. */
static uint64_t sum_workers(struct kwd_metrics *m, size_t offset, unsigned index)
{
	uint64_t v = 0;
	offset += index * sizeof(_Atomic uint64_t);
	for (unsigned w = 0; w < m->nworkers; w++)
		v += load((const _Atomic uint64_t *)((const char *)m->workers[w] + offset));
	return v;
}

/* by_transport writes one sample per transport of a per-worker counter array. */
static void by_transport(struct kwd_metrics *m, struct kw_prom *p, const char *name, size_t offset)
{
	static const char *const transport[KWD_NTRANSPORT] = {"tcp", "unix"};
	for (unsigned t = 0; t < KWD_NTRANSPORT; t++)
		kw_prom_u64(p, name, (const struct kw_prom_label[]){{"transport", transport[t]}}, 1,
		            sum_workers(m, offset, t));
}

void kwd_metrics_set_devpool(struct kwd_metrics *m, struct kwd_devpool *pool)
{
	m->devpool = pool;
}

/* render_pkcs11 writes the device threads' families: operations, latency, queue. */
static void render_pkcs11(struct kwd_metrics *m, struct kw_prom *p)
{
	static const char *const results[KWD_DEV_NRES] = {"ok", "crypto_error", "internal_error",
	                                                  "cancelled"};
	struct kwd_devpool_stats st;

	kwd_devpool_stats(m->devpool, &st);
	kw_prom_family(p, "keyway_keywayd_pkcs11_operations_total", "counter",
	               "PKCS#11 token operations by result.");
	for (int r = 0; r < KWD_DEV_NRES; r++)
		kw_prom_u64(p, "keyway_keywayd_pkcs11_operations_total",
		            (const struct kw_prom_label[]){{"result", results[r]}}, 1, st.ops[r]);
	kw_prom_family(p, "keyway_keywayd_pkcs11_operation_duration_seconds", "histogram",
	               "Time of PKCS#11 token operations on the token, by result.");
	/* Cancelled operations never ran on the token: no latency of theirs. */
	for (int r = 0; r < KWD_DEV_NTIMED; r++) {
		uint64_t bucket[KWD_HIST_BUCKETS + 1], sum_ns;
		char sum_s[32];
		kwd_devpool_latency(m->devpool, (enum kwd_dev_result)r, bucket, &sum_ns);
		kw_prom_ns_seconds(sum_ns, sum_s, sizeof(sum_s));
		kw_prom_histogram(p, "keyway_keywayd_pkcs11_operation_duration_seconds",
		                  (const struct kw_prom_label[]){{"result", results[r]}}, 1,
		                  bucket_le, bucket, KWD_HIST_BUCKETS, sum_s);
	}
	kw_prom_single(p, "keyway_keywayd_pkcs11_queue_depth", "gauge",
	               "PKCS#11 operations waiting for a device thread.", st.queued);
	kw_prom_single(p, "keyway_keywayd_pkcs11_operations_running", "gauge",
	               "PKCS#11 operations on a device thread now.", st.running);
	kw_prom_single(p, "keyway_keywayd_pkcs11_device_threads", "gauge",
	               "PKCS#11 device threads (--pkcs11-threads).",
	               kwd_devpool_threads(m->devpool));
}

int kwd_metrics_render(struct kwd_metrics *m, struct kw_buf *b)
{
	struct kw_prom p;

	kw_prom_init(&p, b);
	kw_prom_family(&p, "keyless_requests", "counter", "Total number of requests by opcode.");
	for (unsigned op = 0; op < 256; op++) {
		uint64_t v = sum_workers(m, offsetof(struct kwd_wmetrics, requests), op);
		if (v == 0)
			continue;
		char undeclared[16];
		const char *name = kw_opcode_name((uint8_t)op);
		if (name == NULL) { /* what Go's stringer prints for an undeclared Op */
			snprintf(undeclared, sizeof(undeclared), "Op(%u)", op);
			name = undeclared;
		}
		kw_prom_u64(&p, "keyless_requests",
		            (const struct kw_prom_label[]){{"opcode", name}}, 1, v);
	}
	render_hist(m, &p, false);
	render_hist(m, &p, true);

	kw_prom_single(&p, "keyless_failed_connection", "counter",
	               "Number of connection/transport failure, in tls handshake and etc.",
	               sum_workers(m, offsetof(struct kwd_wmetrics, failed_conns), 0));
	kw_prom_single(&p, "keyway_keywayd_connections_evicted_total", "counter",
	               "Connections still in their TLS handshake closed to admit a new one at "
	               "--max-connections.",
	               sum_workers(m, offsetof(struct kwd_wmetrics, evicted), 0));
	kw_prom_single(&p, "keyway_keywayd_connections_refused_total", "counter",
	               "New connections closed at once: at --max-connections with none to evict, "
	               "or out of descriptors.",
	               sum_workers(m, offsetof(struct kwd_wmetrics, refused), 0));
	kw_prom_family(&p, "keyway_keywayd_acl_denied_total", "counter",
	               "Key requests --acl denied (answered as key not found), by reason: no rule "
	               "for the client, none for the key, none for the operation.");
	static const char *const reasons[KWD_NACL_REASON] = {"client", "key", "operation"};
	for (unsigned r = 0; r < KWD_NACL_REASON; r++)
		kw_prom_u64(&p, "keyway_keywayd_acl_denied_total",
		            (const struct kw_prom_label[]){{"reason", reasons[r]}}, 1,
		            sum_workers(m, offsetof(struct kwd_wmetrics, acl_denied), r));
	kw_prom_single(&p, "keyway_keywayd_connections_revoked_total", "counter",
	               "Open connections closed after a reload because their client certificate "
	               "no longer verified (revoked, or its CA removed).",
	               sum_workers(m, offsetof(struct kwd_wmetrics, reverify_closed), 0));
	kw_prom_single(&p, "keyway_keywayd_rsa_batch_kernel", "gauge",
	               "1 when the AVX-512 IFMA multi-buffer RSA kernel runs on this CPU.",
	               kw_rsa_batch_available() ? 1 : 0);
	kw_prom_single(&p, "keyway_keywayd_rsa_batches_total", "counter",
	               "Multi-buffer RSA batches run (--rsa-batch).",
	               sum_workers(m, offsetof(struct kwd_wmetrics, rsa_batches), 0));
	kw_prom_single(&p, "keyway_keywayd_rsa_batch_lanes_total", "counter",
	               "RSA requests computed in those batches.",
	               sum_workers(m, offsetof(struct kwd_wmetrics, rsa_batch_lanes), 0));
	kw_prom_single(&p, "keyway_keywayd_rsa_batch_fallbacks_total", "counter",
	               "Batchable RSA requests computed by OpenSSL: too few in a loop turn to pay "
	               "a batch.",
	               sum_workers(m, offsetof(struct kwd_wmetrics, rsa_batch_fallbacks), 0));
	kw_prom_family(&p, "keyless_connections", "gauge", "Open client connections by transport.");
	by_transport(m, &p, "keyless_connections", offsetof(struct kwd_wmetrics, conns_open));
	kw_prom_family(&p, "keyless_connections_total", "counter",
	               "Client connections accepted by transport.");
	by_transport(m, &p, "keyless_connections_total",
	             offsetof(struct kwd_wmetrics, conns_total));
	kw_prom_single(&p, "keyless_connection_buffer_bytes", "gauge",
	               "Heap held by the buffers of open client connections.",
	               sum_workers(m, offsetof(struct kwd_wmetrics, buffer_bytes), 0));
	kw_prom_single(&p, "keyless_keys", "gauge", "Number of private keys loaded.",
	               load(&m->keys));
	kw_prom_family(&p, "keyless_reloads_total", "counter",
	               "Key and TLS reloads (SIGHUP) by result.");
	kw_prom_u64(&p, "keyless_reloads_total", (const struct kw_prom_label[]){{"result", "ok"}},
	            1, load(&m->reloads[1]));
	kw_prom_u64(&p, "keyless_reloads_total",
	            (const struct kw_prom_label[]){{"result", "error"}}, 1, load(&m->reloads[0]));
	if (m->devpool != NULL)
		render_pkcs11(m, &p);
	return p.rc;
}

/* ---- the HTTP server ---- */

static int render_page(void *arg, struct kw_buf *out)
{
	return kwd_metrics_render(arg, out);
}

int kwd_metrics_serve(struct kwd_metrics *m, struct kw_loop *loop, struct kw_addr *addr, char *err,
                      size_t errlen)
{
	char name[300];
	int rc = kw_metrics_server_new(&m->server, loop, addr, render_page, m);
	if (rc < 0) {
		kw_addr_format(addr, name, sizeof(name));
		snprintf(err, errlen, "--metrics: cannot listen on %s: %s; fix: %s", name,
		         strerror(-rc),
		         rc == -EADDRINUSE ? "choose another --metrics port" : "check --metrics");
		return rc;
	}
	kw_addr_set_port(addr, kw_metrics_server_port(m->server));
	return 0;
}

void kwd_metrics_free(struct kwd_metrics *m)
{
	if (m == NULL)
		return;
	kw_metrics_server_free(m->server);
	free(m->workers);
	free(m);
}
