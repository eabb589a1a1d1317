/*
 * stats.c - the provider's counters and the file they are written to (see
 * stats.h), and their public snapshot (kw_provider_stats).
 */
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "keyway/provider_api.h"

struct kwp_stats kwp_stats;

void kw_provider_stats(struct kw_provider_stats *out)
{
	out->ops_submitted = atomic_load(&kwp_stats.ops_submitted);
	out->pauses = atomic_load(&kwp_stats.pauses);
	out->spurious_resumes = atomic_load(&kwp_stats.spurious_resumes);
	out->eagain = atomic_load(&kwp_stats.eagain);
	out->fd_wakeups = atomic_load(&kwp_stats.fd_wakeups);
	out->callback_wakeups = atomic_load(&kwp_stats.callback_wakeups);
	out->eventfds_created = atomic_load(&kwp_stats.eventfds_created);
	out->retries = atomic_load(&kwp_stats.keyless.retries);
	out->failovers = atomic_load(&kwp_stats.keyless.failovers);
	out->fallbacks = atomic_load(&kwp_stats.keyless.fallbacks);
}

void kwp_stats_reset(void)
{
	atomic_store(&kwp_stats.ops_submitted, 0);
	atomic_store(&kwp_stats.pauses, 0);
	atomic_store(&kwp_stats.spurious_resumes, 0);
	atomic_store(&kwp_stats.eagain, 0);
	atomic_store(&kwp_stats.fd_wakeups, 0);
	atomic_store(&kwp_stats.callback_wakeups, 0);
	atomic_store(&kwp_stats.eventfds_created, 0);
	atomic_store(&kwp_stats.keyless.retries, 0);
	atomic_store(&kwp_stats.keyless.failovers, 0);
	atomic_store(&kwp_stats.keyless.fallbacks, 0);
}

/* file_name expands "%p" in path into the pid (one file per process: HAProxy, nginx workers). */
static void file_name(char *name, size_t size, const char *path)
{
	size_t o = 0;

	for (const char *c = path; *c != '\0' && o + 24 < size; c++) {
		if (c[0] == '%' && c[1] == 'p') {
			o += (size_t)snprintf(name + o, size - o, "%ld", (long)getpid());
			c++;
		} else {
			name[o++] = *c;
		}
	}
	name[o] = '\0';
}

int kwp_stats_write(const char *path)
{
	struct kw_provider_stats s;
	char name[4096];

	file_name(name, sizeof(name), path);
	kw_provider_stats(&s);
	/* A process that ran nothing (a master, a parent) leaves a worker's numbers alone. */
	if (s.ops_submitted == 0 && access(name, F_OK) == 0)
		return 0;
	/* The stats file's path is predictable: never write through a symlink there. */
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		int e = errno;
		close(fd);
		return -e;
	}
	fprintf(f,
	        "ops_submitted %llu\npauses %llu\nspurious_resumes %llu\neagain %llu\n"
	        "fd_wakeups %llu\ncallback_wakeups %llu\neventfds_created %llu\n"
	        "retries %llu\nfailovers %llu\nfallbacks %llu\n",
	        (unsigned long long)s.ops_submitted, (unsigned long long)s.pauses,
	        (unsigned long long)s.spurious_resumes, (unsigned long long)s.eagain,
	        (unsigned long long)s.fd_wakeups, (unsigned long long)s.callback_wakeups,
	        (unsigned long long)s.eventfds_created, (unsigned long long)s.retries,
	        (unsigned long long)s.failovers, (unsigned long long)s.fallbacks);
	return fclose(f) == 0 ? 0 : -errno;
}
