/*
 * fuzz_h1scan.c - libFuzzer harness for the TCP relay's HTTP/1.1 framing
 * scanner. The first byte picks requests or responses (bit 0) and where the
 * rest is cut (the other bits); the rest is one connection's bytes. The
 * scanner must be indifferent to where reads end: fed whole, fed in two
 * pieces and fed a byte at a time it reports the same heads (at the same
 * stream offsets, with the same facts) and fails at the same byte.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h1scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EVENTS 64

struct trace {
	size_t at[MAX_EVENTS];
	int fact[MAX_EVENTS];
	size_t n;
	size_t error_at; /* SIZE_MAX: none */
};

/* run scans p[0, n) in pieces of step bytes (first piece: first bytes). */
static void run(bool response, const uint8_t *p, size_t n, size_t first, size_t step,
                struct trace *t)
{
	struct kpx_h1 h;
	size_t pos = 0;
	kpx_h1_init(&h, response);
	memset(t, 0, sizeof(*t));
	t->error_at = SIZE_MAX;
	while (pos < n) {
		size_t end = pos == 0 && first > 0 ? first : pos + step;
		if (end > n)
			end = n;
		while (pos < end) {
			size_t used = SIZE_MAX;
			int rc = kpx_h1_feed(&h, p + pos, end - pos, &used);
			if (used > end - pos)
				abort(); /* used must lie inside what was given */
			pos += used;
			if (rc == KPX_H1_ERROR) {
				t->error_at = pos;
				return;
			}
			if (rc == KPX_H1_HEAD) {
				if (t->n < MAX_EVENTS) {
					t->at[t->n] = pos;
					t->fact[t->n] =
					    response ? h.status * 2 + h.has_alt_svc : (int)h.kind;
				}
				t->n++;
				/* Answers alternate between HEAD and not, from the status. */
				h.answers = h.status % 3 == 0 ? KPX_H1_REQ_HEAD : KPX_H1_REQ_OTHER;
			} else if (pos != end) {
				abort(); /* KPX_H1_MORE takes every byte */
			}
		}
	}
}

static bool same(const struct trace *a, const struct trace *b)
{
	if (a->n != b->n || a->error_at != b->error_at)
		return false;
	size_t k = a->n < MAX_EVENTS ? a->n : MAX_EVENTS;
	for (size_t i = 0; i < k; i++)
		if (a->at[i] != b->at[i] || a->fact[i] != b->fact[i])
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	bool response = data[0] & 1;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	size_t cut = n > 0 ? (size_t)(data[0] >> 1) % (n + 1) : 0;
	struct trace whole, two, bytes;

	run(response, p, n, 0, n > 0 ? n : 1, &whole);
	run(response, p, n, cut, n > 0 ? n : 1, &two);
	run(response, p, n, 0, 1, &bytes);
	if (!same(&whole, &two) || !same(&whole, &bytes))
		abort();
	return 0;
}
