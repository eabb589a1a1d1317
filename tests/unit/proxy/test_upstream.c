/*
 * test_upstream.c - upstream.c's option check: --upstream parsed into an
 * address, refused with the reason and the fix, and --send-proxy-v2
 * without an upstream. (The relay itself runs on sockets and the loop: the
 * end-to-end tests cover it.)
 */
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "check.h"
#include "upstream.h"
#include "keyway/err.h"

static void test_parsed(void)
{
	struct kpx_options o = {.upstream = "127.0.0.1:8080"};
	char err[512] = "";

	CHECK_EQ(kpx_upstream_check(&o, NULL, err, sizeof(err)), 0);
	const struct sockaddr_in *a = (const struct sockaddr_in *)&o.upstream_addr.ss;
	CHECK_EQ(a->sin_family, AF_INET);
	CHECK_EQ(ntohs(a->sin_port), 8080);
	CHECK_EQ(ntohl(a->sin_addr.s_addr), 0x7f000001);
	CHECK(!o.upstream_addr.is_unix);

	o = (struct kpx_options){.upstream = "[::1]:443", .send_proxy_v2 = true};
	CHECK_EQ(kpx_upstream_check(&o, NULL, err, sizeof(err)), 0);
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&o.upstream_addr.ss;
	CHECK_EQ(a6->sin6_family, AF_INET6);
	CHECK_EQ(ntohs(a6->sin6_port), 443);
	CHECK(IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr));

	/* --respond instead: nothing to check. */
	o = (struct kpx_options){0};
	CHECK_EQ(kpx_upstream_check(&o, NULL, err, sizeof(err)), 0);
}

static void test_refused(void)
{
	struct kpx_options o = {.upstream = "127.0.0.1"};
	char err[512] = "";
	static const char fix[] = "; fix: give HOST:PORT";

	CHECK_EQ(kpx_upstream_check(&o, NULL, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strncmp(err, "--upstream: '127.0.0.1': ", 25) == 0);
	CHECK(strlen(err) > 25 + strlen(fix) && strcmp(err + strlen(err) - strlen(fix), fix) == 0);

	o = (struct kpx_options){.send_proxy_v2 = true};
	CHECK_EQ(kpx_upstream_check(&o, NULL, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strcmp(err, "--send-proxy-v2 needs --upstream; fix: add --upstream HOST:PORT or drop "
	                  "--send-proxy-v2") == 0);
}

int main(void)
{
	test_parsed();
	test_refused();
	CHECK_DONE();
}
