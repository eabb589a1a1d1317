/*
 * relay.c - --upstream: after the handshake, a plaintext TCP relay between
 * the client's TLS connection and a connection to the upstream.
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
 * Every event on either socket runs pump(), which moves bytes in all four
 * steps until none makes progress, then sets both sockets' interest from
 * the state. Looping until no progress also covers records OpenSSL read
 * ahead and holds: they are read whenever the client buffer has room,
 * without waiting for the socket to become readable again. A socket with
 * nothing to wait for is taken out of epoll entirely (a hung-up socket
 * would otherwise be reported again and again).
 *
 * Half-close: the client's close_notify (or a bare EOF: truncation is not
 * policed here, SSL_OP_IGNORE_UNEXPECTED_EOF) becomes shutdown(SHUT_WR) to
 * the upstream once its buffer is flushed; the upstream's EOF becomes a
 * close_notify to the client once everything before it was written. The
 * connection is done when both directions have ended. An upstream error
 * (reset) closes the client without close_notify after what was already
 * received from the upstream is written, so the client can tell the
 * stream was cut.
 *
 * SSL_MODE_ASYNC was cleared when the handshake finished: SSL_read and
 * SSL_write here never pause.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "keyway/log.h"
#include "proxy.h"
#include "proxyv2.h"

#define RELAY_BUF 32768    /* per direction */
#define COMPACT_BELOW 4096 /* move unread bytes to the front when less room is left at the end */

struct kpx_relay {
	int fd;
	struct kw_io io;
	bool connecting;
	bool client_eof;   /* the client ended its direction */
	bool upstream_eof; /* the upstream ended its direction (or failed: upstream_err) */
	bool upstream_err;
	bool up_shut;      /* shutdown(SHUT_WR) sent to the upstream */
	bool client_shut;  /* close_notify sent (or being sent: shut_pending) */
	bool shut_pending; /* SSL_shutdown wants to write */
	bool read_wants_write, write_wants_read;
	size_t hdr_left;  /* PROXY v2 header bytes at the head of c2u, not counted as payload */
	uint64_t last_ns; /* last time a byte moved (idle timeout) */
	size_t c2u_off, c2u_len, u2c_off, u2c_len;
	uint8_t *c2u, *u2c; /* RELAY_BUF bytes each while they hold data, else NULL */
};

/* take_buf makes sure *b exists before a read into it; false when out of memory. */
static bool take_buf(uint8_t **b)
{
	if (*b == NULL)
		*b = malloc(RELAY_BUF);
	return *b != NULL;
}

/* give_back frees an empty buffer (a pending SSL_write retry never leaves it empty). */
static void give_back(uint8_t **b, size_t *off, size_t *len)
{
	if (*b != NULL && *off == *len) {
		free(*b);
		*b = NULL;
		*off = *len = 0;
	}
}

static void relay_free(void *p)
{
	struct kpx_relay *r = p;
	free(r->c2u);
	free(r->u2c);
	free(r);
}

static void upstream_io(struct kw_loop *loop, int fd, unsigned events, void *arg);

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

static void make_room(uint8_t *b, size_t *off, size_t *len)
{
	if (*off == *len) {
		*off = *len = 0;
	} else if (*off > 0 && RELAY_BUF - *len < COMPACT_BELOW) {
		memmove(b, b + *off, *len - *off);
		*len -= *off;
		*off = 0;
	}
}

static void restart_idle_timer(struct kpx_conn *c)
{
	unsigned s = c->w->opt->idle_timeout_s;
	if (s == 0)
		kw_timer_stop(c->w->loop, &c->timer);
	else
		kw_timer_start_at(c->w->loop, &c->timer,
		                  c->relay->last_ns + (uint64_t)s * 1000000000ull);
}

static void update_interest(struct kpx_conn *c)
{
	struct kpx_relay *r = c->relay;
	struct kpx_worker *w = c->w;
	unsigned ce = 0, ue = 0;

	if ((!r->client_eof && r->c2u_len - r->c2u_off < RELAY_BUF) || r->write_wants_read)
		ce |= KW_EV_READ;
	if (r->u2c_off < r->u2c_len || r->read_wants_write || r->shut_pending)
		ce |= KW_EV_WRITE;
	if (r->connecting) {
		ue = KW_EV_WRITE;
	} else if (!r->upstream_err) {
		if (!r->upstream_eof && r->u2c_len - r->u2c_off < RELAY_BUF)
			ue |= KW_EV_READ;
		if (r->c2u_off < r->c2u_len)
			ue |= KW_EV_WRITE;
	}
	if (watch(w->loop, &c->io, c->fd, ce) < 0 || watch(w->loop, &r->io, r->fd, ue) < 0)
		kpx_conn_close_why(c, KPX_R_INTERNAL);
}

