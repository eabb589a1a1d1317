/* test_metrics.c - histogram buckets and the Prometheus text of keywayd's metrics. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "keyway/buf.h"
#include "keyway/protocol.h"
#include "metrics.h"

static char *render(struct kwd_metrics *m)
{
	struct kw_buf b = KW_BUF_INIT;
	CHECK_EQ(kwd_metrics_render(m, &b), 0);
	kw_buf_append(&b, "", 1);
	char *s = strdup((const char *)kw_buf_head(&b));
	kw_buf_cleanup(&b);
	return s;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

int main(void)
{
	/* Prometheus buckets are "less than or equal": 100 us falls in le=0.0001. */
	struct kwd_hist h;
	memset(&h, 0, sizeof(h));
	kwd_hist_observe(&h, 100000);
	kwd_hist_observe(&h, 100001);
	kwd_hist_observe(&h, 1638400000);
	kwd_hist_observe(&h, 1638400001);
	CHECK_EQ(h.bucket[0], 1);
	CHECK_EQ(h.bucket[1], 1);
	CHECK_EQ(h.bucket[14], 1);
	CHECK_EQ(h.bucket[15], 1); /* +Inf */
	CHECK_EQ(h.sum_ns, 100000ull + 100001ull + 1638400000ull + 1638400001ull);

	struct kwd_metrics *m = NULL;
	CHECK_EQ(kwd_metrics_new(&m), 0);
	struct kwd_wmetrics *w1 = calloc(1, sizeof(*w1)), *w2 = calloc(1, sizeof(*w2));
	CHECK_EQ(kwd_metrics_add_worker(m, w1), 0);
	CHECK_EQ(kwd_metrics_add_worker(m, w2), 0);

	kwd_counter_add(&w1->requests[KW_OP_RSA_SIGN_SHA256], 2);
	kwd_counter_add(&w2->requests[KW_OP_RSA_SIGN_SHA256], 3);
	kwd_counter_add(&w2->requests[0x77], 1);
	kwd_hist_observe(&w1->exec[KW_FAMILY_ECDSA][KW_ERR_NONE], 50000);
	kwd_hist_observe(&w2->exec[KW_FAMILY_ECDSA][KW_ERR_NONE], 300000);
	kwd_hist_observe(&w2->total[KW_FAMILY_RSA][kwd_metrics_error_index(KW_ERR_KEY_NOT_FOUND)],
	                 1000);
	kwd_counter_add(&w1->conns_open[KWD_TRANSPORT_UNIX], 2);
	kwd_gauge_dec(&w1->conns_open[KWD_TRANSPORT_UNIX]);
	kwd_metrics_set_keys(m, 4);
	kwd_metrics_reload(m, 1);
	kwd_metrics_reload(m, 0);
	kwd_metrics_reload(m, 0);

	char *s = render(m);
	CHECK(strstr(s, "keyless_requests{opcode=\"OpRSASignSHA256\"} 5\n") != NULL);
	CHECK(strstr(s, "keyless_requests{opcode=\"Op(119)\"} 1\n") != NULL);
	CHECK(strstr(s, "keyless_request_exec_duration_per_opcode_bucket{error=\"no error\","
	                "type=\"ecdsa\",le=\"0.0001\"} 1\n") != NULL);
	CHECK(strstr(s, "keyless_request_exec_duration_per_opcode_bucket{error=\"no error\","
	                "type=\"ecdsa\",le=\"0.0004\"} 2\n") != NULL);
	CHECK(strstr(s, "keyless_request_exec_duration_per_opcode_bucket{error=\"no error\","
	                "type=\"ecdsa\",le=\"+Inf\"} 2\n") != NULL);
	CHECK(strstr(s, "keyless_request_exec_duration_per_opcode_sum{error=\"no error\","
	                "type=\"ecdsa\"} 0.000350000\n") != NULL);
	CHECK(strstr(s, "keyless_request_exec_duration_per_opcode_count{error=\"no error\","
	                "type=\"ecdsa\"} 2\n") != NULL);
	CHECK(strstr(s, "keyless_request_total_duration_per_opcode_count{error=\"key not found due "
	                "to no matching SKI/SNI/ServerIP\",type=\"rsa\"} 1\n") != NULL);
	CHECK(strstr(s, "le=\"1.6384\"") != NULL);
	CHECK(strstr(s, "keyless_connections{transport=\"unix\"} 1\n") != NULL);
	CHECK(strstr(s, "keyless_keys 4\n") != NULL);
	CHECK(strstr(s, "keyless_reloads_total{result=\"ok\"} 1\n") != NULL);
	CHECK(strstr(s, "keyless_reloads_total{result=\"error\"} 2\n") != NULL);
	/* Families never observed have no samples; every family is declared once. */
	CHECK(strstr(s, "type=\"ed25519\"") == NULL);
	CHECK_EQ(count(s, "# TYPE keyless_request_exec_duration_per_opcode histogram\n"), 1);
	CHECK_EQ(count(s, "# HELP keyless_requests "), 1);
	CHECK_EQ(count(s, "# TYPE "), count(s, "# HELP "));
	free(s);

	kwd_metrics_free(m);
	free(w1);
	free(w2);
	CHECK_DONE();
}
