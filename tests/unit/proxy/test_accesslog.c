/*
 * test_accesslog.c - the access log's lines for given connection fields:
 * IPv4 and IPv6 clients, the TLS fields of a real handshake, the SNI made
 * safe, a refused connection; --access-log's file, -, off, its error and
 * reopening after rotation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "accesslog.h"
#include "check.h"
#include "pki.h"
#include "tls_pair.h"
#include "keyway/tls.h"
#include "keywayd/keygen.h"

static char *dir;

/* read_all returns the file's text (static storage). */
static const char *read_all(const char *path)
{
	static char text[8192];
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
	text[n] = '\0';
	if (f)
		fclose(f);
	return text;
}

/*
 * check_line checks one line: a time= of the form 2026-01-02T03:04:05.678Z,
 * then exactly want_mid, a duration_ms= of at least min_ms, then want_tail.
 */
static const char *check_line(const char *line, const char *want_mid, double min_ms,
                              const char *want_tail)
{
	int y, mo, d, h, mi, s, ms, n = 0;
	CHECK(sscanf(line, "time=%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %n", &y, &mo, &d, &h, &mi, &s, &ms,
	             &n) == 7 &&
	      n == 30);
	const char *p = line + n;
	if (strncmp(p, want_mid, strlen(want_mid)) != 0)
		fprintf(stderr, "got  %swant %s...\n", p, want_mid);
	CHECK(strncmp(p, want_mid, strlen(want_mid)) == 0);
	p += strlen(want_mid);
	double dur = -1;
	CHECK(sscanf(p, "duration_ms=%lf %n", &dur, &n) == 1);
	CHECK(dur >= min_ms && dur < min_ms + 10000);
	p += n;
	const char *nl = strchr(p, '\n');
	CHECK(nl != NULL);
	if (nl == NULL)
		return p + strlen(p);
	if ((size_t)(nl + 1 - p) != strlen(want_tail) || strncmp(p, want_tail, strlen(want_tail)))
		fprintf(stderr, "got  %.*swant %s", (int)(nl + 1 - p), p, want_tail);
	CHECK((size_t)(nl + 1 - p) == strlen(want_tail) &&
	      strncmp(p, want_tail, strlen(want_tail)) == 0);
	return nl + 1;
}

