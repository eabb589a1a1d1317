/*
 * metrics.c - keyway-proxy's /metrics (Prometheus text format 0.0.4),
 * rendered with libkeyway's text writer and served by libkeyway's /metrics
 * server on the main thread's loop.
 *
 * Counters are summed over the workers at scrape time with relaxed loads
 * (each worker is the only writer of its block). CPU is per worker, read
 * with the thread's CPU clock: the same user+system time as
 * getrusage(RUSAGE_THREAD), but readable from this thread without waking
 * the worker.
 */
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "keyway/metrics_server.h"
#include "keyway/prom.h"
#include "keyway/provider_api.h"
#include "keyway/rsa_batch.h"
#include "keyway/rsa_batch_plan.h"

struct kpx_metrics {
	struct kpx_worker *workers;
	unsigned nworkers;
	const struct kpx_options *opt;
	struct kw_metrics_server *server;
};

static const char *const fail_names[KPX_NFAIL] = {"tls", "closed", "timeout", "internal"};
static const char *const trig_names[KPX_NTRIG] = {"threshold", "timeliness", "timer", "wakeup",
                                                  "busy"};
static const char *const kind_names[KW_OPK_COUNT] = {"asym", "other"};

/* The labelled families below read neighbouring counters as one array. */
_Static_assert(offsetof(struct kpx_wmetrics, idle) ==
                   offsetof(struct kpx_wmetrics, active) + sizeof(_Atomic uint64_t),
               "active and idle must be adjacent");
_Static_assert(offsetof(struct kpx_wmetrics, async_fd_wakeups) ==
                   offsetof(struct kpx_wmetrics, async_queue_wakeups) + sizeof(_Atomic uint64_t),
               "the two wakeup counters must be adjacent");

static uint64_t sum(const struct kpx_metrics *m, size_t offset)
{
	uint64_t s = 0;
	for (unsigned i = 0; i < m->nworkers; i++) {
		const _Atomic uint64_t *c =
		    (const _Atomic uint64_t *)((const char *)&m->workers[i].m + offset);
		s += atomic_load_explicit(c, memory_order_relaxed);
	}
	return s;
}

/*
 * A family summed from the workers' blocks: with key NULL one unlabelled
 * sample (the counter at offset); otherwise n samples differing by the label
 * key, values[i] naming the i-th counter from offset on.
 */
struct family {
	const char *name, *type, *help, *key;
	const char *const *values;
	size_t n, offset;
};

#define OFF(field) offsetof(struct kpx_wmetrics, field)
#define ONE(name, type, help, field)                                                               \
	{                                                                                          \
		name, type, help, NULL, NULL, 1, OFF(field)                                        \
	}

static const char *const states[2] = {"active", "idle"};
static const char *const via[2] = {"queue", "fd"};
static const char *const dirs[2] = {"client_to_upstream", "upstream_to_client"};
static const char *const results[3] = {"ok", "failed", "timeout"};

/* The families after keyway_proxy_info, in page order. */
static const struct family handshake_families[] = {
    ONE("keyway_proxy_connections_accepted_total", "counter", "TCP connections accepted.",
        accepted),
    ONE("keyway_proxy_handshakes_total", "counter", "TLS handshakes completed.", handshakes),
    {"keyway_proxy_handshake_failures_total", "counter",
     "Connections that ended before their TLS handshake completed, by reason.", "reason",
     fail_names, KPX_NFAIL, OFF(failures)},
    ONE("keyway_proxy_requests_total", "counter", "HTTP requests answered with 200.", requests),
    ONE("keyway_proxy_http_errors_total", "counter",
        "Malformed or unsupported HTTP requests (answered 4xx/5xx and closed).", http_errors),
    {"keyway_proxy_connections", "gauge",
     "Open connections: active (handshaking, reading or writing) and idle keep-alive.", "state",
     states, 2, OFF(active)},
    {"keyway_proxy_inflight_ops", "gauge", "Offload operations in flight, by kind.", "kind",
     kind_names, KW_OPK_COUNT, OFF(inflight)},
    {"keyway_proxy_polls_total", "counter", "Polls of the offload backend, by what triggered them.",
     "trigger", trig_names, KPX_NTRIG, OFF(polls)},
    ONE("keyway_proxy_polled_ops_total", "counter", "Operations completed by polls.", polled_ops),
    ONE("keyway_proxy_async_pauses_total", "counter",
        "Handshakes paused on an offload operation (SSL_ERROR_WANT_ASYNC).", async_pauses),
    {"keyway_proxy_async_wakeups_total", "counter",
     "Paused handshakes notified: through the in-process async queue or a wait fd.", "via", via, 2,
     OFF(async_queue_wakeups)},
    ONE("keyway_proxy_async_job_waits_total", "counter",
        "Handshakes that waited for a free ASYNC job (SSL_ERROR_WANT_ASYNC_JOB).", job_waits),
    ONE("keyway_proxy_capacity_waits_total", "counter",
        "Handshakes that waited because the offload backend was full.", capacity_waits),
};

