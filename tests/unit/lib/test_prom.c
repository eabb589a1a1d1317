/* test_prom.c - the Prometheus text writer: exact bytes, escaping, no truncation. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "keyway/prom.h"

static int same(struct kw_buf *b, const char *want)
{
	return kw_buf_unread(b) == strlen(want) && memcmp(kw_buf_head(b), want, strlen(want)) == 0;
}

static void test_families_and_samples(void)
{
	struct kw_buf b = KW_BUF_INIT;
	struct kw_prom p;
	kw_prom_init(&p, &b);
	kw_prom_single(&p, "keyless_keys", "gauge", "Number of private keys loaded.", 3);
	kw_prom_family(&p, "keyless_connections", "gauge", "Open client connections by transport.");
	struct kw_prom_label l[] = {{"transport", "tcp"}};
	kw_prom_u64(&p, "keyless_connections", l, 1, 18446744073709551615ull);
	kw_prom_sample(&p, "cpu", (struct kw_prom_label[]){{"worker", "0"}, {"x", "y"}}, 2,
	               "0.250000");
	CHECK_EQ(p.rc, 0);
	CHECK(same(&b, "# HELP keyless_keys Number of private keys loaded.\n"
	               "# TYPE keyless_keys gauge\n"
	               "keyless_keys 3\n"
	               "# HELP keyless_connections Open client connections by transport.\n"
	               "# TYPE keyless_connections gauge\n"
	               "keyless_connections{transport=\"tcp\"} 18446744073709551615\n"
	               "cpu{worker=\"0\",x=\"y\"} 0.250000\n"));
	kw_buf_cleanup(&b);
}

static void test_escaping_and_long_lines(void)
{
	struct kw_buf b = KW_BUF_INIT;
	struct kw_prom p;
	kw_prom_init(&p, &b);
	kw_prom_sample(&p, "m", (struct kw_prom_label[]){{"v", "a\"b\\c\nd"}}, 1, "1");
	CHECK(same(&b, "m{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
	kw_buf_reset(&b);

	/* A label value of 5000 bytes: the line is whole (a 512-byte cut is a bug). */
	static char big[5001];
	memset(big, 'x', 5000);
	kw_prom_u64(&p, "m", (struct kw_prom_label[]){{"v", big}}, 1, 7);
	CHECK_EQ(p.rc, 0);
	CHECK_EQ(kw_buf_unread(&b), strlen("m{v=\"\"} 7\n") + 5000);
	CHECK(memcmp(kw_buf_tail(&b) - 5, "\"} 7\n", 5) == 0);
	kw_buf_cleanup(&b);
}

static void test_histogram(void)
{
	static const char *const le[] = {"0.0001", "0.0002"};
	const uint64_t bucket[] = {1, 0, 2}; /* not cumulative; the last one is +Inf */
	struct kw_buf b = KW_BUF_INIT;
	struct kw_prom p;
	char sum[32];
	kw_prom_init(&p, &b);
	kw_prom_ns_seconds(1000000500u, sum, sizeof(sum));
	CHECK(strcmp(sum, "1.000000500") == 0);
	struct kw_prom_label l[] = {{"error", "no error"}, {"type", "RSA"}};
	kw_prom_histogram(&p, "h", l, 2, le, bucket, 2, sum);
	CHECK(same(&b, "h_bucket{error=\"no error\",type=\"RSA\",le=\"0.0001\"} 1\n"
	               "h_bucket{error=\"no error\",type=\"RSA\",le=\"0.0002\"} 1\n"
	               "h_bucket{error=\"no error\",type=\"RSA\",le=\"+Inf\"} 3\n"
	               "h_sum{error=\"no error\",type=\"RSA\"} 1.000000500\n"
	               "h_count{error=\"no error\",type=\"RSA\"} 3\n"));
	kw_buf_cleanup(&b);
}

int main(void)
{
	test_families_and_samples();
	test_escaping_and_long_lines();
	test_histogram();
	CHECK_DONE();
}
