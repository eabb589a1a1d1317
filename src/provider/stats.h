/*
 * stats.h - the provider's counters (KEYWAY_STATS_FILE, stats_file in
 * openssl.cnf, kw_provider_stats in keyway/provider_api.h): one set per
 * process, counted with relaxed atomics on every path an operation takes.
 */
#ifndef KEYWAY_PROVIDER_STATS_H
#define KEYWAY_PROVIDER_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "keyway/backend_keyless.h"

/* The counters of KEYWAY_STATS_FILE: one set per process. */
struct kwp_stats {
	_Atomic uint64_t ops_submitted;    /* ops handed to a backend or computed */
	_Atomic uint64_t pauses;           /* ASYNC_pause_job calls (both statuses) */
	_Atomic uint64_t spurious_resumes; /* resumes before the op's notification */
	_Atomic uint64_t eagain;           /* pauses with ASYNC_STATUS_EAGAIN (channel full) */
	_Atomic uint64_t fd_wakeups;       /* eventfd writes for completed ops */
	_Atomic uint64_t callback_wakeups; /* wait-context callbacks for completed ops */
	_Atomic uint64_t eventfds_created;
	struct kw_keyless_counters keyless; /* retries, failovers, fallbacks */
};
extern struct kwp_stats kwp_stats;

/* KWP_COUNT adds one to a counter of kwp_stats (relaxed: only the totals matter). */
#define KWP_COUNT(field) atomic_fetch_add_explicit(&kwp_stats.field, 1, memory_order_relaxed)

/* kwp_stats_reset zeroes the counters (a forked child counts its own work). */
void kwp_stats_reset(void);

/*
 * kwp_stats_write writes `name value` lines to path ("%p" replaced by the
 * pid), unless this process ran no operation and the file exists (a
 * master process must not overwrite its worker's numbers). 0 or -errno.
 */
int kwp_stats_write(const char *path);

#endif
