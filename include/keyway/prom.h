/*
 * keyway/prom.h - a writer of the Prometheus text exposition format 0.0.4,
 * for every /metrics page of Keyway.
 *
 * Text is appended to a growing kw_buf: a line is never cut, however long
 * its labels. Label values are escaped as the format requires (\\, \" and
 * \n); names and HELP texts are the caller's constants. The first failed
 * append (out of memory) is remembered in rc and turns every later call
 * into a no-op, so a renderer checks once, at the end.
 */
#ifndef KEYWAY_PROM_H
#define KEYWAY_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "keyway/buf.h"

struct kw_prom {
	struct kw_buf *out; /* where the text goes (not owned) */
	int rc;             /* 0, or -ENOMEM once an append failed */
};

/* One label of a sample: key="value". */
struct kw_prom_label {
	const char *key;
	const char *value; /* escaped on output */
};

/* kw_prom_init starts writing to out (appending after what it holds). */
void kw_prom_init(struct kw_prom *p, struct kw_buf *out);

/* kw_prom_family writes "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void kw_prom_family(struct kw_prom *p, const char *name, const char *type, const char *help);

/*
 * kw_prom_sample writes one sample line: name{k1="v1",...} value, with no
 * braces when nlabels is 0. value is the number already formatted (e.g.
 * "1.5"), so any format the caller needs is kept exactly.
 */
void kw_prom_sample(struct kw_prom *p, const char *name, const struct kw_prom_label *labels,
                    size_t nlabels, const char *value);

/* kw_prom_u64 is kw_prom_sample with an unsigned integer value. */
void kw_prom_u64(struct kw_prom *p, const char *name, const struct kw_prom_label *labels,
                 size_t nlabels, uint64_t value);

/* kw_prom_single writes a family with one unlabelled integer sample. */
void kw_prom_single(struct kw_prom *p, const char *name, const char *type, const char *help,
                    uint64_t value);

/*
 * kw_prom_histogram writes the samples of one histogram series: for each of
 * the nbuckets upper bounds le[i] a cumulative name_bucket{labels,le="..."}
 * line from the non-cumulative counts bucket[0..nbuckets] (the last one
 * being +Inf), then name_sum (sum, already formatted) and name_count.
 * labels may hold at most 8 entries.
 */
void kw_prom_histogram(struct kw_prom *p, const char *name, const struct kw_prom_label *labels,
                       size_t nlabels, const char *const *le, const uint64_t *bucket,
                       size_t nbuckets, const char *sum);

/* kw_prom_ns_seconds formats ns as seconds with nine decimals ("1.000000500") into out. */
void kw_prom_ns_seconds(uint64_t ns, char *out, size_t outlen);

#endif
