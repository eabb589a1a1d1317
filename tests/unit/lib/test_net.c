/* test_net.c - address formatting, ports, listeners on port 0 and the descriptor limit. */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "keyway/net.h"

static void test_format(void)
{
	struct kw_addr a;
	char err[256], out[300];
	CHECK_EQ(kw_addr_parse(&a, "127.0.0.1:443", err, sizeof(err)), 0);
	kw_addr_format(&a, out, sizeof(out));
	CHECK(strcmp(out, "127.0.0.1:443") == 0);
	kw_sockaddr_format((const struct sockaddr *)&a.ss, "-", out, sizeof(out));
	CHECK(strcmp(out, "127.0.0.1:443") == 0);
	CHECK_EQ(kw_addr_parse(&a, "[::1]:8443", err, sizeof(err)), 0);
	kw_sockaddr_format((const struct sockaddr *)&a.ss, "-", out, sizeof(out));
	CHECK(strcmp(out, "[::1]:8443") == 0);
	CHECK_EQ(kw_addr_port(&a), 8443);
	kw_addr_set_port(&a, 9);
	CHECK_EQ(kw_addr_port(&a), 9);
	kw_addr_format(&a, out, sizeof(out));
	CHECK(strcmp(out, "[::1]:9") == 0);
	kw_addr_set_port(&a, 70000); /* out of range: unchanged */
	kw_addr_format(&a, out, sizeof(out));
	CHECK(strcmp(out, "[::1]:9") == 0);
	CHECK_EQ(kw_addr_parse(&a, "unix:/run/k.sock", err, sizeof(err)), 0);
	kw_addr_format(&a, out, sizeof(out));
	CHECK(strcmp(out, "unix:/run/k.sock") == 0);
	CHECK_EQ(kw_addr_port(&a), -1);
	kw_sockaddr_format((const struct sockaddr *)&a.ss, "unix", out, sizeof(out));
	CHECK(strcmp(out, "unix") == 0);
	kw_sockaddr_format(NULL, "-", out, sizeof(out));
	CHECK(strcmp(out, "-") == 0);
	kw_sockaddr_format(NULL, "-", out, 1); /* no room: still terminated */
	CHECK(out[0] == '\0');
}

static void test_listen_pin(void)
{
	struct kw_addr a;
	char err[256], out[300];
	CHECK_EQ(kw_addr_parse(&a, "127.0.0.1:0", err, sizeof(err)), 0);
	int fd1 = kw_listen_tcp_pin(&a, true, 16);
	CHECK(fd1 >= 0);
	int port = kw_bound_port(fd1);
	CHECK(port > 0);
	kw_addr_format(&a, out, sizeof(out));
	char want[64];
	snprintf(want, sizeof(want), "127.0.0.1:%d", port);
	CHECK(strcmp(out, want) == 0);             /* a names the port really listened on */
	int fd2 = kw_listen_tcp_pin(&a, true, 16); /* a second SO_REUSEPORT socket joins it */
	CHECK(fd2 >= 0);
	CHECK_EQ(kw_bound_port(fd2), port);
	close(fd1);
	close(fd2);
}

static void test_raise_nofile(void)
{
	struct rlimit old, rl;
	unsigned long now = 0;
	CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
	rl = old;
	rl.rlim_cur = old.rlim_max > 64 ? 64 : old.rlim_max;
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	CHECK_EQ(kw_raise_nofile(&now), 0);
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	CHECK(rl.rlim_cur == old.rlim_max);
	CHECK(now == (unsigned long)old.rlim_max);
	CHECK_EQ(kw_raise_nofile(NULL), 0); /* already there */
	setrlimit(RLIMIT_NOFILE, &old);
}

int main(void)
{
	test_format();
	test_listen_pin();
	test_raise_nofile();
	CHECK_DONE();
}
