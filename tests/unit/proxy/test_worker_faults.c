/*
 * test_worker_faults.c - a keyway-proxy worker recovers when its loop
 * refuses a timer or a watcher (issue 12, item 12), with the loop's
 * test-only fault injection (keyway/loop_fault.h): a worker in --respond
 * mode with a local key (inline backend) on a listener of this test, and
 * HTTPS clients of its own.
 *
 *  - Out of descriptors, accepting pauses; if the pause timer cannot be
 *    armed the listener is watched again at once, and if the listener
 *    cannot be watched again when the pause ends, the timer is re-armed;
 *    if both are refused in a row, the loop retries the watch every turn:
 *    either way the client that waited is served once descriptors are back.
 *  - A connection whose handshake timer, request timer (--respond, once the
 *    handshake is done) or keep-alive timer cannot be armed is closed: a
 *    silent client would otherwise hold it for ever. The next one is served.
 *  - --upstream: a relayed connection whose connect timeout or idle timeout
 *    cannot be armed is closed, not relayed without a bound.
 *
 * It includes worker.c to reach the worker's counters and listener.
 */
#include "worker.c"

#include <netinet/in.h>

#include "check.h"
#include "fault_wait.h"
#include "fd_fill.h"
#include "pki.h"
#include "keyway/loop_fault.h"
#include "keywayd/keygen.h"

static char *dir;
static SSL_CTX *client_ctx;

static int listen_tcp(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(fd, 64), 0);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* client makes a blocking TCP socket whose reads and writes give up after 3 s. */
static int client(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {.tv_sec = 3};
	CHECK(fd >= 0);
	CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

static void connect_to(int fd, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

/* get does a TLS handshake on the connected fd and one GET; true on a 200 answer. Closes fd. */
static bool get(int fd)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
	char buf[512];
	bool ok = false;
	SSL *ssl = SSL_new(client_ctx);

	if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1 &&
	    SSL_write(ssl, req, (int)sizeof(req) - 1) == (int)sizeof(req) - 1) {
		int n = SSL_read(ssl, buf, (int)sizeof(buf) - 1);
		ok = n > 0 && (buf[n] = '\0', strncmp(buf, "HTTP/1.1 200", 12) == 0);
	}
	SSL_free(ssl);
	ERR_clear_error(); /* a refused handshake is what some checks expect */
	close(fd);
	return ok;
}

/*
 * get_keepalive does one keep-alive GET on a new connection; true when it is
 * answered and the proxy then closes the connection (within 3 s), not when
 * it stays open.
 */
static bool get_keepalive_closed(uint16_t port)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	char buf[512];
	bool closed = false;
	int fd = client();
	SSL *ssl = SSL_new(client_ctx);

	connect_to(fd, port);
	if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1 &&
	    SSL_write(ssl, req, (int)sizeof(req) - 1) == (int)sizeof(req) - 1) {
		int n = SSL_read(ssl, buf, (int)sizeof(buf) - 1);
		if (n > 0 && (buf[n] = '\0', strncmp(buf, "HTTP/1.1 200", 12) == 0)) {
			errno = 0;
			n = SSL_read(ssl, buf, (int)sizeof(buf));
			closed = n <= 0 && errno != EAGAIN && errno != EWOULDBLOCK;
		}
	}
	SSL_free(ssl);
	ERR_clear_error();
	close(fd);
	return closed;
}

/*
 * closed_after_handshake: a new connection completes its handshake, sends
 * nothing, and is closed by the proxy within 3 s (rather than left open).
 */
static bool closed_after_handshake(uint16_t port)
{
	char buf[64];
	bool closed = false;
	int fd = client();
	SSL *ssl = SSL_new(client_ctx);

	connect_to(fd, port);
	if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1) {
		errno = 0;
		int n = SSL_read(ssl, buf, (int)sizeof(buf));
		closed = n <= 0 && errno != EAGAIN && errno != EWOULDBLOCK;
	}
	SSL_free(ssl);
	ERR_clear_error();
	close(fd);
	return closed;
}

static bool get_new(uint16_t port)
{
	int fd = client();
	connect_to(fd, port);
	return get(fd);
}

/* wait_idle waits (at most 3 s) until w has no connection left. */
static bool wait_idle(struct kpx_worker *w)
{
	for (int i = 0; i < 300 && *(volatile unsigned *)&w->nconns != 0; i++)
		usleep(10000);
	return w->nconns == 0;
}

/* start_worker runs a worker on a new listener; *port is where it listens. */
static bool start_worker(struct kpx_worker *w, const struct kpx_options *o, uint16_t *port)
{
	int lfd = listen_tcp(port);
	CHECK_EQ(kpx_worker_init(w, 0, o, lfd), 0);
	CHECK_EQ(kpx_worker_start(w), 0);
	/* Serving once means the listener is watched and the loop runs. */
	bool ok = get_new(*port);
	CHECK(ok);
	CHECK(wait_idle(w));
	return ok;
}

static void stop_worker(struct kpx_worker *w)
{
	kpx_worker_stop(w);
	kpx_worker_join(w);
	kpx_worker_cleanup(w);
}

/*
 * EMFILE pauses accepting. fault_mask says which call fails: the pause
 * timer's arming, or the listener's watch when the pause ends. The client
 * that waited meanwhile is served once descriptors are free again; with the
 * failure unhandled the worker would never accept again.
 */
