/*
 * accesslog.c - the access log: one line per connection when it closes,
 * key=value pairs separated by single spaces, values never containing a
 * space:
 *
 *   time=2026-01-02T03:04:05.678Z worker=0 client=192.0.2.7:40000
 *   sni=example.com tls=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256
 *   handshake_ms=1.234 duration_ms=20.500 rx_client=512 tx_client=1024
 *   tx_upstream=512 rx_upstream=1024 reason=done
 *
 * (one line). "-" stands for a value that does not exist (no SNI, no
 * handshake). Bytes are plaintext application bytes. The SNI is the only
 * client-chosen text; bytes outside [A-Za-z0-9.-_] are written as '?', so
 * a line cannot be split or forged. Of keys, only the SKI (a public
 * identifier) of one no keyserver holds is written, when a handshake failed
 * on it: "reason=handshake-failed detail=key-not-found ski=<40 hex>".
 *
 * A line is formatted on the worker's stack and written with one write(2)
 * to an O_APPEND descriptor, so lines of different workers never
 * interleave and nothing is buffered in the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <unistd.h>

#include "accesslog.h"
#include "keyway/net.h"

#define LINE_MAX_LEN 1024

static void sanitize(const char *in, char *out, size_t outlen)
{
	size_t i = 0;
	if (in == NULL || *in == 0)
		in = "-";
	for (; in[i] != 0 && i + 1 < outlen; i++) {
		char ch = in[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		          (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
		out[i] = ok ? ch : '?';
	}
	out[i] = 0;
}

static int timestamp(char *out, size_t outlen)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	return snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	                ts.tv_nsec / 1000000);
}

static void emit(const struct kpx_options *o, const char *line, int n)
{
	if (o->access_fd < 0 || n <= 0)
		return;
	if (n >= LINE_MAX_LEN)
		n = LINE_MAX_LEN - 1;
	/* One write: a short count (disk full) loses the rest of this line only. */
	while (write(o->access_fd, line, (size_t)n) < 0 && errno == EINTR)
		;
}

void kpx_accesslog_conn(const struct kpx_conn *c)
{
	const struct kpx_options *o = c->w->opt;
	char line[LINE_MAX_LEN], when[96], client[INET6_ADDRSTRLEN + 10], sni[256];
	char hs[32] = "-";
	const char *version = "-", *cipher = "-";

	if (o->access_fd < 0)
		return;
	timestamp(when, sizeof(when));
	kw_sockaddr_format((const struct sockaddr *)&c->peer, "-", client, sizeof(client));
	sanitize(c->ssl != NULL ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL, sni,
	         sizeof(sni));
	if (c->handshake_ns != 0) {
		snprintf(hs, sizeof(hs), "%.3f", (double)c->handshake_ns / 1e6);
		version = SSL_get_version(c->ssl);
		cipher = SSL_get_cipher_name(c->ssl);
		if (cipher == NULL || strcmp(cipher, "(NONE)") == 0)
			cipher = "-";
	}
	uint64_t now = kw_now_ns();
	int n =
	    snprintf(line, sizeof(line),
	             "time=%s worker=%u client=%s sni=%s tls=%s cipher=%s handshake_ms=%s "
	             "duration_ms=%.3f rx_client=%llu tx_client=%llu tx_upstream=%llu "
	             "rx_upstream=%llu reason=%s%s%s\n",
	             when, c->w->id, client, sni, version, cipher, hs,
	             (double)(now > c->accept_ns ? now - c->accept_ns : 0) / 1e6,
	             (unsigned long long)c->rx_client, (unsigned long long)c->tx_client,
	             (unsigned long long)c->tx_upstream, (unsigned long long)c->rx_upstream,
	             kpx_reason_names[c->reason],
	             c->missing_ski[0] != '\0' ? " detail=key-not-found ski=" : "", c->missing_ski);
	emit(o, line, n);
}

