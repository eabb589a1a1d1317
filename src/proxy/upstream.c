/*
 * upstream.c - --upstream: after the handshake, a plaintext TCP relay
 * between the client's stream and a connection to the upstream.
 *
 * The upstream connect is non-blocking, in the worker's loop, bounded by
 * --connect-timeout; the client may send meanwhile (up to one buffer). Each
 * direction has one buffer of RELAY_BUF bytes: a side is read only
 * while its buffer has room, so a slow reader on one side stops reading
 * from the other and the proxy never holds more than 2 * RELAY_BUF per
 * connection (plus OpenSSL's record buffers). A buffer exists only while
 * it holds bytes: it is taken when a read is about to fill it and given
 * back once it is empty, so an idle relayed connection holds none.
 *
 * Every event on either socket runs pump(), which runs the steps (client
 * to buffer, buffer to upstream, upstream to buffer, buffer to client, end
 * of the client's stream) until none makes progress, then sets both
 * sockets' interest from the state. Looping until no progress also covers
 * records the transport read ahead and holds: they are read whenever the
 * client buffer has room, without waiting for the socket to become
 * readable again. A socket with
 * nothing to wait for is taken out of epoll entirely (a hung-up socket
 * would otherwise be reported again and again).
 *
 * Half-close: the client's close_notify (or a bare EOF: truncation is not
 * policed here, kpx_conn_bare_eof_ends) becomes shutdown(SHUT_WR) to
 * the upstream once its buffer is flushed; the upstream's EOF becomes a
 * close_notify to the client once everything before it was written. The
 * connection is done when both directions have ended. An upstream error
 * (reset) closes the client without close_notify after what was already
 * received from the upstream is written, so the client can tell the
 * stream was cut.
 *
 * With --quic-listen the relay is HTTP/1.1-aware on the response path: it
 * adds Alt-Svc to each final response head (see struct alt); u2c's bytes
 * past rel are not yet scanned and wait. The buffer has ALT_ROOM bytes past
 * RELAY_BUF for the insertions; one that does not fit waits until the client
 * took the bytes before it. Without --quic-listen nothing is parsed.
 *
 * The client side is a byte stream (kpx_conn_recv/send/shutdown): the
 * same relay serves any transport that offers one. Over TLS,
 * SSL_MODE_ASYNC was cleared when the handshake finished, so the stream
 * never pauses.
 */
#include "upstream.h"

#include "keyway/config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "h1scan.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "proxyv2.h"

#define RELAY_BUF 32768    /* per direction */
#define COMPACT_BELOW 4096 /* move unread bytes to the front when less room is left at the end */
#define ALT_ROOM 64   /* room past RELAY_BUF for inserted Alt-Svc lines (opt->alt_svc's size) */
#define KINDS_MAX 256 /* requests whose responses have not begun, at most */

/* One direction's buffer: bytes [off, len) are still to be written. */
struct dir {
	uint8_t *b; /* RELAY_BUF + ALT_ROOM bytes while it holds data, else NULL */
	size_t off, len;
	size_t rel; /* with Alt-Svc, u2c's bytes before rel were scanned and may be written */
};

/*
 * With --quic-listen the relay follows HTTP/1.1 framing both ways (h1scan.h)
 * to add Alt-Svc to each final response head: the request scanner notes each
 * request's kind (HEAD, CONNECT: they change the response's framing) in a
 * FIFO the response scanner takes from.
 */
struct alt {
	const char *line; /* opt->alt_svc */
	size_t line_len;
	struct kpx_h1 req, resp;
	uint8_t kinds[KINDS_MAX]; /* enum kpx_h1_kind, oldest at first */
	unsigned first, count;
	bool insert; /* insert line at u2c.rel once there is room */
};

struct kpx_upstream {
	int fd;
	struct kw_io io;
	bool connecting;
	bool client_eof;   /* the client ended its direction */
	bool upstream_eof; /* the upstream ended its direction (or failed: upstream_err) */
	bool upstream_err;
	bool up_shut;      /* shutdown(SHUT_WR) sent to the upstream */
	bool client_shut;  /* close_notify sent (or being sent: shut_pending) */
	bool shut_pending; /* the stream's shutdown wants to write */
	bool read_wants_write, write_wants_read;
	size_t hdr_left;  /* PROXY v2 header bytes at the head of c2u, not counted as payload */
	uint64_t last_ns; /* last time a byte moved (idle timeout) */
	uint64_t to_up, to_client; /* payload moved in this pump, counted when it ends */
	struct dir c2u, u2c;
	struct alt *alt; /* NULL: the byte-exact relay */
};