static void test_accept_pause(const struct kpx_options *o, unsigned fault_mask, unsigned count)
{
	struct kpx_worker w;
	uint16_t port;
	if (!start_worker(&w, o, &port))
		return;
	int fd = client();
	kw_fault_arm(fault_mask, 1, count);
	fd_fill(fd);
	connect_to(fd, port);
	CHECK(fault_wait_fired(count));
	usleep(150000); /* a pause or two with the table still full */
	fd_unfill();
	kw_fault_disarm();
	CHECK_EQ(kw_fault_fired(), count);
	CHECK(get(fd));
	CHECK(get_new(port)); /* and it goes on accepting */
	stop_worker(&w);
}

/* A connection whose handshake timer is refused is closed; the next one is served. */
static void test_handshake_timer_fails(const struct kpx_options *o)
{
	struct kpx_worker w;
	uint16_t port;
	if (!start_worker(&w, o, &port))
		return;
	kw_fault_arm(KW_FAULT_TIMER, 1, 1);
	CHECK(!get_new(port));
	CHECK_EQ(kw_fault_fired(), 1);
	kw_fault_disarm();
	CHECK(wait_idle(&w));
	CHECK(get_new(port));
	stop_worker(&w);
}

/*
 * --respond: the request timer starts when the handshake is done (the 2nd
 * timer of a connection), the keep-alive timer once the answer is written
 * (the 3rd). Refused, each closes the connection; the next one is served.
 */
static void test_respond_timers_fail(const struct kpx_options *o)
{
	struct kpx_worker w;
	uint16_t port;
	if (!start_worker(&w, o, &port))
		return;
	kw_fault_arm(KW_FAULT_TIMER, 2, 1);
	CHECK(!get_new(port));
	CHECK_EQ(kw_fault_fired(), 1);
	kw_fault_disarm();
	CHECK(wait_idle(&w));
	CHECK(get_new(port));
	CHECK(wait_idle(&w));

	kw_fault_arm(KW_FAULT_TIMER, 3, 1);
	CHECK(get_keepalive_closed(port));
	CHECK_EQ(kw_fault_fired(), 1);
	kw_fault_disarm();
	CHECK(wait_idle(&w));
	CHECK(get_new(port));
	stop_worker(&w);
}

/*
 * --upstream to a listener of this test that never answers: the connect
 * timeout is a connection's 2nd timer, the idle timeout (armed once the
 * upstream connection is up) its 3rd. Refused, each closes the connection.
 */
static void test_upstream_timers_fail(const struct kpx_options *respond)
{
	struct kpx_options o = *respond;
	char err[256], addr[64];
	uint16_t up_port;
	int up = listen_tcp(&up_port); /* never accepts: the backlog completes connects */
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", up_port);
	o.respond = false;
	o.upstream = addr;
	o.connect_timeout_s = 10;
	o.idle_timeout_s = 60;
	CHECK_EQ(kw_addr_parse(&o.upstream_addr, addr, err, sizeof(err)), 0);

	struct kpx_worker w;
	uint16_t port;
	int lfd = listen_tcp(&port);
	CHECK_EQ(kpx_worker_init(&w, 0, &o, lfd), 0);
	CHECK_EQ(kpx_worker_start(&w), 0);
	for (unsigned nth = 2; nth <= 3; nth++) {
		kw_fault_arm(KW_FAULT_TIMER, nth, 1);
		CHECK(closed_after_handshake(port));
		CHECK_EQ(kw_fault_fired(), 1);
		kw_fault_disarm();
		CHECK(wait_idle(&w));
	}
	/* Unrefused, the relayed connection stays open (the upstream says nothing). */
	CHECK(!closed_after_handshake(port));
	stop_worker(&w);
	close(up);
}

int main(void)
{
	char err[512];
	signal(SIGPIPE, SIG_IGN); /* as keyway-proxy does: a refused client is written to */
	dir = pki_make_tmp();
	CHECK(dir != NULL);
	char *certs[] = {(char *)join(dir, "server.pem"), NULL};
	char cert_path[512], key_path[512];
	snprintf(cert_path, sizeof(cert_path), "%s", certs[0]);
	snprintf(key_path, sizeof(key_path), "%s", join(dir, "server.key"));
	certs[0] = cert_path;
	char *keys[] = {key_path, NULL};
	struct kpx_options o = {
	    .certs = certs,
	    .keys = keys,
	    .respond = true,
	    .body = (char *)"ok\n",
	    .backend = KPX_BACKEND_INLINE,
	    .poll_interval_us = 1000,
	    .poll_threshold = 48,
	    .keepalive_timeout_s = 5,
	    .handshake_timeout_s = 10,
	    .drain_timeout_s = 1,
	    .max_handshake_bytes = 65536,
	    .access_fd = -1,
	};
	struct kpx_tls *t = kpx_tls_load(&o, err, sizeof(err));
	CHECK(t != NULL);
	if (t == NULL) {
		fprintf(stderr, "%s\n", err);
		CHECK_DONE();
	}
	kpx_tls_publish(t);
	client_ctx = SSL_CTX_new(TLS_client_method());
	CHECK(client_ctx != NULL);
	SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);

	test_accept_pause(&o, KW_FAULT_TIMER, 1);
	test_accept_pause(&o, KW_FAULT_IO, 1);
	/* Both: the pause timer, then the listener's watch at once: the loop retries. */
	test_accept_pause(&o, KW_FAULT_TIMER | KW_FAULT_IO, 2);
	test_handshake_timer_fails(&o);
	test_respond_timers_fail(&o);
	test_upstream_timers_fail(&o);

	kpx_tls_publish(NULL);
	SSL_CTX_free(client_ctx);
	rm_tree(dir);
	CHECK_DONE();
}