void kpx_accesslog_quic(const struct kpx_worker *w, const struct kpx_access_quic *q)
{
	const struct kpx_options *o = w->opt;
	char line[LINE_MAX_LEN], when[96], client[INET6_ADDRSTRLEN + 10], sni[256], cipher[64];
	char hs[32] = "-";

	if (o->access_fd < 0)
		return;
	timestamp(when, sizeof(when));
	kw_sockaddr_format(q->peer, "-", client, sizeof(client));
	sanitize(q->sni, sni, sizeof(sni));
	sanitize(q->cipher, cipher, sizeof(cipher));
	if (q->handshake_ns != 0)
		snprintf(hs, sizeof(hs), "%.3f", (double)q->handshake_ns / 1e6);
	uint64_t now = kw_now_ns();
	/* The TCP line's keys, with proto=h3 first; bytes are UDP payload bytes, not
	 * plaintext, and requests= counts the HTTP/3 requests answered. */
	int n = snprintf(line, sizeof(line),
	                 "time=%s worker=%u proto=h3 client=%s sni=%s tls=%s cipher=%s "
	                 "handshake_ms=%s duration_ms=%.3f requests=%llu rx_udp=%llu tx_udp=%llu "
	                 "reason=%s\n",
	                 when, w->id, client, sni, q->handshake_ns != 0 ? "TLSv1.3" : "-", cipher,
	                 hs, (double)(now > q->start_ns ? now - q->start_ns : 0) / 1e6,
	                 (unsigned long long)q->requests, (unsigned long long)q->rx_udp,
	                 (unsigned long long)q->tx_udp, kpx_reason_names[q->reason]);
	emit(o, line, n);
}

void kpx_accesslog_refused(const struct kpx_worker *w, const struct sockaddr *peer)
{
	const struct kpx_options *o = w->opt;
	char line[LINE_MAX_LEN], when[96], client[INET6_ADDRSTRLEN + 10];

	if (o->access_fd < 0)
		return;
	timestamp(when, sizeof(when));
	kw_sockaddr_format(peer, "-", client, sizeof(client));
	int n = snprintf(line, sizeof(line),
	                 "time=%s worker=%u client=%s sni=- tls=- cipher=- handshake_ms=- "
	                 "duration_ms=0.000 rx_client=0 tx_client=0 tx_upstream=0 rx_upstream=0 "
	                 "reason=%s\n",
	                 when, w->id, client, kpx_reason_names[KPX_R_MAX_CONNECTIONS]);
	emit(o, line, n);
}

/*
 * open_log opens the access log for appending. A log at a predictable path must
 * not be a symlink that redirects the proxy's writes elsewhere (O_NOFOLLOW:
 * ELOOP); -1 with errno on failure.
 */
static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
}

int kpx_accesslog_open(struct kpx_options *o, char *err, size_t errlen)
{
	if (o->access_log == NULL || strcmp(o->access_log, "-") == 0) {
		o->access_fd = STDERR_FILENO;
		return 0;
	}
	if (strcmp(o->access_log, "off") == 0) {
		o->access_fd = -1;
		return 0;
	}
	int fd = open_log(o->access_log);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen,
		         "--access-log %s: %s; fix: give a writable file, - (stderr) or off",
		         o->access_log, strerror(e));
		return -e;
	}
	o->access_fd = fd;
	return 0;
}

int kpx_accesslog_reopen(const struct kpx_options *o)
{
	if (o->access_fd <= STDERR_FILENO || o->access_log == NULL)
		return 0;
	int fd = open_log(o->access_log);
	if (fd < 0)
		return -errno;
	/* dup2 swaps the file under the workers atomically: each write goes to one or the other. */
	int rc = dup2(fd, o->access_fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

void kpx_accesslog_close(struct kpx_options *o)
{
	if (o->access_fd > STDERR_FILENO)
		close(o->access_fd);
	o->access_fd = -1;
}
