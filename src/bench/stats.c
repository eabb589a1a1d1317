/* stats.c - log-linear latency histogram (see stats.h). */
#include "stats.h"

#include <string.h>

/*
 * Bucket layout: values below 2*SUB map to themselves; a larger value v
 * with highest bit b (b >= 8) keeps its top 8 bits: shift s = b - 7 puts
 * v >> s in [SUB, 2*SUB), and the bucket is s*SUB + (v >> s).
 */
static unsigned bucket_of(uint64_t v)
{
	if (v < 2 * KWB_HIST_SUB)
		return (unsigned)v;
	unsigned b = 63u - (unsigned)__builtin_clzll(v);
	unsigned s = b - 7u;
	return s * KWB_HIST_SUB + (unsigned)(v >> s);
}

/* The range [lo, hi] of values a bucket holds. */
static void bucket_range(unsigned i, uint64_t *lo, uint64_t *hi)
{
	if (i < 2 * KWB_HIST_SUB) {
		*lo = *hi = i;
		return;
	}
	unsigned s = i / KWB_HIST_SUB - 1u;
	uint64_t top = (uint64_t)(i - s * KWB_HIST_SUB);
	*lo = top << s;
	*hi = ((top + 1) << s) - 1;
}

void kwb_hist_init(struct kwb_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
}

void kwb_hist_record(struct kwb_hist *h, uint64_t ns)
{
	if (ns >= KWB_HIST_MAX_NS)
		ns = KWB_HIST_MAX_NS - 1;
	h->counts[bucket_of(ns)]++;
	h->total++;
	h->sum_ns += (double)ns;
	if (ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

double kwb_hist_percentile(const struct kwb_hist *h, double pct)
{
	if (h->total == 0)
		return 0;
	/* The rank of the record that pct percent of records do not exceed. */
	uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->total + 0.5);
	if (rank < 1)
		rank = 1;
	if (rank > h->total)
		rank = h->total;
	uint64_t seen = 0;
	for (unsigned i = 0; i < KWB_HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t lo, hi;
			bucket_range(i, &lo, &hi);
			double mid = ((double)lo + (double)hi) / 2;
			/* Never report outside what was actually seen. */
			if (mid > (double)h->max_ns)
				mid = (double)h->max_ns;
			if (mid < (double)h->min_ns)
				mid = (double)h->min_ns;
			return mid;
		}
	}
	return (double)h->max_ns;
}

double kwb_hist_mean(const struct kwb_hist *h)
{
	return h->total ? h->sum_ns / (double)h->total : 0;
}
