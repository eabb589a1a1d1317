/*
 * poll_server.h - the unit tests' fake keyservers: a listening socket and
 * up to POLL_SERVER_MAXC connections polled from one thread, each complete
 * keyless frame handed to the test's handler, which may answer with
 * poll_server_reply.
 */
#ifndef KW_TEST_POLL_SERVER_H
#define KW_TEST_POLL_SERVER_H

#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyway/buf.h"
#include "keyway/protocol.h"

#define POLL_SERVER_MAXC 16

struct poll_server {
	struct pollfd pf[POLL_SERVER_MAXC + 1]; /* pf[0]: the listener */
	struct kw_buf in[POLL_SERVER_MAXC + 1];
	int n;
};

/* A frame that parsed: its request id and message. */
typedef void (*poll_server_handler)(void *arg, int fd, uint32_t id, const struct kw_msg *m);

/* poll_server_reply sends one frame (blocking; a failed send is left to the client to notice). */
static inline void poll_server_reply(int fd, uint32_t id, uint8_t opcode, const uint8_t *p,
                                     size_t n)
{
	struct kw_buf out = {0};
	struct kw_msg m = {.has_opcode = true, .opcode = opcode};
	m.payload.data = p;
	m.payload.len = n;
	if (kw_msg_encode(&out, id, &m, false) == 0) {
		size_t off = 0;
		while (off < out.len) {
			ssize_t w = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	kw_buf_cleanup(&out);
}

/* frames hands every complete frame in `in` to handle and consumes it. */
static inline void poll_server_frames(struct kw_buf *in, int fd, poll_server_handler handle,
                                      void *arg)
{
	for (;;) {
		struct kw_header h;
		struct kw_msg m;
		size_t avail = in->len - in->off;
		if (kw_header_parse(&h, in->data + in->off, avail) < 0 ||
		    avail < KW_HEADER_LEN + (size_t)h.length)
			return;
		if (kw_msg_parse(&m, in->data + in->off + KW_HEADER_LEN, h.length) == 0)
			handle(arg, fd, h.id, &m);
		in->off += KW_HEADER_LEN + (size_t)h.length;
	}
}

static inline void poll_server_init(struct poll_server *ps, int lfd)
{
	memset(ps, 0, sizeof(*ps));
	ps->pf[0].fd = lfd;
	ps->pf[0].events = POLLIN;
	ps->n = 1;
}

/* poll_server_step waits up to timeout_ms, accepts, reads, and hands complete frames to handle. */
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
		poll_server_frames(&ps->in[i], ps->pf[i].fd, handle, arg);
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
