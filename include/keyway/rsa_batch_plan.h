/*
 * keyway/rsa_batch_plan.h - when a multi-buffer RSA batch (keyway/rsa_batch.h)
 * is worth running, for the places that gather batches (the threads backend's
 * crypto threads, keywayd's worker).
 *
 * The kernel computes its eight lanes side by side, so a partial batch costs
 * nearly what a full one does. A batch of n lanes pays when one kernel run
 * costs less than n OpenSSL operations; below that the lanes go to OpenSSL
 * one by one. The threshold is measured, once per modulus size and process,
 * on the first key of that size that asks.
 */
#ifndef KEYWAY_RSA_BATCH_PLAN_H
#define KEYWAY_RSA_BATCH_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyway/rsa_batch.h"

/* "Never batch": more lanes than a batch holds. */
#define KW_RSA_BATCH_NEVER (KW_RSA_BATCH_MAX + 1)

/*
 * kw_rsa_batch_min_lanes is the fewest lanes of k's modulus size from which
 * every kernel run up to a full batch is cheaper than OpenSSL per operation
 * (KW_RSA_BATCH_MIN_KERNEL..KW_RSA_BATCH_MAX, or KW_RSA_BATCH_NEVER when the
 * kernel does not run here or never pays). The first call for a size
 * measures, with k and its pkey: the CPU time of the smallest kernel run
 * (KW_RSA_BATCH_MIN_KERNEL lanes) and of a full batch against one OpenSSL
 * private operation, a few milliseconds. KEYWAY_RSA_BATCH_MIN_LANES=N (1..9) in the environment
 * replaces the measurement, for tuning and tests; it holds even where the
 * kernel does not run (kw_rsa_batch_run's OpenSSL path then computes the
 * lanes), so the gathering of batches can be tested on any CPU.
 */
unsigned kw_rsa_batch_min_lanes(const struct kw_rsa_batch_key *k, EVP_PKEY *pkey);

/*
 * kw_rsa_batch_lanes_needed is the threshold the measurement gives for a
 * KW_RSA_BATCH_MIN_KERNEL-lane kernel run costing low_ns, a full batch
 * full_ns and an OpenSSL operation openssl_ns (a linear cost between the two
 * batch sizes). Every size from the threshold up to a full batch pays.
 */
unsigned kw_rsa_batch_lanes_needed(uint64_t low_ns, uint64_t full_ns, uint64_t openssl_ns);

/* Counters of one gatherer of batches (owner's thread, or relaxed atomics: see its user). */
struct kw_rsa_batch_counts {
	uint64_t batches;   /* kw_rsa_batch_run calls */
	uint64_t lanes;     /* operations computed in them */
	uint64_t fallbacks; /* batchable operations sent to OpenSSL: too few to pay a batch */
};

#endif
