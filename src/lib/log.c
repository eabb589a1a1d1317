/* log.c - one line per event on stderr (see keyway/log.h). */
#include "keyway/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

static const char *log_prog = "keyway";
static enum kw_log_level log_min = KW_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void kw_log_init(const char *prog, enum kw_log_level min_level)
{
	log_prog = prog;
	log_min = min_level;
}

void kw_log_set_level(enum kw_log_level min_level)
{
	log_min = min_level;
}

int kw_log_enabled(enum kw_log_level level)
{
	return level >= log_min;
}

int kw_log_parse_level(const char *name)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -EINVAL;
}

void kw_log(enum kw_log_level level, const char *fmt, ...)
{
	if (level < log_min)
		return;
	char line[1024];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
	                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s: ", tm.tm_year + 1900,
	                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	                 ts.tv_nsec / 1000000, log_prog, (int)getpid(), level_names[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	/* One line per event: no embedded newlines from callers' strings. */
	for (size_t i = (size_t)n; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[len++] = '\n';
	/* A single write keeps lines from several threads whole. */
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

void kw_log_openssl(enum kw_log_level level, const char *msg)
{
	char reason[256] = "";
	unsigned long e;
	size_t used = 0;
	while ((e = ERR_get_error()) != 0) {
		char one[200];
		ERR_error_string_n(e, one, sizeof(one));
		int w =
		    snprintf(reason + used, sizeof(reason) - used, "%s%s", used ? "; " : "", one);
		if (w < 0 || (size_t)w >= sizeof(reason) - used)
			break;
		used += (size_t)w;
	}
	kw_log(level, "%s%s%s", msg, reason[0] ? ": " : "", reason);
}

bool kw_log_limit_pass(struct kw_log_limit *l, uint64_t now_ns, unsigned long *held)
{
	bool pass = false;

	pthread_mutex_lock(&l->mu);
	if (!l->logged || now_ns - l->last_ns >= l->interval_ns) {
		pass = true;
		*held = l->held;
		l->held = 0;
		l->last_ns = now_ns;
		l->logged = true;
	} else {
		l->held++;
	}
	pthread_mutex_unlock(&l->mu);
	return pass;
}
