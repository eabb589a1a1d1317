/*
 * keyway-relay - a TCP relay that delays every chunk by a fixed time in each
 * direction, keeping order. It stands in for network latency where the kernel
 * has no netem: benchmarks put it between a client and keywayd.
 *
 * Each accepted connection gets an upstream connection to --to. Per direction
 * a FIFO holds what was read, each chunk stamped with arrival + delay. All
 * chunks of all directions also sit in one timing list; since the delay is the
 * same everywhere and stamps only grow, appending keeps that list sorted, so
 * its head is always the next deadline. One precise loop timer (woken to the
 * nanosecond; an ordinary one wakes on millisecond boundaries, too coarse for
 * a 2.5 ms delay) is armed for that head. At expiry every due chunk is written;
 * what the socket does not take waits for writability.
 *
 * Backpressure: a direction holding more than --max-queue bytes stops reading
 * its source until it drains to half. Half-close: EOF on one side becomes
 * shutdown(SHUT_WR) on the other once the delayed data before it is written.
 * An error on either side resets both. The TCP handshake itself is not
 * delayed; everything after it is.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/list.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "keyway/signals.h"

#define READ_SIZE (64u * 1024u) /* one read(2) */
#define READS_PER_EVENT 4       /* fairness between connections */
#define WRITE_IOV 64            /* chunks per sendmsg */
#define MAX_DELAY_MS 600000u

struct relay;
struct pair;

/* What one read returned, queued until its deadline. */
struct chunk {
	struct chunk *next;   /* direction FIFO */
	struct kw_list tlink; /* in the relay's timing list while not yet due */
	struct dir *dir;
	uint64_t deadline_ns;
	size_t len, off; /* bytes held; bytes already written */
	unsigned char data[];
};

/* One socket of a pair. */
struct side {
	struct kw_io io;
	int fd;
	struct pair *pair;
	struct dir *in;  /* the direction this side feeds (we read it) */
	struct dir *out; /* the direction that writes to this side */
};

/* One direction: bytes read from src, written to dst after the delay. */
struct dir {
	struct side *src, *dst;
	struct chunk *head, *tail;
	size_t queued; /* bytes held, with per-chunk overhead */
	bool eof;      /* src sent FIN (or we stopped reading it for good) */
	bool paused;   /* reading src stopped by backpressure */
	bool blocked;  /* dst refused due bytes: waiting for writability */
	bool done;     /* everything written and dst shut for writing */
};

struct pair {
	struct side cli, srv;
	struct dir up, down; /* cli->srv, srv->cli */
	struct relay *relay;
	struct kw_list link; /* in the relay's pairs */
	bool connecting;     /* upstream connect in progress */
	bool closed;
	unsigned id;
};

struct relay {
	struct kw_loop *loop;
	struct kw_addr to;
	char to_text[300];
	uint64_t delay_ns;
	size_t max_queue;
	unsigned max_conns, nconns, next_id;
	int lfd;
	struct kw_io lio;
	struct kw_timer accept_retry; /* after EMFILE */
	bool accepting;
	struct kw_timer timer; /* precise; armed for the timing list's head */
	struct kw_list timing; /* chunks not yet due, by deadline (struct chunk.tlink) */
	int sfd;               /* signalfd: SIGINT, SIGTERM */
	struct kw_io sio;
	struct kw_list pairs; /* all live pairs (struct pair.link) */
	unsigned char buf[READ_SIZE];
};

static void pair_close(struct pair *p, bool reset, const char *why);
static void dir_flush(struct dir *d, uint64_t now);

/* ---- the timing list and its timer ---- */

static struct chunk *timing_head(const struct relay *r)
{
	return kw_list_entry(kw_list_first(&r->timing), struct chunk, tlink);
}

static void timer_arm(struct relay *r)
{
	struct chunk *head = timing_head(r);
	if (head == NULL) {
		kw_timer_stop(r->loop, &r->timer);
		return;
	}
	if (kw_timer_active(&r->timer) && r->timer.deadline_ns == head->deadline_ns)
		return;
	if (kw_timer_start_at(r->loop, &r->timer, head->deadline_ns) < 0)
		kw_error("timer: out of memory");
}

static void timing_append(struct relay *r, struct chunk *c)
{
	/* Stamps only grow (monotonic clock, one delay), so the tail is the latest. */
	if (!kw_list_empty(&r->timing)) {
		struct chunk *tail = kw_container_of(r->timing.prev, struct chunk, tlink);
		if (c->deadline_ns < tail->deadline_ns)
			c->deadline_ns = tail->deadline_ns;
	}
	kw_list_add_tail(&r->timing, &c->tlink);
}