/* The TLS terminator's families: close reasons, relay bytes, upstream connects. */
static const struct family termination_families[] = {
    {"keyway_proxy_closes_total", "counter",
     "Connections closed (or refused), by reason; the access log's reason=.", "reason",
     kpx_reason_names + 1, KPX_NREASON - 1, OFF(closes[1])},
    {"keyway_proxy_relay_bytes_total", "counter",
     "Plaintext bytes relayed (--upstream), by direction; the PROXY header not counted.",
     "direction", dirs, 2, OFF(relay_bytes)},
    {"keyway_proxy_upstream_connects_total", "counter",
     "Connections to the upstream, by result (ok, failed, timeout).", "result", results, 3,
     OFF(upstream_connects)},
    ONE("keyway_proxy_relays", "gauge", "Connections relaying to the upstream now.", relays),
};

static const char *const qdirs[2] = {"received", "sent"};
static const char *const rx_paths[2] = {"batch", "packet"};

/* HTTP/3 over QUIC (--quic-listen). */
static const struct family quic_families[] = {
    ONE("keyway_proxy_quic_connections_accepted_total", "counter",
        "QUIC connections accepted (client Initials that made a connection).", quic_accepted),
    ONE("keyway_proxy_quic_handshakes_total", "counter", "QUIC handshakes completed.",
        quic_handshakes),
    ONE("keyway_proxy_quic_handshake_steps_total", "counter",
        "QUIC handshake steps run on the handshake threads (keyserver-held keys sign there).",
        quic_hs_steps),
    ONE("keyway_proxy_quic_handshake_held_dropped_total", "counter",
        "Datagrams dropped while their connection's handshake step ran (more than 32 held).",
        quic_hs_held_dropped),
    ONE("keyway_proxy_quic_connections_closed_total", "counter", "QUIC connections ended.",
        quic_closed),
    ONE("keyway_proxy_quic_connections_refused_total", "counter",
        "Client Initials refused: --max-connections reached, or draining.", quic_refused),
    ONE("keyway_proxy_quic_connections", "gauge", "Open QUIC connections.", quic_conns),
    {"keyway_proxy_quic_datagrams_total", "counter", "UDP datagrams, by direction.", "direction",
     qdirs, 2, OFF(quic_datagrams)},
    ONE("keyway_proxy_quic_sends_total", "counter",
        "sendmsg calls on QUIC sockets (one per GSO batch of datagrams).", quic_sends),
    ONE("keyway_proxy_quic_receives_total", "counter",
        "recvmmsg calls on QUIC sockets that returned datagrams (up to 16 buffers each, "
        "GRO-coalesced runs split).",
        quic_receives),
    ONE("keyway_proxy_quic_send_errors_total", "counter",
        "sendmsg calls that failed (datagrams lost; QUIC resends their frames).", quic_send_errors),
    ONE("keyway_proxy_quic_dropped_datagrams_total", "counter",
        "Datagrams dropped before reaching a connection: malformed, unknown connection, "
        "not a valid client Initial.",
        quic_dropped),
    ONE("keyway_proxy_quic_stateless_resets_total", "counter",
        "Stateless resets sent for unknown connection IDs.", quic_stateless_resets),
    ONE("keyway_proxy_quic_version_negotiations_total", "counter",
        "Version Negotiation packets sent.", quic_version_negotiations),
    ONE("keyway_proxy_quic_retries_total", "counter",
        "Retry packets sent (--quic-retry): client Initials asked to prove their address.",
        quic_retries),
    ONE("keyway_proxy_quic_bad_tokens_total", "counter",
        "Client Initials dropped for a Retry token that is forged, expired or from another "
        "address.",
        quic_bad_tokens),
    ONE("keyway_proxy_quic_requests_total", "counter", "HTTP/3 requests answered.", quic_requests),
    ONE("keyway_proxy_quic_http_errors_total", "counter",
        "HTTP/3 requests answered with an error status.", quic_http_errors),
    ONE("keyway_proxy_quic_packets_protected_total", "counter",
        "1-RTT packets sent that Keyway's QUIC engine protected (--quic-crypto engine).",
        quic_packets_protected),
    ONE("keyway_proxy_quic_protect_batches_total", "counter",
        "Engine runs: one per batch of datagrams sent (--quic-crypto engine).",
        quic_protect_batches),
    ONE("keyway_proxy_quic_protect_failures_total", "counter",
        "Packets the engine failed to protect (their batch was not sent).", quic_protect_failures),
    ONE("keyway_proxy_quic_key_limit_updates_total", "counter",
        "Key updates started because the engine's per-key count reached its limit.",
        quic_key_limit_updates),
    ONE("keyway_proxy_quic_packets_opened_total", "counter",
        "1-RTT packets received that Keyway's QUIC engine opened (--quic-crypto engine).",
        quic_packets_opened),
    ONE("keyway_proxy_quic_open_failures_total", "counter",
        "1-RTT packets received that failed authentication in the engine (dropped).",
        quic_open_failures),
    {"keyway_proxy_quic_rx_opens_total", "counter",
     "1-RTT packets received that the engine opened, by path: batch (opened with their "
     "receive batch in one engine run, checked in ngtcp2's callbacks) or packet (opened "
     "alone in the callbacks: key updates, changed packet number decoding, held datagrams).",
     "path", rx_paths, 2, OFF(quic_rx_opens)},
    ONE("keyway_proxy_quic_rx_batches_total", "counter",
        "Engine runs over the short-header packets of a receive batch (--quic-crypto engine).",
        quic_rx_batches),
    ONE("keyway_proxy_quic_rx_batch_packets_total", "counter",
        "Short-header packets opened ahead with their receive batch.", quic_rx_batch_packets),
    ONE("keyway_proxy_quic_rx_batch_unused_total", "counter",
        "Packets opened ahead whose result ngtcp2's callbacks did not take (opened again "
        "alone, or not read).",
        quic_rx_batch_unused),
};

