/* test_stats.c - the bench latency histogram keeps ~1 % precision over its whole range. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "stats.h"

static int close_to(double got, double want, double rel)
{
	return fabs(got - want) <= want * rel + 0.5;
}

int main(void)
{
	static struct kwb_hist h;

	kwb_hist_init(&h);
	CHECK(kwb_hist_percentile(&h, 50) == 0);
	CHECK(kwb_hist_mean(&h) == 0);

	/* One value anywhere in the range comes back within 1 %. */
	static const double values[] = {0,    1,     7,     255, 256,   257, 511,   512,
	                                1000, 12345, 99999, 1e6, 3.3e7, 1e9, 1.5e10};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		kwb_hist_init(&h);
		kwb_hist_record(&h, (uint64_t)values[i]);
		CHECK(close_to(kwb_hist_percentile(&h, 50), values[i], 0.01));
		CHECK(close_to(kwb_hist_percentile(&h, 99.9), values[i], 0.01));
	}

	/* A uniform spread 1..100000 ns: the percentiles are where they should be. */
	kwb_hist_init(&h);
	for (uint64_t v = 1; v <= 100000; v++)
		kwb_hist_record(&h, v);
	CHECK_EQ(h.total, 100000);
	CHECK(close_to(kwb_hist_percentile(&h, 50), 50000, 0.01));
	CHECK(close_to(kwb_hist_percentile(&h, 90), 90000, 0.01));
	CHECK(close_to(kwb_hist_percentile(&h, 99), 99000, 0.01));
	CHECK(close_to(kwb_hist_percentile(&h, 99.9), 99900, 0.01));
	CHECK(close_to(kwb_hist_mean(&h), 50000.5, 0.0001));
	CHECK_EQ(h.min_ns, 1);
	CHECK_EQ(h.max_ns, 100000);
	CHECK(kwb_hist_percentile(&h, 100) <= 100000);

	/* A tail: 999 fast and 1 slow operation. */
	kwb_hist_init(&h);
	for (int i = 0; i < 999; i++)
		kwb_hist_record(&h, 1000);
	kwb_hist_record(&h, 5000000);
	CHECK(close_to(kwb_hist_percentile(&h, 99.9), 1000, 0.01));
	CHECK(close_to(kwb_hist_percentile(&h, 100), 5000000, 0.01));

	/* Out of range values are clamped, not lost. */
	kwb_hist_init(&h);
	kwb_hist_record(&h, UINT64_MAX);
	CHECK_EQ(h.total, 1);
	CHECK(h.max_ns == KWB_HIST_MAX_NS - 1);
	CHECK_DONE();
}