/* take_buf makes sure d's buffer exists before a read into it; false when out of memory. */
static bool take_buf(struct dir *d)
{
	if (d->b == NULL)
		d->b = malloc(RELAY_BUF + ALT_ROOM);
	return d->b != NULL;
}

/* give_back frees an empty buffer (a pending write retry never leaves it empty). */
static void give_back(struct dir *d)
{
	if (d->b != NULL && d->off == d->len) {
		free(d->b);
		d->b = NULL;
		d->off = d->len = d->rel = 0;
	}
}

/* sendable: where u2c's bytes that may go to the client end. */
static size_t sendable(const struct kpx_upstream *u)
{
	return u->alt != NULL ? u->u2c.rel : u->u2c.len;
}

static void make_room(struct dir *d)
{
	if (d->off == d->len) {
		d->off = d->len = d->rel = 0;
	} else if (d->off > 0 && d->len > RELAY_BUF - COMPACT_BELOW) {
		memmove(d->b, d->b + d->off, d->len - d->off);
		d->len -= d->off;
		d->rel = d->rel > d->off ? d->rel - d->off : 0;
		d->off = 0;
	}
}

static void upstream_free_now(void *p)
{
	struct kpx_upstream *u = p;
	free(u->c2u.b);
	free(u->u2c.b);
	free(u->alt);
	free(u);
}

/* watch sets io's interest; none at all takes the fd out of epoll. */
static int watch(struct kw_loop *loop, struct kw_io *io, int fd, unsigned events)
{
	if (events == 0) {
		kw_io_stop(loop, io);
		return 0;
	}
	if (io->fd < 0)
		return kw_io_start(loop, io, fd, events);
	if (io->events != events)
		return kw_io_modify(loop, io, events);
	return 0;
}

/*
 * restart_idle_timer arms the --idle-timeout from the last traffic. Should
 * the loop refuse, c is closed rather than relayed without a bound (false:
 * c is gone).
 */
static bool restart_idle_timer(struct kpx_conn *c, struct kpx_upstream *u)
{
	unsigned s = c->w->opt->idle_timeout_s;
	if (s == 0) {
		kw_timer_stop(c->w->loop, &c->timer);
		return true;
	}
	uint64_t until = u->last_ns + (uint64_t)s * 1000000000ull;
	if (kw_timer_start_at(c->w->loop, &c->timer, until) == 0)
		return true;
	kpx_conn_close_why(c, KPX_R_INTERNAL);
	return false;
}

static void update_interest(struct kpx_conn *c, struct kpx_upstream *u)
{
	struct kpx_worker *w = c->w;
	unsigned ce = 0, ue = 0;

	if ((!u->client_eof && u->c2u.len - u->c2u.off < RELAY_BUF) || u->write_wants_read)
		ce |= KW_EV_READ;
	if (u->u2c.off < sendable(u) || u->read_wants_write || u->shut_pending)
		ce |= KW_EV_WRITE;
	if (u->connecting) {
		ue = KW_EV_WRITE;
	} else if (!u->upstream_err) {
		if (!u->upstream_eof && u->u2c.len - u->u2c.off < RELAY_BUF)
			ue |= KW_EV_READ;
		if (u->c2u.off < u->c2u.len)
			ue |= KW_EV_WRITE;
	}
	if (watch(w->loop, &c->io, c->fd, ce) < 0 || watch(w->loop, &u->io, u->fd, ue) < 0)
		kpx_conn_close_why(c, KPX_R_INTERNAL);
}

/*
 * The steps of pump. Each returns KPX_STEP_DONE when it moved bytes or
 * ended a direction (progress: run the steps again), KPX_STEP_BLOCKED when
 * it could do nothing now, KPX_STEP_CLOSED when it closed the connection.
 */

/* give_up_scanning: framing can no longer be followed; the rest is relayed byte-exact. */
static void give_up_scanning(struct alt *a)
{
	kpx_h1_set_tunnel(&a->req);
	kpx_h1_set_tunnel(&a->resp);
	a->count = 0;
}

/*
 * note_requests scans n bytes the client sent for request heads and queues
 * each one's kind. A request the scanner cannot follow (or too many
 * outstanding) ends the scanning, not the connection: the upstream judges
 * requests, and a relay without Alt-Svc is still correct.
 */
