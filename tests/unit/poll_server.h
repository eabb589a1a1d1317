/*
 * poll_server.h - the accept-and-read loop of the unit tests' fake
 * keyservers: a listening socket and up to POLL_SERVER_MAXC connections
 * polled from one thread, each connection's unread bytes handed to a
 * handler that consumes the complete frames it finds.
 */
#ifndef KW_TEST_POLL_SERVER_H
#define KW_TEST_POLL_SERVER_H

#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyway/buf.h"

#define POLL_SERVER_MAXC 16

struct poll_server {
	struct pollfd pf[POLL_SERVER_MAXC + 1]; /* pf[0]: the listener */
	struct kw_buf in[POLL_SERVER_MAXC + 1];
	int n;
};

typedef void (*poll_server_handler)(void *arg, int fd, struct kw_buf *in);

static inline void poll_server_init(struct poll_server *ps, int lfd)
{
	memset(ps, 0, sizeof(*ps));
	ps->pf[0].fd = lfd;
	ps->pf[0].events = POLLIN;
	ps->n = 1;
}

/* poll_server_step waits up to timeout_ms, accepts, reads, and calls handle per connection read. */
static inline void poll_server_step(struct poll_server *ps, int timeout_ms,
                                    poll_server_handler handle, void *arg)
{
	if (poll(ps->pf, (nfds_t)ps->n, timeout_ms) <= 0)
		return;
	if ((ps->pf[0].revents & POLLIN) && ps->n <= POLL_SERVER_MAXC) {
		int c = accept(ps->pf[0].fd, NULL, NULL);
		if (c >= 0) {
			ps->pf[ps->n].fd = c;
			ps->pf[ps->n].events = POLLIN;
			ps->pf[ps->n].revents = 0;
			memset(&ps->in[ps->n], 0, sizeof(ps->in[ps->n]));
			ps->n++;
		}
	}
	for (int i = 1; i < ps->n; i++) {
		if (!(ps->pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (kw_buf_reserve(&ps->in[i], 4096) < 0)
			continue;
		ssize_t r = recv(ps->pf[i].fd, ps->in[i].data + ps->in[i].len,
		                 ps->in[i].cap - ps->in[i].len, 0);
		if (r <= 0) {
			close(ps->pf[i].fd);
			kw_buf_cleanup(&ps->in[i]);
			ps->pf[i] = ps->pf[ps->n - 1];
			ps->in[i] = ps->in[ps->n - 1];
			ps->n--;
			i--;
			continue;
		}
		ps->in[i].len += (size_t)r;
		handle(arg, ps->pf[i].fd, &ps->in[i]);
	}
}

/* poll_server_close closes every connection (not the listener). */
static inline void poll_server_close(struct poll_server *ps)
{
	for (int i = 1; i < ps->n; i++) {
		close(ps->pf[i].fd);
		kw_buf_cleanup(&ps->in[i]);
	}
	ps->n = 1;
}

#endif