/* families writes the n families of f, each summed over the workers. */
static void families(const struct kpx_metrics *m, struct kw_prom *p, const struct family *f,
                     size_t n)
{
	for (; n > 0; f++, n--) {
		if (f->key == NULL) {
			kw_prom_single(p, f->name, f->type, f->help, sum(m, f->offset));
			continue;
		}
		kw_prom_family(p, f->name, f->type, f->help);
		for (size_t i = 0; i < f->n; i++)
			kw_prom_u64(p, f->name,
			            (const struct kw_prom_label[]){{f->key, f->values[i]}}, 1,
			            sum(m, f->offset + i * sizeof(_Atomic uint64_t)));
	}
}

#define FAMILIES(table) families(m, p, table, sizeof(table) / sizeof(table[0]))

/* The built-in provider's counters: the keyway_provider_* twins of KEYWAY_STATS_FILE. */
static void provider_counters(struct kw_prom *p)
{
	struct kw_provider_stats s;
	kw_provider_stats(&s);
	const struct {
		const char *name, *help;
		uint64_t v;
	} rows[] = {
	    {"ops_submitted", "Operations the provider offloaded.", s.ops_submitted},
	    {"pauses", "Times an operation paused its ASYNC job.", s.pauses},
	    {"spurious_resumes", "Jobs resumed before their operation completed (paused again).",
	     s.spurious_resumes},
	    {"eagain", "Pauses with ASYNC_STATUS_EAGAIN: the backend was full.", s.eagain},
	    {"callback_wakeups", "Paused jobs notified through the async callback.",
	     s.callback_wakeups},
	    {"fd_wakeups", "Paused jobs notified through their wait eventfd.", s.fd_wakeups},
	    {"eventfds_created", "Wait eventfds created (fd notification).", s.eventfds_created},
	    {"retries", "Keyless operations sent again after a failed try.", s.retries},
	    {"failovers", "Retries that went to another keyserver.", s.failovers},
	    {"fallbacks", "Operations computed with a fallback key: no keyserver answered in time.",
	     s.fallbacks},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char name[96];
		snprintf(name, sizeof(name), "keyway_provider_%s_total", rows[i].name);
		kw_prom_single(p, name, "counter", rows[i].help, rows[i].v);
	}
}

/* Multi-buffer RSA on the crypto threads (--backend threads, --rsa-batch): process totals. */
static void rsa_batch_counters(struct kw_prom *p)
{
	struct kw_rsa_batch_counts c;
	struct kw_rsa_batch_stats k;
	kw_op_batch_totals(&c);
	kw_rsa_batch_stats(&k);
	kw_prom_single(p, "keyway_proxy_rsa_batches_total", "counter",
	               "Multi-buffer RSA batches the crypto threads ran.", c.batches);
	kw_prom_single(p, "keyway_proxy_rsa_batch_lanes_total", "counter",
	               "RSA operations computed in those batches.", c.lanes);
	kw_prom_single(
	    p, "keyway_proxy_rsa_batch_fallbacks_total", "counter",
	    "Batchable RSA operations computed by OpenSSL: too few queued to pay a batch.",
	    c.fallbacks);
	kw_prom_single(p, "keyway_proxy_rsa_batch_verify_failures_total", "counter",
	               "Batch results that failed the public-key check (recomputed by OpenSSL).",
	               k.verify_failed);
}