static void note_requests(struct alt *a, const uint8_t *p, size_t n)
{
	while (a != NULL && n > 0 && !kpx_h1_tunnel(&a->req)) {
		size_t used;
		int rc = kpx_h1_feed(&a->req, p, n, &used);
		if (rc == KPX_H1_ERROR || (rc == KPX_H1_HEAD && a->count == KINDS_MAX)) {
			give_up_scanning(a);
			return;
		}
		if (rc == KPX_H1_MORE)
			return;
		a->kinds[(a->first + a->count++) % KINDS_MAX] = (uint8_t)a->req.kind;
		p += used;
		n -= used;
	}
}

/* next_kind takes the kind of the oldest request not answered yet. */
static enum kpx_h1_kind next_kind(struct alt *a)
{
	if (a->count == 0)
		return KPX_H1_REQ_OTHER; /* an answer to nothing: the upstream's business */
	enum kpx_h1_kind k = a->kinds[a->first];
	a->first = (a->first + 1) % KINDS_MAX;
	a->count--;
	return k;
}

/* insert_alt puts the Alt-Svc line at u2c.rel: false while there is no room yet. */
static bool insert_alt(struct kpx_upstream *u)
{
	struct alt *a = u->alt;
	struct dir *d = &u->u2c;
	if (d->len + a->line_len > RELAY_BUF + ALT_ROOM)
		make_room(d);
	if (d->len + a->line_len > RELAY_BUF + ALT_ROOM)
		return false; /* once the client took what comes before it */
	memmove(d->b + d->rel + a->line_len, d->b + d->rel, d->len - d->rel);
	memcpy(d->b + d->rel, a->line, a->line_len);
	d->len += a->line_len;
	d->rel += a->line_len;
	a->insert = false;
	return true;
}

/*
 * scan_responses follows the upstream's bytes in u2c past rel, adding
 * Alt-Svc before the blank line of each final (>= 200) response head that
 * has none; 1xx interim heads are left alone. A response that is not
 * HTTP/1.x ends the upstream side (what came before it still reaches the
 * client, nothing after).
 */
static enum kpx_step scan_responses(struct kpx_conn *c, struct kpx_upstream *u)
{
	struct alt *a = u->alt;
	struct dir *d = &u->u2c;
	enum kpx_step st = KPX_STEP_BLOCKED;

	while (a != NULL && (d->rel < d->len || a->insert)) {
		if (a->insert) {
			if (!insert_alt(u))
				break;
			st = KPX_STEP_DONE;
			continue;
		}
		size_t used;
		int rc = kpx_h1_feed(&a->resp, d->b + d->rel, d->len - d->rel, &used);
		d->rel += used;
		st = KPX_STEP_DONE;
		if (rc == KPX_H1_ERROR) {
			kw_debug("worker %u: upstream response is not HTTP/1.x framing; closing",
			         c->w->id);
			d->len = d->rel;
			u->upstream_err = u->upstream_eof = true;
			break;
		}
		if (rc == KPX_H1_HEAD && a->resp.status >= 200) {
			a->resp.answers = next_kind(a);
			a->insert = !a->resp.has_alt_svc;
		}
		if (rc == KPX_H1_HEAD &&
		    (a->resp.status == 101 || (a->resp.answers == KPX_H1_REQ_CONNECT &&
		                               a->resp.status >= 200 && a->resp.status < 300)))
			kpx_h1_set_tunnel(&a->req); /* the client's bytes are no longer requests */
		else if (rc == KPX_H1_HEAD && a->resp.answers == KPX_H1_REQ_CONNECT)
			give_up_scanning(
			    a); /* a refused CONNECT: what followed it was not scanned */
	}
	return st;
}

/* client_to_buf: the client's stream into c2u. */
static enum kpx_step client_to_buf(struct kpx_conn *c, struct kpx_upstream *u)
{
	make_room(&u->c2u);
	if (u->client_eof || u->c2u.len >= RELAY_BUF)
		return KPX_STEP_BLOCKED;
	if (!take_buf(&u->c2u)) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return KPX_STEP_CLOSED;
	}
	ssize_t n = kpx_conn_recv(c, u->c2u.b + u->c2u.len, RELAY_BUF - u->c2u.len);
	u->read_wants_write = n == KPX_XFER_WANT_WRITE;
	if (n > 0) {
		note_requests(u->alt, u->c2u.b + u->c2u.len, (size_t)n);
		u->c2u.len += (size_t)n;
		return KPX_STEP_DONE;
	}
	if (n == KPX_XFER_EOF) {
		u->client_eof = true;
		return KPX_STEP_DONE;
	}
	return n == KPX_XFER_CLOSED ? KPX_STEP_CLOSED : KPX_STEP_BLOCKED;
}

