/* test_signals.c - a blocked signal arrives on the signalfd, in order, and nowhere else. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "check.h"
#include "keyway/signals.h"

int main(void)
{
	struct signalfd_siginfo si;
	sigset_t now;

	CHECK_EQ(kw_signalfd_open((const int[]){SIGUSR1, 0}, 2), -EINVAL);

	int fd = kw_signalfd_open((const int[]){SIGUSR1, SIGUSR2}, 2);
	CHECK(fd >= 0);
	CHECK_EQ(pthread_sigmask(SIG_BLOCK, NULL, &now), 0);
	CHECK(sigismember(&now, SIGUSR1) && sigismember(&now, SIGUSR2));
	CHECK(!sigismember(&now, SIGTERM));
	/* Nothing pending: the descriptor does not block. */
	CHECK_EQ(read(fd, &si, sizeof(si)), -1);
	CHECK_EQ(errno, EAGAIN);
	/* Without the block these would end the process. */
	CHECK_EQ(pthread_kill(pthread_self(), SIGUSR2), 0);
	CHECK_EQ(read(fd, &si, sizeof(si)), (ssize_t)sizeof(si));
	CHECK_EQ(si.ssi_signo, SIGUSR2);
	CHECK_EQ(raise(SIGUSR1), 0);
	CHECK_EQ(read(fd, &si, sizeof(si)), (ssize_t)sizeof(si));
	CHECK_EQ(si.ssi_signo, SIGUSR1);
	close(fd);
	CHECK_DONE();
}