static void on_timer(struct kw_loop *loop, void *arg)
{
	struct relay *r = arg;
	uint64_t now = kw_now_ns();
	struct chunk *c;

	/* Flush each direction whose head became due. A flush may close a pair
	 * and free its chunks, so restart from the list head each time. */
	while ((c = timing_head(r)) != NULL && c->deadline_ns <= now) {
		struct dir *d = c->dir;
		/* Everything of d up to c is due; the flush writes it or marks d blocked. */
		for (struct chunk *x = d->head; x; x = x->next) {
			kw_list_del(&x->tlink);
			if (x == c)
				break;
		}
		if (!d->blocked)
			dir_flush(d, now);
	}
	timer_arm(r);
}

/* ---- pairs ---- */

static unsigned side_interest(const struct side *s)
{
	const struct pair *p = s->pair;
	unsigned ev = 0;
	if (p->closed)
		return 0;
	if (s == &p->srv && p->connecting)
		return KW_EV_WRITE;
	if (!s->in->eof && !s->in->paused)
		ev |= KW_EV_READ;
	if (s->out->blocked)
		ev |= KW_EV_WRITE;
	return ev;
}

/* side_update registers the interest set; a side with none leaves epoll, so a
 * level-triggered hang-up cannot spin while the other direction drains. */
static int side_update(struct side *s)
{
	struct kw_loop *loop = s->pair->relay->loop;
	unsigned ev = side_interest(s);
	if (ev == 0) {
		kw_io_stop(loop, &s->io);
		return 0;
	}
	if (s->io.fd < 0)
		return kw_io_start(loop, &s->io, s->fd, ev);
	return kw_io_modify(loop, &s->io, ev);
}

static void pair_free(void *arg)
{
	free(arg);
}

static void dir_drop(struct relay *r, struct dir *d)
{
	struct chunk *c = d->head;
	while (c) {
		struct chunk *n = c->next;
		kw_list_del(&c->tlink);
		free(c);
		c = n;
	}
	d->head = d->tail = NULL;
	d->queued = 0;
}