/* buf_to_upstream: c2u to the upstream, then its SHUT_WR once the client's stream ended. */
static enum kpx_step buf_to_upstream(struct kpx_conn *c, struct kpx_upstream *u)
{
	enum kpx_step st = KPX_STEP_BLOCKED;
	if (!u->connecting && !u->upstream_err && u->c2u.off < u->c2u.len) {
		ssize_t n =
		    send(u->fd, u->c2u.b + u->c2u.off, u->c2u.len - u->c2u.off, MSG_NOSIGNAL);
		if (n > 0) {
			size_t hdr = (size_t)n < u->hdr_left ? (size_t)n : u->hdr_left;
			u->hdr_left -= hdr;
			u->to_up += (size_t)n - hdr;
			c->tx_upstream += (size_t)n - hdr;
			u->c2u.off += (size_t)n;
			st = KPX_STEP_DONE;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			u->upstream_err = u->upstream_eof = true;
			st = KPX_STEP_DONE;
		}
	}
	if (u->upstream_err)
		u->c2u.off = u->c2u.len = 0; /* nowhere to go */
	if (u->client_eof && !u->connecting && !u->upstream_err && !u->up_shut &&
	    u->c2u.off == u->c2u.len) {
		shutdown(u->fd, SHUT_WR);
		u->up_shut = true;
	}
	return st;
}

/* upstream_to_buf: the upstream into u2c. */
static enum kpx_step upstream_to_buf(struct kpx_conn *c, struct kpx_upstream *u)
{
	make_room(&u->u2c);
	if (u->connecting || u->upstream_eof || u->u2c.len >= RELAY_BUF)
		return KPX_STEP_BLOCKED;
	if (!take_buf(&u->u2c)) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return KPX_STEP_CLOSED;
	}
	ssize_t n = recv(u->fd, u->u2c.b + u->u2c.len, RELAY_BUF - u->u2c.len, 0);
	if (n > 0) {
		u->u2c.len += (size_t)n;
		c->rx_upstream += (uint64_t)n;
	} else if (n == 0) {
		u->upstream_eof = true;
	} else if (errno != EAGAIN && errno != EINTR) {
		u->upstream_err = u->upstream_eof = true;
	} else {
		return KPX_STEP_BLOCKED;
	}
	return KPX_STEP_DONE;
}

/* buf_to_client: u2c to the client's stream. */
static enum kpx_step buf_to_client(struct kpx_conn *c, struct kpx_upstream *u)
{
	size_t end = sendable(u);
	if (u->u2c.off >= end)
		return KPX_STEP_BLOCKED;
	ssize_t n = kpx_conn_send(c, u->u2c.b + u->u2c.off, end - u->u2c.off);
	u->write_wants_read = n == KPX_XFER_WANT_READ;
	if (n > 0) {
		u->u2c.off += (size_t)n;
		u->to_client += (uint64_t)n;
		return KPX_STEP_DONE;
	}
	return n == KPX_XFER_CLOSED ? KPX_STEP_CLOSED : KPX_STEP_BLOCKED;
}

/* end_client: the upstream's EOF becomes the end of the client's stream, after everything
 * before it. */
static enum kpx_step end_client(struct kpx_conn *c, struct kpx_upstream *u)
{
	if (!u->upstream_eof || u->upstream_err || u->u2c.off != u->u2c.len ||
	    (u->client_shut && !u->shut_pending))
		return KPX_STEP_BLOCKED;
	int rc = kpx_conn_shutdown(c);
	u->client_shut = true;
	u->shut_pending = rc == KPX_XFER_WANT_WRITE;
	if (rc == KPX_XFER_FAILED && !u->client_eof) {
		kpx_conn_close_why(c, KPX_R_CLIENT_CLOSE);
		return KPX_STEP_CLOSED;
	}
	return KPX_STEP_BLOCKED;
}

static enum kpx_step (*const steps[])(struct kpx_conn *, struct kpx_upstream *) = {
    client_to_buf, buf_to_upstream, upstream_to_buf, scan_responses, buf_to_client, end_client,
};

/* move runs the steps until none makes progress: DONE if any did, else BLOCKED; CLOSED. */
static enum kpx_step move(struct kpx_conn *c, struct kpx_upstream *u)
{
	bool progress, moved = false;
	do {
		progress = false;
		for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
			enum kpx_step st = steps[i](c, u);
			if (st == KPX_STEP_CLOSED)
				return KPX_STEP_CLOSED;
			progress |= st == KPX_STEP_DONE;
		}
		moved |= progress;
	} while (progress);
	return moved ? KPX_STEP_DONE : KPX_STEP_BLOCKED;
}

