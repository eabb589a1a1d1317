/*
 * sched.c - core selection policies: which crypto core gets the next job
 * (the seed's SJBSQ(K), sticky hash, join-shortest-queue).
 */
#include <errno.h>
#include <string.h>

#include "keyway/quic.h"

static const char *const names[KW_QUIC_SCHED_COUNT] = {"inline", "sjbsq", "hash", "jsq"};

int kw_quic_sched_parse(const char *name)
{
	for (int s = 0; s < KW_QUIC_SCHED_COUNT; s++)
		if (name != NULL && strcmp(name, names[s]) == 0)
			return s;
	return -EINVAL;
}

const char *kw_quic_sched_name(enum kw_quic_sched s)
{
	return (unsigned)s < KW_QUIC_SCHED_COUNT ? names[s] : "?";
}

int kw_quic_sched_pick(enum kw_quic_sched s, unsigned bound, uint64_t start, const unsigned *queue,
                       const bool *room, unsigned n)
{
	unsigned first = n ? (unsigned)(start % n) : 0;
	int best = -1;

	if (n == 0 || s == KW_QUIC_SCHED_INLINE)
		return -1;
	if (s == KW_QUIC_SCHED_HASH)
		return room[first] ? (int)first : -1;
	for (unsigned i = 0; i < n; i++) {
		unsigned c = (first + i) % n;
		if (!room[c])
			continue;
		/* SJBSQ: the first core under the bound, probing from the connection's own. */
		if (s == KW_QUIC_SCHED_SJBSQ && queue[c] < bound)
			return (int)c;
		if (s == KW_QUIC_SCHED_JSQ && (best < 0 || queue[c] < queue[best]))
			best = (int)c;
	}
	return best;
}
