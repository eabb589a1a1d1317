/*
 * fd_fill.h - a descriptor table with no free slot, for the tests of what
 * a program does on EMFILE: fd_fill lowers the soft limit to just above the
 * highest descriptor open and takes every number left below it; fd_unfill
 * closes them and puts the limit back.
 */
#ifndef KW_TEST_FD_FILL_H
#define KW_TEST_FD_FILL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"

static int fd_fill_fds[65536];
static int fd_fill_n;
static struct rlimit fd_fill_saved;

/* fd_fill_highest is the highest descriptor open in this process, or -1. */
static inline int fd_fill_highest(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int hi = 2;
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (atoi(e->d_name) > hi)
			hi = atoi(e->d_name);
	closedir(d);
	return hi;
}

/* fd_fill takes every descriptor number below a lowered limit (dups of any_fd): then EMFILE. */
static inline void fd_fill(int any_fd)
{
	int hi = fd_fill_highest();
	CHECK(hi > 2);
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &fd_fill_saved), 0);
	struct rlimit r = {.rlim_cur = (rlim_t)hi + 1, .rlim_max = fd_fill_saved.rlim_max};
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &r), 0);
	int fd;
	while (fd_fill_n < (int)(sizeof(fd_fill_fds) / sizeof(fd_fill_fds[0])) &&
	       (fd = fcntl(any_fd, F_DUPFD_CLOEXEC, 0)) >= 0)
		fd_fill_fds[fd_fill_n++] = fd;
	CHECK_EQ(errno, EMFILE);
}

/* fd_unfill gives back what fd_fill took and the limit it lowered. */
static inline void fd_unfill(void)
{
	while (fd_fill_n > 0)
		close(fd_fill_fds[--fd_fill_n]);
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &fd_fill_saved), 0);
}

#endif