/* settle closes a relay whose directions have ended, or frees idle buffers, restarts the
 * idle timer after traffic and sets both sockets' interest. */
static void settle(struct kpx_conn *c, struct kpx_upstream *u, bool moved)
{
	if (u->upstream_err && u->u2c.off == u->u2c.len) {
		kpx_conn_close_why(c, KPX_R_UPSTREAM_CLOSE);
		return;
	}
	if (u->client_eof && u->up_shut && u->upstream_eof && u->client_shut && !u->shut_pending) {
		kpx_conn_close_why(c, KPX_R_DONE);
		return;
	}
	give_back(&u->c2u);
	give_back(&u->u2c);
	if (moved) {
		u->last_ns = kw_loop_now_ns(c->w->loop);
		if (!u->connecting && !kw_timer_active(&c->timer) && !restart_idle_timer(c, u))
			return;
	}
	update_interest(c, u);
}

/* pump moves bytes until nothing moves; it may close c. */
static void pump(struct kpx_conn *c, struct kpx_upstream *u)
{
	struct kpx_worker *w = c->w;
	enum kpx_step st = move(c, u);

	if (st != KPX_STEP_CLOSED)
		settle(c, u, st == KPX_STEP_DONE);
	kpx_add(&w->m.relay_bytes[0], u->to_up);
	kpx_add(&w->m.relay_bytes[1], u->to_client);
	u->to_up = u->to_client = 0;
}

static int proxy_header(struct kpx_conn *c, struct kpx_upstream *u)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	struct kpx_conn_info ci;

	if (getsockname(c->fd, (struct sockaddr *)&local, &len) < 0)
		local.ss_family = AF_UNSPEC;
	kpx_conn_info(c, &ci);
	struct kpx_pp2_info in = {
	    .src = (const struct sockaddr *)&c->peer,
	    .dst = (const struct sockaddr *)&local,
	    .tls_version = ci.version,
	    .cipher = ci.cipher,
	    .sni = ci.sni,
	    .alpn = ci.alpn,
	    .alpn_len = ci.alpn_len,
	};
	if (!take_buf(&u->c2u))
		return -ENOMEM;
	int n = kpx_pp2_build(u->c2u.b, RELAY_BUF, &in);
	if (n == -EINVAL) {
		in.sni = NULL; /* a name longer than a TLV carries: send none */
		n = kpx_pp2_build(u->c2u.b, RELAY_BUF, &in);
	}
	if (n < 0)
		return n;
	u->c2u.len = u->hdr_left = (size_t)n;
	return 0;
}

/*
 * A dead upstream is the operator's problem, so it is a warning; but every
 * client connection meets it, so at most one line per 10 s (all workers
 * together: there is one upstream), counting the ones held back.
 */
static struct kw_log_limit dead_limit = KW_LOG_LIMIT_INIT(10ull * 1000000000ull);

static void log_dead_upstream(struct kpx_conn *c, const char *what)
{
	unsigned long held;
	if (kw_log_limit_pass(&dead_limit, kw_loop_now_ns(c->w->loop), &held))
		kw_warn("upstream %s: %s (%lu more failures not logged in the last 10 s)",
		        c->w->opt->upstream, what, held);
}

static void connect_failed(struct kpx_conn *c, enum kpx_reason why, int err)
{
	kpx_add(&c->w->m.upstream_connects[why == KPX_R_UPSTREAM_TIMEOUT ? 2 : 1], 1);
	const char *what = why == KPX_R_UPSTREAM_TIMEOUT ? "connect timed out" : strerror(err);
	kw_debug("worker %u: upstream %s: %s", c->w->id, c->w->opt->upstream, what);
	if (why != KPX_R_INTERNAL)
		log_dead_upstream(c, what);
	kpx_conn_close_why(c, why);
}

static void upstream_io(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_conn *c = arg;
	struct kpx_upstream *u = c->mode_state;

	if (c->state != KPX_CS_MODE || u == NULL)
		return;
	if (u->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err == 0 && !(events & KW_EV_WRITE))
			return;
		if (err != 0) {
			connect_failed(c, KPX_R_UPSTREAM_CONNECT_FAILED, err);
			return;
		}
		u->connecting = false;
		kpx_add(&c->w->m.upstream_connects[0], 1);
		u->last_ns = kw_loop_now_ns(loop);
		if (!restart_idle_timer(c, u))
			return;
	}
	pump(c, u);
}