/* The connection limit's gauges (not summed: one count for all workers). */
static void limits(const struct kpx_metrics *m, struct kw_prom *p)
{
	kw_prom_single(p, "keyway_proxy_open_connections", "gauge",
	               "Client connections open now, all workers (what --max-connections limits).",
	               kpx_conn_slots());
	kw_prom_single(p, "keyway_proxy_max_connections", "gauge",
	               "--max-connections (0: no limit).", m->opt->max_connections);
}

/* info writes keyway_proxy_info: the configuration as labels. */
static void info(const struct kpx_metrics *m, struct kw_prom *p)
{
	static const char *const backends[] = {"inline", "threads", "keyless"};
	const struct kpx_options *o = m->opt;
	char workers[16];

	snprintf(workers, sizeof(workers), "%u", m->nworkers);
	const struct kw_prom_label l[] = {
	    {"backend", backends[o->backend]},
	    {"async", o->async ? "on" : "off"},
	    {"notify", o->notify == KPX_NOTIFY_FD ? "fd" : "callback"},
	    {"poll", o->poll == KPX_POLL_TIMER  ? "timer"
	             : o->poll == KPX_POLL_BUSY ? "busy"
	                                        : "heuristic"},
	    {"workers", workers},
	    {"rsa_batch", o->rsa_batch ? "on" : "off"},
	};
	kw_prom_family(p, "keyway_proxy_info", "gauge", "Configuration of this keyway-proxy.");
	kw_prom_sample(p, "keyway_proxy_info", l, sizeof(l) / sizeof(l[0]), "1");
}

/* worker_cpu writes each worker thread's CPU time, read with its thread CPU clock. */
static void worker_cpu(const struct kpx_metrics *m, struct kw_prom *p)
{
	kw_prom_family(p, "keyway_proxy_worker_cpu_seconds_total", "counter",
	               "CPU time (user+system) of each worker thread.");
	for (unsigned i = 0; i < m->nworkers; i++) {
		clockid_t cid;
		struct timespec ts = {0};
		char worker[16], seconds[48];
		if (m->workers[i].started && pthread_getcpuclockid(m->workers[i].tid, &cid) == 0)
			clock_gettime(cid, &ts);
		snprintf(worker, sizeof(worker), "%u", i);
		snprintf(seconds, sizeof(seconds), "%.6f",
		         (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
		kw_prom_sample(p, "keyway_proxy_worker_cpu_seconds_total",
		               (const struct kw_prom_label[]){{"worker", worker}}, 1, seconds);
	}
}

int kpx_metrics_render(struct kpx_metrics *m, struct kw_buf *b)
{
	struct kw_prom pr, *p = &pr;

	kw_prom_init(p, b);
	info(m, p);
	FAMILIES(handshake_families);
	FAMILIES(termination_families);
	if (m->opt->quic_listen != NULL) {
		FAMILIES(quic_families);
		char secs[48];
		kw_prom_ns_seconds(sum(m, OFF(quic_engine_cpu_ns)), secs, sizeof(secs));
		kw_prom_family(
		    p, "keyway_proxy_quic_engine_cpu_seconds_total", "counter",
		    "CPU time spent in the QUIC engine protecting and opening packets: the "
		    "workers' (inline) or their crypto threads' (--quic-sched).");
		kw_prom_sample(p, "keyway_proxy_quic_engine_cpu_seconds_total", NULL, 0, secs);
	}
	limits(m, p);
	rsa_batch_counters(p);
	provider_counters(p);
	worker_cpu(m, p);
	return p->rc;
}

static int render_page(void *arg, struct kw_buf *out)
{
	return kpx_metrics_render(arg, out);
}

int kpx_metrics_serve(struct kpx_metrics **out, struct kw_loop *loop, struct kw_addr *addr,
                      struct kpx_worker *workers, unsigned nworkers, const struct kpx_options *opt)
{
	struct kpx_metrics *m = malloc(sizeof(*m));
	int rc = m != NULL ? 0 : -ENOMEM;

	if (m != NULL) {
		*m = (struct kpx_metrics){.workers = workers, .nworkers = nworkers, .opt = opt};
		rc = kw_metrics_server_new(&m->server, loop, addr, render_page, m);
	}
	if (rc < 0) {
		free(m);
		return rc;
	}
	kw_addr_set_port(addr, kw_metrics_server_port(m->server));
	*out = m;
	return 0;
}

void kpx_metrics_free(struct kpx_metrics *m)
{
	if (m != NULL)
		kw_metrics_server_free(m->server);
	free(m);
}
