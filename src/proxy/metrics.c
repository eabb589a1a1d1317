/*
 * metrics.c - keyway-proxy's /metrics (Prometheus text format 0.0.4),
 * served from the main thread's loop.
 *
 * Counters are summed over the workers at scrape time with relaxed loads
 * (each worker is the only writer of its block). CPU is per worker, read
 * with the thread's CPU clock: the same user+system time as
 * getrusage(RUSAGE_THREAD), but readable from this thread without waking
 * the worker.
 */
#include "metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "keyway/log.h"
#include "keyway/provider_api.h"

#define REQ_MAX 4096

struct kpx_metrics {
	struct kpx_worker *workers;
	unsigned nworkers;
	const struct kpx_options *opt;
	struct kw_loop *loop;
	int lfd;
	struct kw_io lio;
};

struct mconn {
	struct kpx_metrics *m;
	int fd;
	struct kw_io io;
	struct kw_buf in, out;
};

static const char *const fail_names[KPX_NFAIL] = {"tls", "closed", "timeout", "internal"};
static const char *const trig_names[KPX_NTRIG] = {"threshold", "timeliness", "timer", "wakeup",
                                                  "busy"};
static const char *const kind_names[KW_OPK_COUNT] = {"asym", "other"};

static int appendf(struct kw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int appendf(struct kw_buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	return kw_buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

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

#define SUM(field) sum(m, offsetof(struct kpx_wmetrics, field))

static void family(struct kw_buf *b, const char *name, const char *type, const char *help)
{
	appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* single writes a family with one unlabelled sample. */
static void single(struct kw_buf *b, const char *name, const char *type, const char *help,
                   uint64_t v)
{
	family(b, name, type, help);
	appendf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* The built-in provider's counters: the keyway_provider_* twins of KEYWAY_STATS_FILE. */
static void provider_counters(struct kw_buf *b)
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
		single(b, name, "counter", rows[i].help, rows[i].v);
	}
}

/* The TLS terminator's families: close reasons, relay bytes, upstream connects, limits. */
static void termination(struct kpx_metrics *m, struct kw_buf *b)
{
	static const char *const dirs[2] = {"client_to_upstream", "upstream_to_client"};
	static const char *const results[3] = {"ok", "failed", "timeout"};

	family(b, "keyway_proxy_closes_total", "counter",
	       "Connections closed (or refused), by reason; the access log's reason=.");
	for (int r = 1; r < KPX_NREASON; r++)
		appendf(b, "keyway_proxy_closes_total{reason=\"%s\"} %llu\n", kpx_reason_names[r],
		        (unsigned long long)SUM(closes[r]));
	family(b, "keyway_proxy_relay_bytes_total", "counter",
	       "Plaintext bytes relayed (--upstream), by direction; the PROXY header not counted.");
	for (int d = 0; d < 2; d++)
		appendf(b, "keyway_proxy_relay_bytes_total{direction=\"%s\"} %llu\n", dirs[d],
		        (unsigned long long)SUM(relay_bytes[d]));
	family(b, "keyway_proxy_upstream_connects_total", "counter",
	       "Connections to the upstream, by result (ok, failed, timeout).");
	for (int r = 0; r < 3; r++)
		appendf(b, "keyway_proxy_upstream_connects_total{result=\"%s\"} %llu\n", results[r],
		        (unsigned long long)SUM(upstream_connects[r]));
	single(b, "keyway_proxy_relays", "gauge", "Connections relaying to the upstream now.",
	       SUM(relays));
	family(b, "keyway_proxy_open_connections", "gauge",
	       "Client connections open now, all workers (what --max-connections limits).");
	appendf(b, "keyway_proxy_open_connections %u\n", kpx_conn_slots());
	family(b, "keyway_proxy_max_connections", "gauge", "--max-connections (0: no limit).");
	appendf(b, "keyway_proxy_max_connections %u\n", m->opt->max_connections);
}

int kpx_metrics_render(struct kpx_metrics *m, struct kw_buf *b)
{
	static const char *const backends[] = {"inline", "threads", "keyless"};
	const struct kpx_options *o = m->opt;

	family(b, "keyway_proxy_info", "gauge", "Configuration of this keyway-proxy.");
	appendf(b,
	        "keyway_proxy_info{backend=\"%s\",async=\"%s\",notify=\"%s\",poll=\"%s\","
	        "workers=\"%u\"} 1\n",
	        backends[o->backend], o->async ? "on" : "off",
	        o->notify == KPX_NOTIFY_FD ? "fd" : "callback",
	        o->poll == KPX_POLL_TIMER  ? "timer"
	        : o->poll == KPX_POLL_BUSY ? "busy"
	                                   : "heuristic",
	        m->nworkers);
	single(b, "keyway_proxy_connections_accepted_total", "counter", "TCP connections accepted.",
	       SUM(accepted));
	single(b, "keyway_proxy_handshakes_total", "counter", "TLS handshakes completed.",
	       SUM(handshakes));
	family(b, "keyway_proxy_handshake_failures_total", "counter",
	       "Connections that ended before their TLS handshake completed, by reason.");
	for (int i = 0; i < KPX_NFAIL; i++)
		appendf(b, "keyway_proxy_handshake_failures_total{reason=\"%s\"} %llu\n",
		        fail_names[i], (unsigned long long)SUM(failures[i]));
	single(b, "keyway_proxy_requests_total", "counter", "HTTP requests answered with 200.",
	       SUM(requests));
	single(b, "keyway_proxy_http_errors_total", "counter",
	       "Malformed or unsupported HTTP requests (answered 4xx/5xx and closed).",
	       SUM(http_errors));
	family(b, "keyway_proxy_connections", "gauge",
	       "Open connections: active (handshaking, reading or writing) and idle keep-alive.");
	appendf(b, "keyway_proxy_connections{state=\"active\"} %llu\n",
	        (unsigned long long)SUM(active));
	appendf(b, "keyway_proxy_connections{state=\"idle\"} %llu\n",
	        (unsigned long long)SUM(idle));
	family(b, "keyway_proxy_inflight_ops", "gauge", "Offload operations in flight, by kind.");
	for (int k = 0; k < KW_OPK_COUNT; k++)
		appendf(b, "keyway_proxy_inflight_ops{kind=\"%s\"} %llu\n", kind_names[k],
		        (unsigned long long)SUM(inflight[k]));
	family(b, "keyway_proxy_polls_total", "counter",
	       "Polls of the offload backend, by what triggered them.");
	for (int t = 0; t < KPX_NTRIG; t++)
		appendf(b, "keyway_proxy_polls_total{trigger=\"%s\"} %llu\n", trig_names[t],
		        (unsigned long long)SUM(polls[t]));
	single(b, "keyway_proxy_polled_ops_total", "counter", "Operations completed by polls.",
	       SUM(polled_ops));
	single(b, "keyway_proxy_async_pauses_total", "counter",
	       "Handshakes paused on an offload operation (SSL_ERROR_WANT_ASYNC).",
	       SUM(async_pauses));
	family(b, "keyway_proxy_async_wakeups_total", "counter",
	       "Paused handshakes notified: through the in-process async queue or a wait fd.");
	appendf(b, "keyway_proxy_async_wakeups_total{via=\"queue\"} %llu\n",
	        (unsigned long long)SUM(async_queue_wakeups));
	appendf(b, "keyway_proxy_async_wakeups_total{via=\"fd\"} %llu\n",
	        (unsigned long long)SUM(async_fd_wakeups));
	single(b, "keyway_proxy_async_job_waits_total", "counter",
	       "Handshakes that waited for a free ASYNC job (SSL_ERROR_WANT_ASYNC_JOB).",
	       SUM(job_waits));
	single(b, "keyway_proxy_capacity_waits_total", "counter",
	       "Handshakes that waited because the offload backend was full.", SUM(capacity_waits));
	termination(m, b);
	provider_counters(b);
	family(b, "keyway_proxy_worker_cpu_seconds_total", "counter",
	       "CPU time (user+system) of each worker thread.");
	for (unsigned i = 0; i < m->nworkers; i++) {
		clockid_t cid;
		struct timespec ts = {0};
		if (m->workers[i].started && pthread_getcpuclockid(m->workers[i].tid, &cid) == 0)
			clock_gettime(cid, &ts);
		appendf(b, "keyway_proxy_worker_cpu_seconds_total{worker=\"%u\"} %.6f\n", i,
		        (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
	}
	return 0;
}

static void mconn_free(void *p)
{
	struct mconn *c = p;
	kw_buf_cleanup(&c->in);
	kw_buf_cleanup(&c->out);
	free(c);
}

static void mconn_close(struct kw_loop *loop, struct mconn *c)
{
	kw_io_stop(loop, &c->io);
	close(c->fd);
	if (kw_loop_defer_free(loop, mconn_free, c) < 0)
		kw_warn("metrics: out of memory; leaking a connection");
}

static void respond(struct mconn *c)
{
	const char *req = (const char *)kw_buf_head(&c->in);
	struct kw_buf body = KW_BUF_INIT;
	bool ok = strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET /metrics?", 13) == 0;
	if (ok)
		kpx_metrics_render(c->m, &body);
	else
		kw_buf_append(&body, "not found; try /metrics\n", 24);
	appendf(
	    &c->out,
	    "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    ok ? "200 OK" : "404 Not Found",
	    ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain", kw_buf_unread(&body));
	kw_buf_append(&c->out, kw_buf_head(&body), kw_buf_unread(&body));
	kw_buf_cleanup(&body);
}

static void mconn_io(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct mconn *c = arg;
	if (kw_buf_unread(&c->out) == 0) {
		if (kw_buf_reserve(&c->in, 1024) < 0) {
			mconn_close(loop, c);
			return;
		}
		ssize_t n = recv(fd, kw_buf_tail(&c->in), c->in.cap - c->in.len - 1, 0);
		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				mconn_close(loop, c);
			return;
		}
		c->in.len += (size_t)n;
		c->in.data[c->in.len] = 0;
		if (strstr((const char *)kw_buf_head(&c->in), "\r\n\r\n") == NULL) {
			if (kw_buf_unread(&c->in) > REQ_MAX)
				mconn_close(loop, c);
			return;
		}
		respond(c);
	}
	ssize_t n = send(fd, kw_buf_head(&c->out), kw_buf_unread(&c->out), MSG_NOSIGNAL);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		mconn_close(loop, c);
		return;
	}
	if (n > 0)
		kw_buf_consume(&c->out, (size_t)n);
	if (kw_buf_unread(&c->out) == 0)
		mconn_close(loop, c);
	else
		kw_io_modify(loop, &c->io, KW_EV_WRITE);
}

static void on_accept(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_metrics *m = arg;
	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			return;
		struct mconn *c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(cfd);
			continue;
		}
		c->m = m;
		c->fd = cfd;
		kw_io_init(&c->io, mconn_io, c);
		if (kw_io_start(loop, &c->io, cfd, KW_EV_READ) < 0) {
			close(cfd);
			free(c);
		}
	}
}

int kpx_metrics_serve(struct kpx_metrics **out, struct kw_loop *loop, const struct kw_addr *addr,
                      struct kpx_worker *workers, unsigned nworkers, const struct kpx_options *opt)
{
	struct kpx_metrics *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->workers = workers;
	m->nworkers = nworkers;
	m->opt = opt;
	m->loop = loop;
	m->lfd = kw_listen_tcp(addr, false, 64);
	if (m->lfd < 0) {
		int rc = m->lfd;
		free(m);
		return rc;
	}
	kw_io_init(&m->lio, on_accept, m);
	int rc = kw_io_start(loop, &m->lio, m->lfd, KW_EV_READ);
	if (rc < 0) {
		close(m->lfd);
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void kpx_metrics_free(struct kpx_metrics *m)
{
	if (m == NULL)
		return;
	kw_io_stop(m->loop, &m->lio);
	close(m->lfd);
	free(m);
}
