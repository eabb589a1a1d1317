/* signals.c - signals delivered through a signalfd (see keyway/signals.h). */
#include "keyway/signals.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>

int kw_signalfd_open(const int *signals, size_t n)
{
	sigset_t mask;
	sigemptyset(&mask);
	for (size_t i = 0; i < n; i++)
		if (sigaddset(&mask, signals[i]) < 0)
			return -EINVAL;
	int rc = pthread_sigmask(SIG_BLOCK, &mask, NULL);
	if (rc != 0)
		return -rc;
	int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd >= 0 ? fd : -errno;
}
