/* metrics.c - Prometheus registry and the /metrics HTTP server (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyway/log.h"
#include "keyway/protocol.h"

#define HTTP_MAX_CLIENTS 32
#define HTTP_TIMEOUT_MS 5000
#define HTTP_MAX_REQUEST 4096

struct mclient {
	struct kwd_metrics *m;
	struct mclient *prev, *next;
	int fd;
	struct kw_io io;
	struct kw_timer timer;
	size_t reqlen;
	bool responding;
	struct kw_buf out;
	char req[HTTP_MAX_REQUEST];
};

struct kwd_metrics {
	struct kwd_wmetrics **workers;
	unsigned nworkers;
	_Atomic uint64_t keys;
	_Atomic uint64_t reloads[2]; /* error, ok */

	struct kw_loop *loop; /* the HTTP server's, NULL when not serving */
	int listen_fd;
	struct kw_io io;
	struct mclient *clients;
	unsigned nclients;
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
	m->listen_fd = -1;
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

static int appendf(struct kw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int appendf(struct kw_buf *b, const char *fmt, ...)
{
	for (size_t want = 256;;) {
		if (kw_buf_reserve(b, want) < 0)
			return -ENOMEM;
		size_t room = b->cap - b->len;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf((char *)kw_buf_tail(b), room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -EINVAL;
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return 0;
		}
		want = (size_t)n + 1;
	}
}

static uint64_t load(const _Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static void header(struct kw_buf *b, const char *name, const char *type, const char *help)
{
	appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_hist(struct kwd_metrics *m, struct kw_buf *b, bool total)
{
	const char *name = total ? "keyless_request_total_duration_per_opcode"
	                         : "keyless_request_exec_duration_per_opcode";
	header(b, name, "histogram",
	       total ? "Total time to satisfy a request including time in queues, broken down "
	               "by type and error code."
	             : "Time to execute a request not including time in queues, broken down by "
	               "type and error code.");
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
			const char *err =
			    e < KWD_NERR - 1 ? kw_proto_error_string((uint8_t)e) : "unknown error";
			const char *type = kw_family_name((enum kw_op_family)f);
			uint64_t cum = 0;
			for (unsigned i = 0; i < KWD_HIST_BUCKETS; i++) {
				cum += bucket[i];
				appendf(b, "%s_bucket{error=\"%s\",type=\"%s\",le=\"%s\"} %llu\n",
				        name, err, type, bucket_le[i], (unsigned long long)cum);
			}
			appendf(b, "%s_bucket{error=\"%s\",type=\"%s\",le=\"+Inf\"} %llu\n", name,
			        err, type, (unsigned long long)count);
			appendf(b, "%s_sum{error=\"%s\",type=\"%s\"} %llu.%09llu\n", name, err,
			        type, (unsigned long long)(sum / 1000000000u),
			        (unsigned long long)(sum % 1000000000u));
			appendf(b, "%s_count{error=\"%s\",type=\"%s\"} %llu\n", name, err, type,
			        (unsigned long long)count);
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

int kwd_metrics_render(struct kwd_metrics *m, struct kw_buf *b)
{
	static const char *const transport[KWD_NTRANSPORT] = {"tcp", "unix"};
	size_t start = b->len;

	header(b, "keyless_requests", "counter", "Total number of requests by opcode.");
	for (unsigned op = 0; op < 256; op++) {
		uint64_t v = sum_workers(m, offsetof(struct kwd_wmetrics, requests), op);
		if (v == 0)
			continue;
		const char *name = kw_opcode_name((uint8_t)op);
		if (name != NULL)
			appendf(b, "keyless_requests{opcode=\"%s\"} %llu\n", name,
			        (unsigned long long)v);
		else /* what Go's stringer prints for an undeclared Op */
			appendf(b, "keyless_requests{opcode=\"Op(%u)\"} %llu\n", op,
			        (unsigned long long)v);
	}
	render_hist(m, b, false);
	render_hist(m, b, true);

	header(b, "keyless_failed_connection", "counter",
	       "Number of connection/transport failure, in tls handshake and etc.");
	appendf(b, "keyless_failed_connection %llu\n",
	        (unsigned long long)sum_workers(m, offsetof(struct kwd_wmetrics, failed_conns), 0));
	header(b, "keyless_connections", "gauge", "Open client connections by transport.");
	for (unsigned t = 0; t < KWD_NTRANSPORT; t++)
		appendf(b, "keyless_connections{transport=\"%s\"} %llu\n", transport[t],
		        (unsigned long long)sum_workers(
		            m, offsetof(struct kwd_wmetrics, conns_open), t));
	header(b, "keyless_connections_total", "counter",
	       "Client connections accepted by transport.");
	for (unsigned t = 0; t < KWD_NTRANSPORT; t++)
		appendf(b, "keyless_connections_total{transport=\"%s\"} %llu\n", transport[t],
		        (unsigned long long)sum_workers(
		            m, offsetof(struct kwd_wmetrics, conns_total), t));
	header(b, "keyless_keys", "gauge", "Number of private keys loaded.");
	appendf(b, "keyless_keys %llu\n", (unsigned long long)load(&m->keys));
	header(b, "keyless_reloads_total", "counter", "Key and TLS reloads (SIGHUP) by result.");
	appendf(b, "keyless_reloads_total{result=\"ok\"} %llu\n",
	        (unsigned long long)load(&m->reloads[1]));
	appendf(b, "keyless_reloads_total{result=\"error\"} %llu\n",
	        (unsigned long long)load(&m->reloads[0]));

	/* appendf only fails on allocation; report it once here. */
	if (b->len == start || b->data == NULL)
		return -ENOMEM;
	return 0;
}

/* ---- the HTTP server ---- */

static void client_close(struct mclient *c)
{
	struct kwd_metrics *m = c->m;
	kw_io_stop(m->loop, &c->io);
	kw_timer_stop(m->loop, &c->timer);
	close(c->fd);
	kw_buf_cleanup(&c->out);
	if (c->prev)
		c->prev->next = c->next;
	else
		m->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	m->nclients--;
	if (kw_loop_defer_free(m->loop, free, c) < 0)
		kw_warn("metrics: cannot defer a free; leaking %zu bytes", sizeof(*c));
}

static void client_write(struct mclient *c)
{
	while (kw_buf_unread(&c->out) > 0) {
		ssize_t n = send(c->fd, kw_buf_head(&c->out), kw_buf_unread(&c->out), MSG_NOSIGNAL);
		if (n > 0) {
			kw_buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			kw_io_modify(c->m->loop, &c->io, KW_EV_WRITE);
			return;
		}
		break;
	}
	shutdown(c->fd, SHUT_WR);
	client_close(c);
}

static void respond(struct mclient *c)
{
	struct kw_buf body = KW_BUF_INIT;
	const char *status = "200 OK", *type = "text/plain; version=0.0.4; charset=utf-8";
	char method[16] = "", path[256] = "";

	c->responding = true;
	c->req[c->reqlen < sizeof(c->req) ? c->reqlen : sizeof(c->req) - 1] = '\0';
	if (sscanf(c->req, "%15s %255s", method, path) != 2) {
		status = "400 Bad Request";
	} else {
		char *q = strchr(path, '?');
		if (q != NULL)
			*q = '\0';
		if (strcmp(path, "/metrics") != 0)
			status = "404 Not Found";
		else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			status = "405 Method Not Allowed";
	}
	if (strcmp(status, "200 OK") == 0) {
		if (kwd_metrics_render(c->m, &body) < 0)
			status = "500 Internal Server Error";
	}
	if (strcmp(status, "200 OK") != 0) {
		kw_buf_reset(&body);
		appendf(&body, "%s\n", status);
		type = "text/plain; charset=utf-8";
	}
	appendf(
	    &c->out,
	    "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    status, type, kw_buf_unread(&body));
	if (strcmp(method, "HEAD") != 0 && kw_buf_unread(&body) > 0)
		kw_buf_append(&c->out, kw_buf_head(&body), kw_buf_unread(&body));
	kw_buf_cleanup(&body);
	client_write(c);
}

static void on_client(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct mclient *c = arg;
	if (c->responding) {
		client_write(c);
		return;
	}
	for (;;) {
		if (c->reqlen >= sizeof(c->req) - 1) {
			respond(c); /* too long: answered 400 or 404 from what we have */
			return;
		}
		ssize_t n = recv(fd, c->req + c->reqlen, sizeof(c->req) - 1 - c->reqlen, 0);
		if (n > 0) {
			c->reqlen += (size_t)n;
			c->req[c->reqlen] = '\0';
			if (strstr(c->req, "\r\n\r\n") != NULL || strstr(c->req, "\n\n") != NULL) {
				respond(c);
				return;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		client_close(c); /* EOF before a full request, or an error */
		return;
	}
}

static void on_client_timeout(struct kw_loop *loop, void *arg)
{
	client_close(arg);
}

static void on_listen(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kwd_metrics *m = arg;
	for (int i = 0; i < 16; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			return;
		struct mclient *c = m->nclients < HTTP_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
		if (c == NULL) {
			close(cfd);
			continue;
		}
		c->m = m;
		c->fd = cfd;
		kw_io_init(&c->io, on_client, c);
		kw_timer_init(&c->timer, on_client_timeout, c);
		if (kw_io_start(loop, &c->io, cfd, KW_EV_READ) < 0 ||
		    kw_timer_start_ms(loop, &c->timer, HTTP_TIMEOUT_MS) < 0) {
			kw_io_stop(loop, &c->io);
			close(cfd);
			free(c);
			continue;
		}
		c->next = m->clients;
		if (m->clients)
			m->clients->prev = c;
		m->clients = c;
		m->nclients++;
	}
}

int kwd_metrics_serve(struct kwd_metrics *m, struct kw_loop *loop, const struct kw_addr *addr,
                      char *err, size_t errlen)
{
	char name[300];
	kw_addr_format(addr, name, sizeof(name));
	int fd = kw_listen_tcp(addr, false, 64);
	if (fd < 0) {
		snprintf(err, errlen, "--metrics: cannot listen on %s: %s; fix: %s", name,
		         strerror(-fd),
		         fd == -EADDRINUSE ? "choose another --metrics port" : "check --metrics");
		return fd;
	}
	kw_io_init(&m->io, on_listen, m);
	int rc = kw_io_start(loop, &m->io, fd, KW_EV_READ);
	if (rc < 0) {
		close(fd);
		snprintf(err, errlen, "--metrics: %s", strerror(-rc));
		return rc;
	}
	m->loop = loop;
	m->listen_fd = fd;
	return 0;
}

void kwd_metrics_free(struct kwd_metrics *m)
{
	if (m == NULL)
		return;
	if (m->loop != NULL) {
		while (m->clients != NULL)
			client_close(m->clients);
		kw_io_stop(m->loop, &m->io);
	}
	if (m->listen_fd >= 0)
		close(m->listen_fd);
	free(m->workers);
	free(m);
}