static void side_close(struct relay *r, struct side *s, bool reset)
{
	kw_io_stop(r->loop, &s->io);
	if (s->fd < 0)
		return;
	if (reset) {
		/* Linger 0: the peer sees a reset, as it would from the failed end. */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(s->fd);
	s->fd = -1;
}

static void accept_resume(struct relay *r);

static void pair_close(struct pair *p, bool reset, const char *why)
{
	struct relay *r = p->relay;
	if (p->closed)
		return;
	p->closed = true;
	if (reset)
		kw_info("connection %u: %s; resetting both sides", p->id, why);
	else
		kw_debug("connection %u: %s", p->id, why);
	side_close(r, &p->cli, reset);
	side_close(r, &p->srv, reset);
	dir_drop(r, &p->up);
	dir_drop(r, &p->down);
	kw_list_del(&p->link);
	r->nconns--;
	/* Its watchers may still have events queued in this loop turn. */
	if (kw_loop_defer_free(r->loop, pair_free, p) < 0)
		kw_warn("connection %u: out of memory deferring its free; leaking it", p->id);
	timer_arm(r);
	accept_resume(r);
}

static void pair_fail(struct pair *p, const char *what, int err)
{
	char why[160];
	snprintf(why, sizeof(why), "%s: %s", what, strerror(err));
	pair_close(p, true, why);
}

/* dir_finish shuts dst for writing once src's EOF and the data before it went through. */
static void dir_finish(struct dir *d)
{
	struct pair *p = d->src->pair;
	/* While connecting, shutdown() would fail; the connect completion flushes and finishes. */
	if (d->done || !d->eof || d->head || p->connecting)
		return;
	d->done = true;
	if (shutdown(d->dst->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
		pair_fail(p, "shutdown", errno);
		return;
	}
	if (p->up.done && p->down.done)
		pair_close(p, false, "closed by both ends");
}

/* dir_flush writes every chunk due at `now`; may close the pair. */
static void dir_flush(struct dir *d, uint64_t now)
{
	struct pair *p = d->src->pair;
	struct relay *r = p->relay;

	if (p->connecting)
		return; /* the connect completion flushes */
	d->blocked = false;
	while (d->head && d->head->deadline_ns <= now) {
		struct iovec iov[WRITE_IOV];
		int n = 0;
		for (struct chunk *c = d->head; c && n < WRITE_IOV && c->deadline_ns <= now;
		     c = c->next) {
			iov[n].iov_base = c->data + c->off;
			iov[n].iov_len = c->len - c->off;
			n++;
		}
		struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(d->dst->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				d->blocked = true;
				break;
			}
			pair_fail(p, "write", errno);
			return;
		}
		size_t left = (size_t)w;
		while (left > 0) {
			struct chunk *c = d->head;
			size_t take = c->len - c->off;
			if (take > left) {
				c->off += left;
				break;
			}
			left -= take;
			d->head = c->next;
			if (d->head == NULL)
				d->tail = NULL;
			d->queued -= sizeof(*c) + c->len;
			kw_list_del(&c->tlink);
			free(c);
		}
	}
	if (d->paused && d->queued <= r->max_queue / 2)
		d->paused = false;
	/* Both are no-ops (no syscall) when the interest did not change. */
	int urc;
	if ((urc = side_update(d->dst)) < 0 || (urc = side_update(d->src)) < 0) {
		pair_fail(p, "epoll", -urc);
		return;
	}
	dir_finish(d);
}

static struct chunk *chunk_new(struct dir *d, const void *data, size_t len, uint64_t deadline)
{
	struct chunk *c = malloc(sizeof(*c) + len);
	if (c == NULL)
		return NULL;
	memset(c, 0, sizeof(*c));
	kw_list_init(&c->tlink);
	c->dir = d;
	c->len = len;
	c->deadline_ns = deadline;
	memcpy(c->data, data, len);
	return c;
}

/* dir_read reads what src has, queues it with its deadline; may close the pair. */
static void dir_read(struct dir *d)
{
	struct pair *p = d->src->pair;
	struct relay *r = p->relay;

	bool more = true;
	for (int i = 0; i < READS_PER_EVENT && more && !d->eof && !d->paused; i++) {
		ssize_t n = read(d->src->fd, r->buf, sizeof(r->buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			pair_fail(p, "read", errno);
			return;
		}
		if (n == 0) {
			d->eof = true;
			break;
		}
		uint64_t now = kw_now_ns();
		size_t len = (size_t)n;
		more = len == sizeof(r->buf); /* a short read drained the socket for now */
		/* Without delay and with nothing queued, write straight from the buffer. */
		if (r->delay_ns == 0 && d->head == NULL && !p->connecting) {
			ssize_t w = send(d->dst->fd, r->buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				pair_fail(p, "write", errno);
				return;
			}
			if (w > 0) {
				memmove(r->buf, r->buf + w, len - (size_t)w);
				len -= (size_t)w;
			}
			if (len == 0)
				continue;
		}
		struct chunk *c = chunk_new(d, r->buf, len, now + r->delay_ns);
		if (c == NULL) {
			pair_fail(p, "queue", ENOMEM);
			return;
		}
		if (d->tail)
			d->tail->next = c;
		else
			d->head = c;
		d->tail = c;
		d->queued += sizeof(*c) + len;
		if (d->queued > r->max_queue)
			d->paused = true;
		if (r->delay_ns > 0) {
			timing_append(r, c);
			timer_arm(r);
		} else if (!d->blocked) {
			dir_flush(d, now);
			if (p->closed)
				return;
		}
	}
	int urc = side_update(d->src);
	if (urc < 0) {
		pair_fail(p, "epoll", -urc);
		return;
	}
	dir_finish(d);
}

static void on_connected(struct pair *p)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(p->srv.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		pair_fail(p, "connect to upstream", err);
		return;
	}
	p->connecting = false;
	kw_debug("connection %u: upstream connected", p->id);
	int urc;
	if ((urc = side_update(&p->srv)) < 0 || (urc = side_update(&p->cli)) < 0) {
		pair_fail(p, "epoll", -urc);
		return;
	}
	/* Client bytes read while connecting may already be due. */
	dir_flush(&p->up, kw_now_ns());
}

static void on_side(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct side *s = arg;
	struct pair *p = s->pair;

	if (p->closed)
		return;
	if (s == &p->srv && p->connecting) {
		on_connected(p);
		return;
	}
	if (events & KW_EV_ERROR) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
			pair_fail(p, s == &p->cli ? "client" : "upstream", err);
			return;
		}
	}
	/* A hang-up is reported as readable; it also means the next write fails,
	 * which the flush then sees. */
	if ((events & (KW_EV_WRITE | KW_EV_ERROR)) && s->out->blocked) {
		dir_flush(s->out, kw_now_ns());
		if (p->closed)
			return;
	}
	if ((events & KW_EV_READ) && !s->in->eof && !s->in->paused)
		dir_read(s->in);
}

static void side_init(struct pair *p, struct side *s, int fd, struct dir *in, struct dir *out)
{
	s->pair = p;
	s->fd = fd;
	s->in = in;
	s->out = out;
	kw_io_init(&s->io, on_side, s);
}

