/* prom.c - Prometheus text format writer (see keyway/prom.h). */
#include "keyway/prom.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAX_LABELS 8 /* kw_prom_histogram adds le to the caller's */

void kw_prom_init(struct kw_prom *p, struct kw_buf *out)
{
	p->out = out;
	p->rc = 0;
}

static void put(struct kw_prom *p, const char *s, size_t n)
{
	if (p->rc == 0 && kw_buf_append(p->out, s, n) < 0)
		p->rc = -ENOMEM;
}

static void puts_(struct kw_prom *p, const char *s)
{
	put(p, s, strlen(s));
}

/* put_escaped writes a label value: backslash, double quote and newline escaped. */
static void put_escaped(struct kw_prom *p, const char *v)
{
	const char *run = v;
	for (; *v != '\0'; v++) {
		const char *esc = *v == '\\'   ? "\\\\"
		                  : *v == '"'  ? "\\\""
		                  : *v == '\n' ? "\\n"
		                               : NULL;
		if (esc == NULL)
			continue;
		put(p, run, (size_t)(v - run));
		put(p, esc, 2);
		run = v + 1;
	}
	put(p, run, (size_t)(v - run));
}

void kw_prom_family(struct kw_prom *p, const char *name, const char *type, const char *help)
{
	puts_(p, "# HELP ");
	puts_(p, name);
	puts_(p, " ");
	puts_(p, help);
	puts_(p, "\n# TYPE ");
	puts_(p, name);
	puts_(p, " ");
	puts_(p, type);
	puts_(p, "\n");
}

/* sample writes name+suffix{labels} value. */
static void sample(struct kw_prom *p, const char *name, const char *suffix,
                   const struct kw_prom_label *labels, size_t nlabels, const char *value)
{
	puts_(p, name);
	puts_(p, suffix);
	for (size_t i = 0; i < nlabels; i++) {
		puts_(p, i == 0 ? "{" : ",");
		puts_(p, labels[i].key);
		puts_(p, "=\"");
		put_escaped(p, labels[i].value);
		puts_(p, "\"");
	}
	puts_(p, nlabels > 0 ? "} " : " ");
	puts_(p, value);
	puts_(p, "\n");
}

void kw_prom_sample(struct kw_prom *p, const char *name, const struct kw_prom_label *labels,
                    size_t nlabels, const char *value)
{
	sample(p, name, "", labels, nlabels, value);
}

static void sample_u64(struct kw_prom *p, const char *name, const char *suffix,
                       const struct kw_prom_label *labels, size_t nlabels, uint64_t value)
{
	char v[24];
	snprintf(v, sizeof(v), "%" PRIu64, value);
	sample(p, name, suffix, labels, nlabels, v);
}

void kw_prom_u64(struct kw_prom *p, const char *name, const struct kw_prom_label *labels,
                 size_t nlabels, uint64_t value)
{
	sample_u64(p, name, "", labels, nlabels, value);
}

void kw_prom_single(struct kw_prom *p, const char *name, const char *type, const char *help,
                    uint64_t value)
{
	kw_prom_family(p, name, type, help);
	kw_prom_u64(p, name, NULL, 0, value);
}

void kw_prom_histogram(struct kw_prom *p, const char *name, const struct kw_prom_label *labels,
                       size_t nlabels, const char *const *le, const uint64_t *bucket,
                       size_t nbuckets, const char *sum)
{
	struct kw_prom_label l[MAX_LABELS + 1];
	uint64_t cum = 0;

	if (nlabels > MAX_LABELS) {
		p->rc = p->rc != 0 ? p->rc : -EINVAL;
		return;
	}
	memcpy(l, labels, nlabels * sizeof(*l));
	l[nlabels].key = "le";
	for (size_t i = 0; i <= nbuckets; i++) {
		cum += bucket[i];
		l[nlabels].value = i < nbuckets ? le[i] : "+Inf";
		sample_u64(p, name, "_bucket", l, nlabels + 1, cum);
	}
	sample(p, name, "_sum", labels, nlabels, sum);
	sample_u64(p, name, "_count", labels, nlabels, cum);
}

void kw_prom_ns_seconds(uint64_t ns, char *out, size_t outlen)
{
	snprintf(out, outlen, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
}
