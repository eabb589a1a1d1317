/*
 * test_stats.c - the provider's counters: counting, the public snapshot,
 * reset, and the stats file ("%p" per process; a process that ran nothing
 * leaves an existing file alone).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "keyway/provider_api.h"
#include "stats.h"

static void count_some(void)
{
	for (int i = 0; i < 3; i++)
		KWP_COUNT(ops_submitted);
	KWP_COUNT(pauses);
	KWP_COUNT(pauses);
	KWP_COUNT(spurious_resumes);
	KWP_COUNT(eagain);
	KWP_COUNT(fd_wakeups);
	KWP_COUNT(callback_wakeups);
	KWP_COUNT(eventfds_created);
	atomic_fetch_add(&kwp_stats.keyless.retries, 4);
	atomic_fetch_add(&kwp_stats.keyless.failovers, 5);
	atomic_fetch_add(&kwp_stats.keyless.fallbacks, 6);
}

static void test_snapshot(void)
{
	struct kw_provider_stats st;

	kwp_stats_reset();
	count_some();
	kw_provider_stats(&st);
	CHECK_EQ(st.ops_submitted, 3);
	CHECK_EQ(st.pauses, 2);
	CHECK_EQ(st.spurious_resumes, 1);
	CHECK_EQ(st.eagain, 1);
	CHECK_EQ(st.fd_wakeups, 1);
	CHECK_EQ(st.callback_wakeups, 1);
	CHECK_EQ(st.eventfds_created, 1);
	CHECK_EQ(st.retries, 4);
	CHECK_EQ(st.failovers, 5);
	CHECK_EQ(st.fallbacks, 6);

	kwp_stats_reset();
	kw_provider_stats(&st);
	CHECK_EQ(st.ops_submitted + st.pauses + st.spurious_resumes + st.eagain + st.fd_wakeups +
	             st.callback_wakeups + st.eventfds_created + st.retries + st.failovers +
	             st.fallbacks,
	         0);
}

static char *slurp(const char *path)
{
	static char buf[1024];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_file(void)
{
	char dir[] = "/tmp/kw_test_stats_XXXXXX", pattern[256], path[256];
	const char *text;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(pattern, sizeof(pattern), "%s/stats.%%p", dir);
	snprintf(path, sizeof(path), "%s/stats.%ld", dir, (long)getpid());

	kwp_stats_reset();
	count_some();
	CHECK_EQ(kwp_stats_write(pattern), 0);
	text = slurp(path);
	CHECK(text != NULL && strcmp(text, "ops_submitted 3\npauses 2\nspurious_resumes 1\n"
	                                   "eagain 1\nfd_wakeups 1\ncallback_wakeups 1\n"
	                                   "eventfds_created 1\nretries 4\nfailovers 5\n"
	                                   "fallbacks 6\n") == 0);

	/* A process that ran nothing (a master) leaves its worker's numbers alone... */
	kwp_stats_reset();
	CHECK_EQ(kwp_stats_write(pattern), 0);
	text = slurp(path);
	CHECK(text != NULL && strncmp(text, "ops_submitted 3\n", 16) == 0);
	/* ...but writes zeros where there is no file yet. */
	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(kwp_stats_write(pattern), 0);
	text = slurp(path);
	CHECK(text != NULL && strncmp(text, "ops_submitted 0\npauses 0\n", 25) == 0);

	/* A file that cannot be written: -errno. */
	snprintf(pattern, sizeof(pattern), "%s/no/such/dir/stats", dir);
	KWP_COUNT(ops_submitted);
	CHECK(kwp_stats_write(pattern) < 0);

	unlink(path);
	rmdir(dir);
	kwp_stats_reset();
}

int main(void)
{
	test_snapshot();
	test_file();
	CHECK_DONE();
}