static void pair_start(struct relay *r, int cfd)
{
	struct pair *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		kw_warn("out of memory accepting a connection");
		close(cfd);
		return;
	}
	int sfd = kw_connect(&r->to);
	if (sfd < 0) {
		kw_warn("connect to %s: %s", r->to_text, strerror(-sfd));
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(cfd);
		free(p);
		return;
	}
	p->relay = r;
	p->id = ++r->next_id;
	p->connecting = true;
	side_init(p, &p->cli, cfd, &p->up, &p->down);
	side_init(p, &p->srv, sfd, &p->down, &p->up);
	p->up.src = &p->cli;
	p->up.dst = &p->srv;
	p->down.src = &p->srv;
	p->down.dst = &p->cli;
	kw_list_add(&r->pairs, &p->link);
	r->nconns++;
	kw_debug("connection %u: accepted", p->id);
	int urc;
	if ((urc = side_update(&p->cli)) < 0 || (urc = side_update(&p->srv)) < 0)
		pair_fail(p, "epoll", -urc);
}

/* ---- accepting ---- */

static void accept_pause(struct relay *r)
{
	if (r->accepting) {
		kw_io_stop(r->loop, &r->lio);
		r->accepting = false;
	}
}

static void accept_resume(struct relay *r)
{
	if (r->accepting || r->nconns >= r->max_conns || kw_timer_active(&r->accept_retry) ||
	    r->lfd < 0)
		return;
	if (kw_io_start(r->loop, &r->lio, r->lfd, KW_EV_READ) == 0)
		r->accepting = true;
}

static void on_accept_retry(struct kw_loop *loop, void *arg)
{
	accept_resume(arg);
}

static void on_accept(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct relay *r = arg;
	for (int i = 0; i < 64 && r->nconns < r->max_conns; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* Out of descriptors: a level-triggered listener would spin; back off. */
			kw_warn("accept: %s; retrying in 100 ms", strerror(errno));
			accept_pause(r);
			kw_timer_start_ms(loop, &r->accept_retry, 100);
			return;
		}
		kw_set_nodelay(cfd);
		pair_start(r, cfd);
	}
	if (r->nconns >= r->max_conns)
		accept_pause(r);
}

static void on_signal(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct signalfd_siginfo si;
	if (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		kw_info("signal %u: exiting", si.ssi_signo);
	kw_loop_stop(loop);
}

/* ---- options ---- */

/* parse_delay accepts milliseconds with up to six decimals ("2.5", "0", "200"). */
static int parse_delay(const char *s, uint64_t *out_ns)
{
	uint64_t whole = 0, frac = 0, scale = 1000000;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		whole = whole * 10 + (uint64_t)(*p - '0');
		if (whole > MAX_DELAY_MS)
			return -EINVAL;
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (scale == 1)
				return -EINVAL;
			scale /= 10;
			frac += (uint64_t)(*p - '0') * scale;
		}
	}
	if (*p != '\0')
		return -EINVAL;
	*out_ns = whole * 1000000u + frac;
	return 0;
}

static void relay_cleanup(struct relay *r)
{
	while (!kw_list_empty(&r->pairs))
		pair_close(kw_list_entry(kw_list_first(&r->pairs), struct pair, link), false,
		           "relay exiting");
	kw_timer_stop(r->loop, &r->timer);
	kw_timer_stop(r->loop, &r->accept_retry);
	if (r->lfd >= 0) {
		kw_io_stop(r->loop, &r->lio);
		close(r->lfd);
	}
	if (r->sfd >= 0) {
		kw_io_stop(r->loop, &r->sio);
		close(r->sfd);
	}
}

static const char usage[] =
    "usage: keyway-relay --listen ADDR:PORT --to ADDR:PORT|unix:PATH --delay-ms D [options]\n"
    "\n"
    "Relays TCP connections from --listen to --to, delaying every chunk by D\n"
    "milliseconds in each direction (fractions allowed: 2.5), order kept.";