/* pump moves bytes until nothing moves; it may close c. */
static void pump(struct kpx_conn *c)
{
	struct kpx_relay *r = c->relay;
	struct kpx_worker *w = c->w;
	uint64_t to_up = 0, to_client = 0;
	bool progress, moved = false;

	do {
		progress = false;
		/* client -> c2u */
		make_room(r->c2u, &r->c2u_off, &r->c2u_len);
		if (!r->client_eof && r->c2u_len < RELAY_BUF) {
			if (!take_buf(&r->c2u)) {
				kpx_conn_close_why(c, KPX_R_INTERNAL);
				goto out;
			}
			ERR_clear_error();
			int n =
			    SSL_read(c->ssl, r->c2u + r->c2u_len, (int)(RELAY_BUF - r->c2u_len));
			r->read_wants_write = false;
			if (n > 0) {
				r->c2u_len += (size_t)n;
				c->rx_client += (uint64_t)n;
				progress = true;
			} else {
				int e = SSL_get_error(c->ssl, n);
				if (e == SSL_ERROR_WANT_WRITE) {
					r->read_wants_write = true;
				} else if (e == SSL_ERROR_ZERO_RETURN) {
					r->client_eof = true;
					progress = true;
				} else if (e != SSL_ERROR_WANT_READ) {
					kpx_conn_close_why(c, e == SSL_ERROR_SSL
					                          ? KPX_R_TLS_ERROR
					                          : KPX_R_CLIENT_CLOSE);
					goto out;
				}
			}
		}
		/* c2u -> upstream */
		if (!r->connecting && !r->upstream_err && r->c2u_off < r->c2u_len) {
			ssize_t n =
			    send(r->fd, r->c2u + r->c2u_off, r->c2u_len - r->c2u_off, MSG_NOSIGNAL);
			if (n > 0) {
				size_t hdr = (size_t)n < r->hdr_left ? (size_t)n : r->hdr_left;
				r->hdr_left -= hdr;
				to_up += (size_t)n - hdr;
				c->tx_upstream += (size_t)n - hdr;
				r->c2u_off += (size_t)n;
				progress = true;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				r->upstream_err = r->upstream_eof = true;
				progress = true;
			}
		}
		if (r->upstream_err)
			r->c2u_off = r->c2u_len = 0; /* nowhere to go */
		if (r->client_eof && !r->connecting && !r->upstream_err && !r->up_shut &&
		    r->c2u_off == r->c2u_len) {
			shutdown(r->fd, SHUT_WR);
			r->up_shut = true;
		}
		/* upstream -> u2c */
		make_room(r->u2c, &r->u2c_off, &r->u2c_len);
		if (!r->connecting && !r->upstream_eof && r->u2c_len < RELAY_BUF) {
			if (!take_buf(&r->u2c)) {
				kpx_conn_close_why(c, KPX_R_INTERNAL);
				goto out;
			}
			ssize_t n = recv(r->fd, r->u2c + r->u2c_len, RELAY_BUF - r->u2c_len, 0);
			if (n > 0) {
				r->u2c_len += (size_t)n;
				c->rx_upstream += (uint64_t)n;
				progress = true;
			} else if (n == 0) {
				r->upstream_eof = true;
				progress = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				r->upstream_err = r->upstream_eof = true;
				progress = true;
			}
		}
		/* u2c -> client */
		if (r->u2c_off < r->u2c_len) {
			ERR_clear_error();
			size_t len = r->u2c_len - r->u2c_off;
			int n = SSL_write(c->ssl, r->u2c + r->u2c_off, (int)len);
			r->write_wants_read = false;
			if (n > 0) {
				r->u2c_off += (size_t)n;
				to_client += (uint64_t)n;
				c->tx_client += (uint64_t)n;
				progress = true;
			} else {
				int e = SSL_get_error(c->ssl, n);
				if (e == SSL_ERROR_WANT_READ) {
					r->write_wants_read = true;
				} else if (e != SSL_ERROR_WANT_WRITE) {
					kpx_conn_close_why(c, KPX_R_CLIENT_CLOSE);
					goto out;
				}
			}
		}
		/* the upstream's EOF -> close_notify, after everything before it */
		if (r->upstream_eof && !r->upstream_err && r->u2c_off == r->u2c_len &&
		    (!r->client_shut || r->shut_pending)) {
			ERR_clear_error();
			int rc = SSL_shutdown(c->ssl);
			r->client_shut = true;
			r->shut_pending = false;
			if (rc < 0) {
				int e = SSL_get_error(c->ssl, rc);
				if (e == SSL_ERROR_WANT_WRITE)
					r->shut_pending = true;
				else if (!r->client_eof) {
					kpx_conn_close_why(c, KPX_R_CLIENT_CLOSE);
					goto out;
				}
			}
		}
		moved |= progress;
	} while (progress);

	if (r->upstream_err && r->u2c_off == r->u2c_len) {
		kpx_conn_close_why(c, KPX_R_UPSTREAM_CLOSE);
		goto out;
	}
	if (r->client_eof && r->up_shut && r->upstream_eof && r->client_shut && !r->shut_pending) {
		kpx_conn_close_why(c, KPX_R_DONE);
		goto out;
	}
	give_back(&r->c2u, &r->c2u_off, &r->c2u_len);
	give_back(&r->u2c, &r->u2c_off, &r->u2c_len);
	if (moved) {
		r->last_ns = kw_loop_now_ns(w->loop);
		if (!r->connecting && !kw_timer_active(&c->timer))
			restart_idle_timer(c);
	}
	update_interest(c);
out:
	kpx_add(&w->m.relay_bytes[0], to_up);
	kpx_add(&w->m.relay_bytes[1], to_client);
}