static void test_lines(void)
{
	struct kpx_options o = {.access_log = (char *)join(dir, "access.log")};
	struct kpx_worker w = {.id = 3, .opt = &o};
	struct kpx_conn c = {.w = &w};
	char err[256];

	CHECK_EQ(kpx_accesslog_open(&o, err, sizeof(err)), 0);
	CHECK(o.access_fd > STDERR_FILENO);
	CHECK_EQ(fcntl(o.access_fd, F_GETFL) & O_APPEND, O_APPEND);

	/* No handshake: the TLS fields are "-", the counts and the reason as given. */
	struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons(40000)};
	inet_pton(AF_INET, "192.0.2.7", &in4.sin_addr);
	memcpy(&c.peer, &in4, sizeof(in4));
	c.accept_ns = kw_now_ns() - 20500000; /* 20.5 ms ago */
	c.rx_client = 512;
	c.tx_client = 1024;
	c.tx_upstream = 511;
	c.rx_upstream = 1023;
	c.reason = KPX_R_CLIENT_CLOSE;
	kpx_accesslog_conn(&c);

	/* A handshake with an SNI holding a space and '=': they become '?'. */
	char sdir[4096];
	snprintf(sdir, sizeof(sdir), "%s", join(dir, "server.pem"));
	SSL_CTX *sctx = kw_tls_server_ctx(sdir, join(dir, "server.key"), NULL, err, sizeof(err));
	SSL_CTX *cctx = kw_tls_client_ctx(NULL, NULL, join(dir, "ca.pem"), err, sizeof(err));
	CHECK(sctx != NULL && cctx != NULL);
	SSL_CTX_set_ciphersuites(cctx, "TLS_AES_128_GCM_SHA256");
	struct tls_pair p;
	tls_pair_open(&p, sctx, cctx);
	CHECK(SSL_set_tlsext_host_name(p.client, "www.example.com x=1") == 1);
	CHECK(tls_pair_handshake(&p));
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&c.peer;
	memset(&c.peer, 0, sizeof(c.peer));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(443);
	inet_pton(AF_INET6, "2001:db8::1", &in6->sin6_addr);
	c.ssl = p.server;
	c.handshake_ns = 1234567;
	c.accept_ns = kw_now_ns();
	c.rx_client = c.tx_client = c.tx_upstream = c.rx_upstream = 0;
	c.reason = KPX_R_DONE;
	kpx_accesslog_conn(&c);

	/* A handshake that did not finish: its SNI, but no TLS fields. */
	c.handshake_ns = 0;
	c.reason = KPX_R_HANDSHAKE_TIMEOUT;
	kpx_accesslog_conn(&c);

	/* A handshake that failed on a key no keyserver holds: the cause and the SKI follow. */
	c.reason = KPX_R_HANDSHAKE_FAILED;
	snprintf(c.missing_ski, sizeof(c.missing_ski), "%s",
	         "00112233445566778899aabbccddeeff00112233");
	kpx_accesslog_conn(&c);
	c.missing_ski[0] = '\0';
	tls_pair_close(&p);
	c.ssl = NULL;

	/* A connection refused by --max-connections, of an unknown address family. */
	struct sockaddr_storage unix_peer = {.ss_family = AF_UNIX};
	kpx_accesslog_refused(&w, (struct sockaddr *)&unix_peer);
	kpx_accesslog_refused(&w, (struct sockaddr *)&in4);

	const char *t = read_all(join(dir, "access.log"));
	t = check_line(t, "worker=3 client=192.0.2.7:40000 sni=- tls=- cipher=- handshake_ms=- ",
	               20.5,
	               "rx_client=512 tx_client=1024 tx_upstream=511 rx_upstream=1023 "
	               "reason=client-close\n");
	t = check_line(t,
	               "worker=3 client=[2001:db8::1]:443 sni=www.example.com?x?1 tls=TLSv1.3 "
	               "cipher=TLS_AES_128_GCM_SHA256 handshake_ms=1.235 ",
	               0, "rx_client=0 tx_client=0 tx_upstream=0 rx_upstream=0 reason=done\n");
	t = check_line(t,
	               "worker=3 client=[2001:db8::1]:443 sni=www.example.com?x?1 tls=- cipher=- "
	               "handshake_ms=- ",
	               0,
	               "rx_client=0 tx_client=0 tx_upstream=0 rx_upstream=0 "
	               "reason=handshake-timeout\n");
	t = check_line(t,
	               "worker=3 client=[2001:db8::1]:443 sni=www.example.com?x?1 tls=- cipher=- "
	               "handshake_ms=- ",
	               0,
	               "rx_client=0 tx_client=0 tx_upstream=0 rx_upstream=0 "
	               "reason=handshake-failed detail=key-not-found "
	               "ski=00112233445566778899aabbccddeeff00112233\n");
	static const char refused_tail[] =
	    "rx_client=0 tx_client=0 tx_upstream=0 rx_upstream=0 reason=max-connections\n";
	t = check_line(t, "worker=3 client=- sni=- tls=- cipher=- handshake_ms=- ", 0,
	               refused_tail);
	t = check_line(t, "worker=3 client=192.0.2.7:40000 sni=- tls=- cipher=- handshake_ms=- ", 0,
	               refused_tail);
	CHECK(*t == '\0');

	/* Rotation: the file is renamed, reopen starts a new one in place. */
	int fd = o.access_fd;
	CHECK_EQ(rename(join(dir, "access.log"), join(dir, "access.log.1")), 0);
	CHECK_EQ(kpx_accesslog_reopen(&o), 0);
	CHECK_EQ(o.access_fd, fd);
	kpx_accesslog_refused(&w, (struct sockaddr *)&in4);
	CHECK(strstr(read_all(join(dir, "access.log")), "reason=max-connections\n") != NULL);
	CHECK(strchr(read_all(join(dir, "access.log.1")), '\n') != NULL);
	kpx_accesslog_close(&o);
	CHECK_EQ(o.access_fd, -1);
	/* Closed: nothing is written, nothing fails. */
	kpx_accesslog_refused(&w, (struct sockaddr *)&in4);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

static void test_open(void)
{
	struct kpx_options o = {.access_log = NULL};
	char err[512], want[512];

	CHECK_EQ(kpx_accesslog_open(&o, err, sizeof(err)), 0);
	CHECK_EQ(o.access_fd, STDERR_FILENO);
	o.access_log = "-";
	CHECK_EQ(kpx_accesslog_open(&o, err, sizeof(err)), 0);
	CHECK_EQ(o.access_fd, STDERR_FILENO);
	CHECK_EQ(kpx_accesslog_reopen(&o), 0); /* stderr is never reopened */
	kpx_accesslog_close(&o);
	CHECK(fcntl(STDERR_FILENO, F_GETFD) >= 0);
	o.access_log = "off";
	CHECK_EQ(kpx_accesslog_open(&o, err, sizeof(err)), 0);
	CHECK_EQ(o.access_fd, -1);

	o.access_log = (char *)join(dir, "no/such/dir.log");
	CHECK_EQ(kpx_accesslog_open(&o, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want),
	         "--access-log %s: No such file or directory; fix: give a writable file, - "
	         "(stderr) or off",
	         o.access_log);
	CHECK(strcmp(err, want) == 0);

	/* A symlink at the log's path is refused, not followed. */
	char target[4096], link[4096];
	snprintf(target, sizeof(target), "%s", join(dir, "elsewhere.log"));
	snprintf(link, sizeof(link), "%s", join(dir, "link.log"));
	CHECK_EQ(symlink(target, link), 0);
	o.access_log = link;
	CHECK_EQ(kpx_accesslog_open(&o, err, sizeof(err)), -ELOOP);
	CHECK(strstr(err, link) != NULL);
	CHECK(access(target, F_OK) != 0); /* nothing created through the link */
}

int main(void)
{
	dir = pki_make_tmp();
	CHECK(dir != NULL);
	test_lines();
	test_open();
	rm_tree(dir);
	CHECK_DONE();
}