int main(int argc, char **argv)
{
	char *listen_s = NULL, *to_s = NULL, *delay_s = "0", *level_s = "info";
	unsigned max_queue_kib = 4096, max_conns = 4096;
	struct kw_option opts[] = {
	    KW_OPT_STR("listen", &listen_s, "ADDR:PORT",
	               "address to accept on (port 0 picks a free one; the log names it)",
	               .required = true),
	    KW_OPT_STR("to", &to_s, "ADDR:PORT|unix:PATH", "address each connection is relayed to",
	               .required = true),
	    KW_OPT_STR("delay-ms", &delay_s, "MS",
	               "delay each way in milliseconds, e.g. 2.5 (default 0)"),
	    KW_OPT_NUM("max-queue-kib", &max_queue_kib, "KIB",
	               "stop reading a side while its direction holds more (default 4096)", 64,
	               1024 * 1024),
	    KW_OPT_NUM("max-connections", &max_conns, "N",
	               "connections relayed at once (default 4096)", 1, 1000000),
	    KW_OPT_STR("log-level", &level_s, "LEVEL", "debug|info|warn|error (default info)"),
	    KW_OPT_END,
	};
	static struct relay relay; /* holds the 64 KiB read buffer: not on the stack */
	struct relay *r = &relay;
	char err[512], addr_err[400];
	int rc = 2, level;

	kw_log_init("keyway-relay", KW_LOG_INFO);
	int prc = kw_config_parse(opts, argc, argv, usage, NULL, NULL, err, sizeof(err));
	if (prc == 1) {
		kw_config_free(opts);
		return 0;
	}
	if (prc < 0) {
		fprintf(stderr, "keyway-relay: %s\n", err);
		goto out_config;
	}
	struct kw_addr laddr;
	if ((level = kw_log_parse_level(level_s)) < 0)
		kw_config_errorf(opts, "log-level", err, sizeof(err),
		                 "'%s' is not valid; expected debug|info|warn|error", level_s);
	else if (parse_delay(delay_s, &r->delay_ns) < 0)
		kw_config_errorf(opts, "delay-ms", err, sizeof(err),
		                 "'%s' is not valid; expected milliseconds from 0 to %u, e.g. 2.5",
		                 delay_s, MAX_DELAY_MS);
	else if (kw_addr_parse(&laddr, listen_s, addr_err, sizeof(addr_err)) < 0)
		kw_config_errorf(opts, "listen", err, sizeof(err), "%s", addr_err);
	else if (laddr.is_unix)
		kw_config_errorf(opts, "listen", err, sizeof(err),
		                 "'%s': only TCP addresses can be listened on", listen_s);
	else if (kw_addr_parse(&r->to, to_s, addr_err, sizeof(addr_err)) < 0)
		kw_config_errorf(opts, "to", err, sizeof(err), "%s", addr_err);
	else
		err[0] = '\0';
	if (err[0] != '\0') {
		fprintf(stderr, "keyway-relay: %s\n", err);
		goto out_config;
	}
	kw_log_set_level((enum kw_log_level)level);
	kw_addr_format(&r->to, r->to_text, sizeof(r->to_text));
	r->max_queue = (size_t)max_queue_kib * 1024u;
	r->max_conns = max_conns;
	r->lfd = r->sfd = -1;
	kw_list_init(&r->pairs);
	kw_list_init(&r->timing);
	kw_raise_nofile(NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Wake-ups within a microsecond of a deadline, not the default 50 us. */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

	rc = 1;
	if ((prc = kw_loop_new(&r->loop)) < 0) {
		kw_error("event loop: %s", kw_strerror(prc));
		goto out_config;
	}
	static const int stop_signals[] = {SIGINT, SIGTERM};
	r->sfd = kw_signalfd_open(stop_signals, 2);
	if (r->sfd < 0) {
		kw_error("signalfd: %s", strerror(-r->sfd));
		goto out;
	}
	kw_io_init(&r->sio, on_signal, r);
	kw_timer_init_precise(&r->timer, on_timer, r);
	kw_io_init(&r->lio, on_accept, r);
	kw_timer_init(&r->accept_retry, on_accept_retry, r);
	if ((prc = kw_io_start(r->loop, &r->sio, r->sfd, KW_EV_READ)) < 0) {
		kw_error("epoll: %s", strerror(-prc));
		goto out;
	}
	r->lfd = kw_listen_tcp_pin(&laddr, false, 1024);
	if (r->lfd < 0) {
		kw_error("listen on %s: %s", listen_s, strerror(-r->lfd));
		r->lfd = -1;
		goto out;
	}
	accept_resume(r);
	if (!r->accepting) {
		kw_error("epoll: cannot watch the listening socket");
		goto out;
	}
	char ltext[300];
	kw_addr_format(&laddr, ltext, sizeof(ltext));
	kw_info("listening on %s, relaying to %s, delay %s ms each way", ltext, r->to_text,
	        delay_s);

	if ((prc = kw_loop_run(r->loop)) < 0) {
		kw_error("event loop: %s", kw_strerror(prc));
		goto out;
	}
	rc = 0;
out:
	relay_cleanup(r);
	kw_loop_free(r->loop);
out_config:
	kw_config_free(opts);
	return rc;
}