/* start begins connecting to the upstream after the handshake. */
static void start(struct kpx_conn *c)
{
	struct kpx_worker *w = c->w;
	const struct kpx_options *o = w->opt;
	struct kpx_upstream *u = calloc(1, sizeof(*u));

	if (u == NULL) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return;
	}
	u->fd = -1;
	kw_io_init(&u->io, upstream_io, c);
	u->last_ns = kw_loop_now_ns(w->loop);
	c->mode_state = u;
	kpx_add(&w->m.relays, 1);
	if (o->alt_svc[0] != 0) {
		/* --quic-listen: tell browsers of HTTP/3 in each response, as --respond does. */
		u->alt = calloc(1, sizeof(*u->alt));
		if (u->alt == NULL) {
			kpx_conn_close_why(c, KPX_R_INTERNAL);
			return;
		}
		u->alt->line = o->alt_svc;
		u->alt->line_len = strlen(o->alt_svc);
		kpx_h1_init(&u->alt->req, false);
		kpx_h1_init(&u->alt->resp, true);
	}
	kpx_conn_bare_eof_ends(c);
	if (o->send_proxy_v2 && proxy_header(c, u) < 0) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return;
	}
	int fd = kw_connect(&o->upstream_addr);
	if (fd < 0) {
		connect_failed(c,
		               fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM
		                   ? KPX_R_INTERNAL
		                   : KPX_R_UPSTREAM_CONNECT_FAILED,
		               -fd);
		return;
	}
	u->fd = fd;
	u->connecting = true;
	/* Without its connect timeout an upstream that never answers would hold c for ever. */
	if (kw_timer_start_ms(w->loop, &c->timer, (uint64_t)o->connect_timeout_s * 1000u) < 0) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return;
	}
	/* The client's first bytes often came with its Finished: take them now. */
	pump(c, u);
}

/* client_io handles readiness of the client's socket while relaying. */
static void client_io(struct kpx_conn *c, unsigned events)
{
	if (c->mode_state != NULL)
		pump(c, c->mode_state);
}

/* timeout: the connection's timer fired while connecting or relaying. */
static void timeout(struct kpx_conn *c)
{
	struct kpx_upstream *u = c->mode_state;
	if (u == NULL) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return;
	}
	if (u->connecting) {
		connect_failed(c, KPX_R_UPSTREAM_TIMEOUT, ETIMEDOUT);
		return;
	}
	unsigned s = c->w->opt->idle_timeout_s;
	uint64_t idle_until = u->last_ns + (uint64_t)s * 1000000000ull;
	if (s != 0 && kw_loop_now_ns(c->w->loop) < idle_until) {
		(void)restart_idle_timer(c, u); /* traffic since the timer was set */
		return;
	}
	kpx_conn_close_why(c, KPX_R_IDLE_TIMEOUT);
}

/* upstream_free closes the upstream side (kpx_conn_close calls it). */
static void upstream_free(struct kpx_conn *c)
{
	struct kpx_upstream *u = c->mode_state;
	if (u == NULL)
		return;
	kw_io_stop(c->w->loop, &u->io);
	if (u->fd >= 0)
		close(u->fd);
	kpx_add(&c->w->m.relays, (uint64_t)-1);
	c->mode_state = NULL;
	/* The upstream watcher may have an event queued this turn: free after it. */
	if (kw_loop_defer_free(c->w->loop, upstream_free_now, u) < 0)
		kw_warn("worker %u: out of memory; leaking a relay buffer", c->w->id);
}

const struct kpx_mode_ops kpx_upstream_ops = {
    .start = start,
    .io = client_io,
    .timeout = timeout,
    .free = upstream_free,
};

int kpx_upstream_check(struct kpx_options *o, const struct kw_option *opts, char *err,
                       size_t errlen)
{
	if (o->upstream != NULL) {
		char why[512];
		if (kw_addr_parse(&o->upstream_addr, o->upstream, why, sizeof(why)) < 0)
			return kw_config_errorf(opts, "upstream", err, errlen,
			                        "%s; fix: give HOST:PORT", why);
	}
	if (o->send_proxy_v2 && o->upstream == NULL) {
		snprintf(err, errlen,
		         "--send-proxy-v2 needs --upstream; fix: add --upstream "
		         "HOST:PORT or drop --send-proxy-v2");
		return -KW_ECONFIG;
	}
	return 0;
}
