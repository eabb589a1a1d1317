/*
 * table.h - the connection table's layout, shared by table.c (its upkeep)
 * and classify.c (which looks connections up and counts verdicts).
 */
#ifndef KW_QUIC_TABLE_H
#define KW_QUIC_TABLE_H

#include "keyway/quic.h"

struct kw_quic_table {
	size_t cid_len;              /* short-header connection ID length */
	size_t mask;                 /* buckets - 1 (a power of two) */
	size_t count, max;           /* connections, and how many may be added */
	uint64_t seed[2];            /* hash key, random per table */
	struct kw_quic_conn **slots; /* open addressing; TOMBSTONE marks removals */
	struct kw_quic_table_stats stats;
};

#endif
