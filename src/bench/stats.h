/*
 * stats.h - a log-linear latency histogram (HdrHistogram-like): exact below
 * 256 ns, then 128 linear sub-buckets per power of two, so any recorded
 * value is known within 1/128 (< 0.8 %) up to ~17 s. Recording is a few
 * shifts and one increment: cheap enough for every operation.
 */
#ifndef KWB_STATS_H
#define KWB_STATS_H

#include <stdint.h>

#define KWB_HIST_SUB 128u
#define KWB_HIST_MAX_NS (1ull << 34) /* larger values are clamped (~17 s) */
#define KWB_HIST_BUCKETS ((34u - 7u + 1u) * KWB_HIST_SUB)

struct kwb_hist {
	uint64_t counts[KWB_HIST_BUCKETS];
	uint64_t total;
	uint64_t min_ns, max_ns;
	double sum_ns;
};

void kwb_hist_init(struct kwb_hist *h);
void kwb_hist_record(struct kwb_hist *h, uint64_t ns);
/* kwb_hist_percentile is the value (ns) at or below which pct percent of records fall; 0 if empty.
 */
double kwb_hist_percentile(const struct kwb_hist *h, double pct);
double kwb_hist_mean(const struct kwb_hist *h);

#endif
