/*
 * test_metrics_server.c - the /metrics server: answers by path and method,
 * 500 from a failing renderer, the idle timeout, the connection cap, and no
 * spinning when accept runs out of descriptors (reserve and pause).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "keyway/metrics_server.h"

static struct kw_loop *loop;
static struct kw_metrics_server *srv;
static int port;
static int render_rc;
static unsigned renders;

static int render(void *arg, struct kw_buf *out)
{
	(void)arg;
	renders++;
	if (render_rc < 0)
		return render_rc;
	return kw_buf_appendf(out, "# HELP x X.\n# TYPE x gauge\nx 1\n");
}

static int client(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		fd = -1;
	}
	if (fd >= 0)
		fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/* drain runs the loop until fd reaches EOF (or a reset), 5 s at most; returns what was read. */
static char *drain(int fd, char *buf, size_t len)
{
	size_t got = 0;
	buf[0] = '\0';
	uint64_t until = kw_now_ns() + 5000000000u;
	while (kw_now_ns() < until) {
		kw_loop_run_once(loop, 20);
		ssize_t n = recv(fd, buf + got, len - 1 - got, 0);
		if (n > 0) {
			got += (size_t)n;
			buf[got] = '\0';
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			break;
	}
	return buf;
}

static char *ask(const char *req, char *buf, size_t len)
{
	int fd = client();
	CHECK(fd >= 0);
	CHECK(send(fd, req, strlen(req), 0) == (ssize_t)strlen(req));
	drain(fd, buf, len);
	close(fd);
	return buf;
}

static void test_answers(void)
{
	char buf[2048];
	ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof(buf));
	CHECK(strcmp(buf, "HTTP/1.1 200 OK\r\n"
	                  "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
	                  "Content-Length: 31\r\nConnection: close\r\n\r\n"
	                  "# HELP x X.\n# TYPE x gauge\nx 1\n") == 0);
	ask("GET /metrics?name[]=x HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	ask("HEAD /metrics HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	CHECK(strstr(buf, "Content-Length: 31\r\n") != NULL);
	CHECK(strstr(buf, "x 1") == NULL);
	ask("GET / HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	CHECK(strstr(buf, "HTTP/1.1 404 Not Found\r\n") == buf);
	CHECK(strstr(buf, "\r\n\r\n404 Not Found\n") != NULL);
	ask("POST /metrics HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	CHECK(strstr(buf, "HTTP/1.1 405 Method Not Allowed\r\n") == buf);
	ask("\r\n\r\n", buf, sizeof(buf));
	CHECK(strstr(buf, "HTTP/1.1 400 Bad Request\r\n") == buf);
	render_rc = -ENOMEM;
	ask("GET /metrics HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	CHECK(strstr(buf, "HTTP/1.1 500 Internal Server Error\r\n") == buf);
	render_rc = 0;
}

static void test_idle_timeout(void)
{
	struct kw_metrics_server_stats st;
	char buf[256];
	kw_metrics_server_set_limits(srv, 1000, 0);
	int fd = client();
	/* A byte every 400 ms keeps it open past 1 s: idle counts from the last byte. */
	for (int i = 0; i < 3; i++) {
		uint64_t until = kw_now_ns() + 400000000u;
		while (kw_now_ns() < until)
			kw_loop_run_once(loop, 10);
		CHECK(send(fd, "G", 1, MSG_NOSIGNAL) == 1);
	}
	kw_metrics_server_stats(srv, &st);
	CHECK_EQ(st.open, 1);
	CHECK_EQ(st.timed_out, 0);
	uint64_t start = kw_now_ns();
	drain(fd, buf, sizeof(buf)); /* then silence: closed without an answer */
	CHECK(kw_now_ns() - start >= 900000000u);
	CHECK(buf[0] == '\0');
	kw_metrics_server_stats(srv, &st);
	CHECK_EQ(st.timed_out, 1);
	CHECK_EQ(st.open, 0);
	close(fd);
	kw_metrics_server_set_limits(srv, KW_METRICS_IDLE_MS, 0);
}

static void test_connection_cap(void)
{
	struct kw_metrics_server_stats st, before;
	int fds[4];
	char buf[256];
	kw_metrics_server_set_limits(srv, 0, 3);
	kw_metrics_server_stats(srv, &before);
	for (int i = 0; i < 3; i++)
		fds[i] = client();
	for (int i = 0; i < 5; i++)
		kw_loop_run_once(loop, 10);
	fds[3] = client();
	drain(fds[3], buf, sizeof(buf)); /* the fourth: accepted and closed at once */
	CHECK(buf[0] == '\0');
	kw_metrics_server_stats(srv, &st);
	CHECK_EQ(st.open, 3);
	CHECK_EQ(st.refused - before.refused, 1);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	for (int i = 0; i < 5; i++)
		kw_loop_run_once(loop, 10);
	kw_metrics_server_stats(srv, &st);
	CHECK_EQ(st.open, 0);
	kw_metrics_server_set_limits(srv, 0, KW_METRICS_MAX_CONNS);
}

/* fill takes every free descriptor but `keep`; returns how many it took (into held). */
static int fill(int *held, int max, int keep)
{
	int n = 0;
	while (n < max) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			break;
		held[n++] = fd;
	}
	for (int i = 0; i < keep && n > 0; i++)
		close(held[--n]);
	return n;
}

/* turns counts loop turns in 200 ms: a spinning listener makes thousands. */
static int turns_in_200ms(void)
{
	int turns = 0;
	uint64_t until = kw_now_ns() + 200000000u;
	while (kw_now_ns() < until) {
		kw_loop_run_once(loop, 50);
		turns++;
	}
	return turns;
}

static void test_out_of_descriptors(void)
{
	static int held[1024];
	struct kw_metrics_server_stats st;
	char buf[512];
	struct rlimit old, rl;
	getrlimit(RLIMIT_NOFILE, &old);
	rl = old;
	rl.rlim_cur = 256;
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);

	/* With the reserve descriptor: the connection is accepted and closed. */
	int n = fill(held, 1024, 1);
	int fd = client(); /* takes the last free one */
	CHECK(fd >= 0);
	drain(fd, buf, sizeof(buf));
	CHECK(buf[0] == '\0');
	kw_metrics_server_stats(srv, &st);
	CHECK_EQ(st.no_fd, 1);
	CHECK_EQ(st.paused, 0);
	CHECK(turns_in_200ms() < 20);
	close(fd);
	while (n > 0)
		close(held[--n]);

	/* Without one (a server started with no descriptor to spare): it pauses. */
	struct kw_metrics_server *s2;
	struct kw_addr a;
	char err[128];
	CHECK_EQ(kw_addr_parse(&a, "127.0.0.1:0", err, sizeof(err)), 0);
	n = fill(held, 1024, 1);
	CHECK_EQ(kw_metrics_server_new(&s2, loop, &a, render, NULL), 0); /* no reserve left */
	int saved = port;
	port = kw_metrics_server_port(s2);
	close(held[--n]);
	fd = client();
	CHECK(fd >= 0);
	CHECK(send(fd, "GET /metrics HTTP/1.1\r\n\r\n", 25, 0) == 25);
	CHECK(turns_in_200ms() < 20);
	kw_metrics_server_stats(s2, &st);
	CHECK(st.no_fd >= 1 && st.paused >= 1);
	CHECK_EQ(st.accepted, 0);
	while (n > 0)
		close(held[--n]);
	drain(fd, buf, sizeof(buf)); /* the listener resumes and answers */
	CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	close(fd);
	kw_metrics_server_free(s2);
	port = saved;
	setrlimit(RLIMIT_NOFILE, &old);
}

int main(void)
{
	struct kw_addr a;
	char err[128];
	CHECK_EQ(kw_loop_new(&loop), 0);
	CHECK_EQ(kw_addr_parse(&a, "127.0.0.1:0", err, sizeof(err)), 0);
	CHECK_EQ(kw_metrics_server_new(&srv, loop, &a, render, NULL), 0);
	port = kw_metrics_server_port(srv);
	CHECK(port > 0);
	test_answers();
	test_idle_timeout();
	test_connection_cap();
	test_out_of_descriptors();
	kw_metrics_server_free(srv);
	kw_loop_run_once(loop, 0);
	kw_loop_free(loop);
	CHECK_DONE();
}
