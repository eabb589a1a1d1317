/*
 * keyway/log.h - one-line-per-event logging to stderr (or a file).
 *
 * Lines look like: 2026-01-02T03:04:05.678Z keywayd[123] warn: message
 * Nothing that is or derives from private key material may be passed here.
 */
#ifndef KEYWAY_LOG_H
#define KEYWAY_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum kw_log_level { KW_LOG_DEBUG = 0, KW_LOG_INFO, KW_LOG_WARN, KW_LOG_ERROR };

/* kw_log_init sets the program name shown on each line and the minimum level. */
void kw_log_init(const char *prog, enum kw_log_level min_level);
/* kw_log_parse_level maps "debug|info|warn|error" to a level; -EINVAL otherwise. */
int kw_log_parse_level(const char *name);
void kw_log_set_level(enum kw_log_level min_level);
int kw_log_enabled(enum kw_log_level level);

void kw_log(enum kw_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* kw_log_openssl logs msg followed by the drained OpenSSL error queue. */
void kw_log_openssl(enum kw_log_level level, const char *msg);

/*
 * A message every connection may meet (a dead upstream, a refused client
 * certificate) is written at most once per interval, all threads together,
 * and what was held back is counted. Define one with KW_LOG_LIMIT_INIT.
 */
struct kw_log_limit {
	pthread_mutex_t mu;
	uint64_t interval_ns, last_ns;
	bool logged;
	unsigned long held;
};
#define KW_LOG_LIMIT_INIT(interval_ns)                                                             \
	{                                                                                          \
		PTHREAD_MUTEX_INITIALIZER, (interval_ns), 0, false, 0                              \
	}

/*
 * kw_log_limit_pass says whether a line may be written at now_ns (any thread);
 * if so, *held is how many were held back since the last one written.
 */
bool kw_log_limit_pass(struct kw_log_limit *l, uint64_t now_ns, unsigned long *held);

#define kw_debug(...) kw_log(KW_LOG_DEBUG, __VA_ARGS__)
#define kw_info(...) kw_log(KW_LOG_INFO, __VA_ARGS__)
#define kw_warn(...) kw_log(KW_LOG_WARN, __VA_ARGS__)
#define kw_error(...) kw_log(KW_LOG_ERROR, __VA_ARGS__)

#endif
