/* test_proxyv2.c - the PROXY v2 header, byte for byte against the spec's layout. */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "check.h"
#include "proxyv2.h"

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static unsigned be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static void test_ipv4_tlvs(void)
{
	struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(40000)};
	struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons(443)};
	inet_pton(AF_INET, "192.0.2.7", &s.sin_addr);
	inet_pton(AF_INET, "198.51.100.1", &d.sin_addr);
	struct kpx_pp2_info in = {.src = (struct sockaddr *)&s,
	                          .dst = (struct sockaddr *)&d,
	                          .tls_version = "TLSv1.3",
	                          .cipher = "TLS_AES_128_GCM_SHA256",
	                          .sni = "example.com"};
	uint8_t b[KPX_PP2_MAX];
	int n = kpx_pp2_build(b, sizeof(b), &in);
	/* 16 + 12 addresses + AUTHORITY 3+11 + SSL 3+(1+4+(3+7)+(3+22)) */
	CHECK_EQ(n, 16 + 12 + 14 + 3 + 40);
	CHECK(memcmp(b, sig, 12) == 0);
	CHECK_EQ(b[12], 0x21);
	CHECK_EQ(b[13], 0x11);
	CHECK_EQ(be16(b + 14), n - 16);
	const uint8_t a[12] = {192, 0, 2, 7, 198, 51, 100, 1, 40000 >> 8, 40000 & 0xff, 1, 187};
	CHECK(memcmp(b + 16, a, 12) == 0);
	const uint8_t *t = b + 28;
	CHECK_EQ(t[0], 0x02);
	CHECK_EQ(be16(t + 1), 11);
	CHECK(memcmp(t + 3, "example.com", 11) == 0);
	t += 14;
	CHECK_EQ(t[0], 0x20);
	CHECK_EQ(be16(t + 1), 40);
	CHECK_EQ(t[3], 0x01);                /* PP2_CLIENT_SSL */
	CHECK(t[4] || t[5] || t[6] || t[7]); /* verify: no client certificate */
	CHECK_EQ(t[8], 0x21);                /* version sub-TLV */
	CHECK_EQ(be16(t + 9), 7);
	CHECK(memcmp(t + 11, "TLSv1.3", 7) == 0);
	CHECK_EQ(t[18], 0x23); /* cipher sub-TLV */
	CHECK_EQ(be16(t + 19), 22);
	CHECK(memcmp(t + 21, "TLS_AES_128_GCM_SHA256", 22) == 0);
	/* Too small a buffer is an error, never an overrun. */
	for (size_t cap = 0; cap < (size_t)n; cap++)
		CHECK_EQ(kpx_pp2_build(b, cap, &in), -ENOSPC);
}

static void test_ipv6_plain(void)
{
	struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
	struct sockaddr_in6 d = {.sin6_family = AF_INET6, .sin6_port = htons(65535)};
	inet_pton(AF_INET6, "2001:db8::1", &s.sin6_addr);
	inet_pton(AF_INET6, "::1", &d.sin6_addr);
	struct kpx_pp2_info in = {.src = (struct sockaddr *)&s, .dst = (struct sockaddr *)&d};
	uint8_t b[KPX_PP2_MAX];
	int n = kpx_pp2_build(b, sizeof(b), &in);
	CHECK_EQ(n, 16 + 36);
	CHECK_EQ(b[13], 0x21);
	CHECK_EQ(be16(b + 14), 36);
	CHECK(memcmp(b + 16, s.sin6_addr.s6_addr, 16) == 0);
	CHECK(memcmp(b + 32, d.sin6_addr.s6_addr, 16) == 0);
	CHECK_EQ(be16(b + 48), 1);
	CHECK_EQ(be16(b + 50), 65535);
	/* A QUIC client: UDP over IPv6, the same addresses. */
	in.udp = true;
	CHECK_EQ(kpx_pp2_build(b, sizeof(b), &in), 16 + 36);
	CHECK_EQ(b[13], 0x22);
}

static void test_unspec_and_limits(void)
{
	struct sockaddr_in s = {.sin_family = AF_INET};
	struct sockaddr_in6 d = {.sin6_family = AF_INET6};
	char big[300];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	struct kpx_pp2_info in = {.src = (struct sockaddr *)&s, .dst = (struct sockaddr *)&d};
	uint8_t b[KPX_PP2_MAX];
	int n = kpx_pp2_build(b, sizeof(b), &in);
	CHECK_EQ(n, 16);
	CHECK_EQ(b[13], 0x00);
	in.udp = true; /* no address: UNSPEC whatever the transport */
	CHECK_EQ(kpx_pp2_build(b, sizeof(b), &in), 16);
	CHECK_EQ(b[13], 0x00);
	in.udp = false;
	CHECK_EQ(be16(b + 14), 0);
	in.sni = big;
	CHECK_EQ(kpx_pp2_build(b, sizeof(b), &in), -EINVAL);
	in.sni = NULL;
	in.tls_version = "TLSv1.2";
	in.cipher = big;
	CHECK_EQ(kpx_pp2_build(b, sizeof(b), &in), -EINVAL);
	in.alpn = (const unsigned char *)"h2";
	in.alpn_len = 2;
	in.cipher = NULL;
	n = kpx_pp2_build(b, sizeof(b), &in);
	CHECK_EQ(n, 16 + 5 + 3 + 5 + 10);
	CHECK_EQ(b[16], 0x01);
	CHECK_EQ(be16(b + 17), 2);
	CHECK_EQ(b[21], 0x20);
	CHECK_EQ(be16(b + 22), 15);
}

int main(void)
{
	test_ipv4_tlvs();
	test_ipv6_plain();
	test_unspec_and_limits();
	CHECK_DONE();
}