static int proxy_header(struct kpx_conn *c, struct kpx_relay *r)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;

	if (getsockname(c->fd, (struct sockaddr *)&local, &len) < 0)
		local.ss_family = AF_UNSPEC;
	SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
	struct kpx_pp2_info in = {
	    .src = (const struct sockaddr *)&c->peer,
	    .dst = (const struct sockaddr *)&local,
	    .tls_version = SSL_get_version(c->ssl),
	    .cipher = SSL_get_cipher_name(c->ssl),
	    .sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name),
	    .alpn = alpn,
	    .alpn_len = alpn_len,
	};
	if (!take_buf(&r->c2u))
		return -ENOMEM;
	int n = kpx_pp2_build(r->c2u, RELAY_BUF, &in);
	if (n == -EINVAL) {
		in.sni = NULL; /* a name longer than a TLV carries: send none */
		n = kpx_pp2_build(r->c2u, RELAY_BUF, &in);
	}
	if (n < 0)
		return n;
	r->c2u_len = r->hdr_left = (size_t)n;
	return 0;
}

static void connect_failed(struct kpx_conn *c, enum kpx_reason why, int err)
{
	kpx_add(&c->w->m.upstream_connects[why == KPX_R_UPSTREAM_TIMEOUT ? 2 : 1], 1);
	kw_debug("worker %u: upstream %s: %s", c->w->id, c->w->opt->upstream,
	         why == KPX_R_UPSTREAM_TIMEOUT ? "connect timed out" : strerror(err));
	kpx_conn_close_why(c, why);
}

void kpx_relay_start(struct kpx_conn *c)
{
	struct kpx_worker *w = c->w;
	const struct kpx_options *o = w->opt;
	struct kpx_relay *r = calloc(1, sizeof(*r));

	c->state = KPX_CS_RELAY;
	if (r == NULL) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return;
	}
	r->fd = -1;
	kw_io_init(&r->io, upstream_io, c);
	r->last_ns = kw_loop_now_ns(w->loop);
	c->relay = r;
	kpx_add(&w->m.relays, 1);
	SSL_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (o->send_proxy_v2 && proxy_header(c, r) < 0) {
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
	r->fd = fd;
	r->connecting = true;
	kw_timer_start_ms(w->loop, &c->timer, (uint64_t)o->connect_timeout_s * 1000u);
	/* The client's first bytes often came with its Finished: take them now. */
	pump(c);
}

static void upstream_io(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_conn *c = arg;
	struct kpx_relay *r = c->relay;

	if (c->state != KPX_CS_RELAY || r == NULL)
		return;
	if (r->connecting) {
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
		r->connecting = false;
		kpx_add(&c->w->m.upstream_connects[0], 1);
		r->last_ns = kw_loop_now_ns(loop);
		restart_idle_timer(c);
	}
	pump(c);
}

void kpx_relay_client_io(struct kpx_conn *c, unsigned events)
{
	if (c->relay != NULL)
		pump(c);
}

void kpx_relay_timeout(struct kpx_conn *c)
{
	struct kpx_relay *r = c->relay;
	if (r == NULL) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return;
	}
	if (r->connecting) {
		connect_failed(c, KPX_R_UPSTREAM_TIMEOUT, ETIMEDOUT);
		return;
	}
	unsigned s = c->w->opt->idle_timeout_s;
	uint64_t idle_until = r->last_ns + (uint64_t)s * 1000000000ull;
	if (s != 0 && kw_loop_now_ns(c->w->loop) < idle_until) {
		restart_idle_timer(c); /* traffic since the timer was set */
		return;
	}
	kpx_conn_close_why(c, KPX_R_IDLE_TIMEOUT);
}

void kpx_relay_free(struct kpx_conn *c)
{
	struct kpx_relay *r = c->relay;
	if (r == NULL)
		return;
	kw_io_stop(c->w->loop, &r->io);
	if (r->fd >= 0)
		close(r->fd);
	kpx_add(&c->w->m.relays, (uint64_t)-1);
	c->relay = NULL;
	/* The upstream watcher may have an event queued this turn: free after it. */
	if (kw_loop_defer_free(c->w->loop, relay_free, r) < 0)
		kw_warn("worker %u: out of memory; leaking a relay buffer", c->w->id);
}
