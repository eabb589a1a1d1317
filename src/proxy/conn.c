/*
 * conn.c - one client connection: the TLS state machine with its TLS-ASYNC
 * state, then its mode (respond or upstream) over plaintext byte streams.
 *
 * HANDSHAKE -> (ASYNC while the handshake's job is paused on an offload op)
 * -> MODE (the mode table the worker gave at accept runs the connection).
 *
 * While in ASYNC no SSL function is called for the socket: a paused job is
 * resumed by whichever SSL call comes next, so a socket event must not reach
 * SSL_do_handshake before the op completes. Parking (on an op, or on a free
 * ASYNC_JOB) therefore unregisters the socket from epoll: an empty interest
 * mask is not enough, as epoll reports EPOLLHUP and EPOLLERR whatever the
 * mask, and a client resetting a parked handshake would make the
 * level-triggered loop spin. When the op completes the handshake is re-called
 * and re-registers the interest it needs, and epoll then reports whatever is
 * pending, a reset included, which closes the connection. A connection is
 * never freed with a paused job: closing then only marks it, and the close
 * happens after the job finishes.
 *
 * SSL_MODE_ASYNC is on only for the handshake: a paused SSL_read would be
 * resumed by an SSL_write (OpenSSL 3.0 does not check), and record crypto is
 * cheaper inline than any round trip.
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/err.h>

#include "accesslog.h"
#include "keyway/log.h"
#include "keyway/provider_api.h"
#include "poller.h"
#include "waitq.h"

/* Connections holding a --max-connections slot, across all workers. */
static _Atomic unsigned slots;

unsigned kpx_conn_slots(void)
{
	return atomic_load_explicit(&slots, memory_order_relaxed);
}

bool kpx_conn_take_slot(unsigned max)
{
	unsigned n = atomic_fetch_add_explicit(&slots, 1, memory_order_relaxed);
	if (max != 0 && n >= max) {
		atomic_fetch_sub_explicit(&slots, 1, memory_order_relaxed);
		return false;
	}
	return true;
}

void kpx_conn_drop_slot(void)
{
	atomic_fetch_sub_explicit(&slots, 1, memory_order_relaxed);
}

static void conn_io(struct kw_loop *loop, int fd, unsigned events, void *arg);
static void conn_timeout(struct kw_loop *loop, void *arg);
static void handshake(struct kpx_conn *c);

void kpx_conn_watch(struct kpx_conn *c, unsigned events)
{
	struct kw_loop *loop = c->w->loop;
	int rc = 0;

	/* No interest: unregister (a hang-up would still be reported; see the top). */
	if (events == 0)
		kw_io_stop(loop, &c->io);
	else if (c->io.fd < 0)
		rc = kw_io_start(loop, &c->io, c->fd, events);
	else
		rc = kw_io_modify(loop, &c->io, events);
	if (rc < 0)
		kpx_conn_close_why(c, KPX_R_INTERNAL);
}

int kpx_conn_timer_s(struct kpx_conn *c, unsigned s)
{
	return kw_timer_start_ms(c->w->loop, &c->timer, (uint64_t)s * 1000u);
}

/* count moves c in or out of one of its worker's gauges (active, idle), once. */
static void count(bool *counted, bool on, unsigned *n, _Atomic uint64_t *gauge)
{
	if (*counted == on)
		return;
	*counted = on;
	*n += on ? 1 : -1u;
	kpx_set(gauge, *n);
}

/* Activity accounting for the heuristic (idle keep-alive connections are not active). */
static void set_active(struct kpx_conn *c, bool active)
{
	count(&c->counted_active, active, &c->w->active, &c->w->m.active);
}

static void set_idle(struct kpx_conn *c, bool idle)
{
	count(&c->counted_idle, idle, &c->w->idle, &c->w->m.idle);
}

static void run_heuristic(struct kpx_worker *w)
{
	kpx_poller_check(&w->poller, w->active);
}

void kpx_conn_set_idle(struct kpx_conn *c, bool idle)
{
	if (idle) {
		set_active(c, false);
		set_idle(c, true);
		run_heuristic(c->w);
	} else {
		set_idle(c, false);
		set_active(c, true);
	}
}

static void conn_free(void *p)
{
	struct kpx_conn *c = p;
	c->magic = 0;
	free(c);
}

static void async_fds_forget(struct kpx_conn *c)
{
	for (int i = 0; i < KPX_MAX_ASYNC_FDS; i++) {
		kw_io_stop(c->w->loop, &c->async_io[i]);
		c->async_fds[i] = -1;
	}
}

/*
 * note_missing_key finds, among the errors the failed handshake left, the
 * keyway provider's "key not found" (or the SNI callback's refusal of a
 * certificate whose key no keyserver holds) and keeps the key's SKI for the
 * access log. It empties the error queue, which the close would anyway.
 */
static void note_missing_key(struct kpx_conn *c)
{
	static const char prefix[] = KW_PROVIDER_KEY_NOT_FOUND_TEXT;
	const char *data = NULL;
	int flags = 0;

	while (ERR_get_error_all(NULL, NULL, NULL, &data, &flags) != 0) {
		const char *at =
		    data != NULL && (flags & ERR_TXT_STRING) ? strstr(data, prefix) : NULL;
		if (at == NULL || c->missing_ski[0] != '\0')
			continue;
		at += sizeof(prefix) - 1;
		size_t n = strspn(at, "0123456789abcdefABCDEF");
		if (n == 2 * KW_SKI_LEN) {
			memcpy(c->missing_ski, at, n);
			c->missing_ski[n] = '\0';
		}
	}
}

static void fail(struct kpx_conn *c, enum kpx_fail why)
{
	kpx_add(&c->w->m.failures[why], 1);
	if (c->reason == KPX_R_NONE)
		c->reason = why == KPX_FAIL_CLOSED     ? KPX_R_CLIENT_CLOSE
		            : why == KPX_FAIL_TIMEOUT  ? KPX_R_HANDSHAKE_TIMEOUT
		            : why == KPX_FAIL_INTERNAL ? KPX_R_INTERNAL
		                                       : KPX_R_HANDSHAKE_FAILED;
	if (kw_log_enabled(KW_LOG_DEBUG)) {
		char detail[256];
		const char *data = NULL;
		int flags = 0;
		/* The first error is the cause; its data holds the provider's words (SKI,
		 * keyserver). */
		unsigned long e = ERR_peek_error_data(&data, &flags);
		ERR_error_string_n(e, detail, sizeof(detail));
		bool text = data != NULL && (flags & ERR_TXT_STRING) && data[0] != '\0';
		kw_debug("worker %u: handshake failed (%d): %s%s%s", c->w->id, (int)why,
		         e != 0 ? detail : "no TLS error", text ? ": " : "", text ? data : "");
	}
	note_missing_key(c);
	kpx_conn_close(c);
}

void kpx_conn_close_why(struct kpx_conn *c, enum kpx_reason reason)
{
	if (c->reason == KPX_R_NONE)
		c->reason = reason;
	kpx_conn_close(c);
}

void kpx_conn_close(struct kpx_conn *c)
{
	struct kpx_worker *w = c->w;

	if (c->state == KPX_CS_CLOSED)
		return;
	if (c->state == KPX_CS_ASYNC) {
		/* Freeing the SSL now would leak the job and let the op touch freed state. */
		c->closing = true;
		return;
	}
	kpx_waitq_forget(&w->waitq, &c->waiter);
	set_active(c, false);
	set_idle(c, false);
	kw_io_stop(w->loop, &c->io);
	kw_timer_stop(w->loop, &c->timer);
	async_fds_forget(c);
	c->mode->free(c);
	if (c->reason == KPX_R_NONE)
		c->reason = c->handshake_ns != 0 ? KPX_R_DONE : KPX_R_CLIENT_CLOSE;
	kpx_add(&w->m.closes[c->reason], 1);
	kpx_accesslog_conn(c); /* before SSL_free: the line reads the SNI and cipher from the SSL */
	if (c->holds_slot)
		kpx_conn_drop_slot();
	c->holds_slot = false;
	/* Only a finished job can get here; a paused one keeps the connection alive. */
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->state = KPX_CS_CLOSED;
	kw_list_del(&c->node);
	w->nconns--;
	kpx_add(&w->m.closed, 1);
	if (kw_loop_defer_free(w->loop, conn_free, c) < 0)
		kw_warn("worker %u: out of memory; leaking a closed connection", w->id);
	/* QTLS runs the heuristic when a connection goes: it may be the one that was not waiting.
	 */
	run_heuristic(w);
}

void kpx_conn_refuse(struct kpx_worker *w, int fd, const struct sockaddr *peer)
{
	kpx_add(&w->m.accepted, 1);
	kpx_add(&w->m.closes[KPX_R_MAX_CONNECTIONS], 1);
	kpx_accesslog_refused(w, peer);
	close(fd);
}

void kpx_conn_accept(struct kpx_worker *w, int fd, SSL *ssl, const struct sockaddr *peer,
                     socklen_t peer_len, const struct kpx_mode_ops *mode)
{
	struct kpx_conn *c = ssl != NULL ? calloc(1, sizeof(*c)) : NULL;
	if (c == NULL || SSL_set_fd(ssl, fd) != 1) {
		kw_warn("worker %u: cannot set up a connection (out of memory)", w->id);
		kpx_add(&w->m.failures[KPX_FAIL_INTERNAL], 1);
		kpx_add(&w->m.closes[KPX_R_INTERNAL], 1);
		SSL_free(ssl);
		free(c);
		close(fd);
		kpx_conn_drop_slot();
		return;
	}
	c->ssl = ssl;
	c->mode = mode;
	c->holds_slot = true; /* the caller took it */
	c->accept_ns = kw_loop_now_ns(w->loop);
	if (peer_len > 0 && peer_len <= sizeof(c->peer))
		memcpy(&c->peer, peer, peer_len);
	c->magic = KPX_CONN_MAGIC;
	c->w = w;
	c->fd = fd;
	c->state = KPX_CS_HANDSHAKE;
	kpx_waiter_init(&c->waiter);
	kw_list_add_tail(&w->conns, &c->node);
	w->nconns++;
	for (int i = 0; i < KPX_MAX_ASYNC_FDS; i++) {
		c->async_fds[i] = -1;
		kw_io_init(&c->async_io[i], NULL, c);
	}
	kw_io_init(&c->io, conn_io, c);
	kw_timer_init(&c->timer, conn_timeout, c);
	SSL_set_accept_state(c->ssl);
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (w->opt->async) {
		SSL_set_mode(c->ssl, SSL_MODE_ASYNC);
		c->async_mode = true;
		if (w->opt->notify == KPX_NOTIFY_CALLBACK)
			SSL_set_async_callback_arg(c->ssl, c);
	}
	kpx_add(&w->m.accepted, 1);
	set_active(c, true);
	/* Without its handshake timer a silent client would hold the connection for ever. */
	if (kpx_conn_timer_s(c, w->opt->handshake_timeout_s) < 0 ||
	    kw_io_start(w->loop, &c->io, fd, KW_EV_READ) < 0)
		fail(c, KPX_FAIL_INTERNAL);
	/* No SSL call yet: the ClientHello is rarely there at accept time. */
}

/* ---- TLS-ASYNC ---- */

static void resume(struct kpx_conn *c);

static void async_fd_ready(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_conn *c = arg;
	kpx_add(&c->w->m.async_fd_wakeups, 1);
	/* The provider drains its own eventfd when the job resumes. */
	resume(c);
}

/* track_async_fds follows the wait fds the provider added or removed (fd mode). */
static void track_async_fds(struct kpx_conn *c)
{
	OSSL_ASYNC_FD add[KPX_MAX_ASYNC_FDS], del[KPX_MAX_ASYNC_FDS];
	size_t nadd = 0, ndel = 0;

	if (!SSL_get_changed_async_fds(c->ssl, NULL, &nadd, NULL, &ndel))
		return;
	if (nadd > KPX_MAX_ASYNC_FDS || ndel > KPX_MAX_ASYNC_FDS) {
		kw_warn("worker %u: %zu async fds for one connection; at most %d are watched",
		        c->w->id, nadd, KPX_MAX_ASYNC_FDS);
		return;
	}
	if (!SSL_get_changed_async_fds(c->ssl, add, &nadd, del, &ndel))
		return;
	for (size_t i = 0; i < ndel; i++)
		for (int j = 0; j < KPX_MAX_ASYNC_FDS; j++)
			if (c->async_fds[j] == del[i]) {
				kw_io_stop(c->w->loop, &c->async_io[j]);
				c->async_fds[j] = -1;
			}
	for (size_t i = 0; i < nadd; i++)
		for (int j = 0; j < KPX_MAX_ASYNC_FDS; j++)
			if (c->async_fds[j] < 0) {
				kw_io_init(&c->async_io[j], async_fd_ready, c);
				if (kw_io_start(c->w->loop, &c->async_io[j], add[i], KW_EV_READ) ==
				    0)
					c->async_fds[j] = add[i];
				break;
			}
}

static void enter_async(struct kpx_conn *c)
{
	struct kpx_worker *w = c->w;
	int status = ASYNC_STATUS_UNSUPPORTED;

	c->state = KPX_CS_ASYNC;
	kpx_add(&w->m.async_pauses, 1);
	kpx_conn_watch(c, 0); /* parked: the socket stays out of epoll until the op completes */
	if (w->opt->notify == KPX_NOTIFY_FD)
		track_async_fds(c);
	/* A full backend sends no notification of its own: retry after the next completion. */
	if (SSL_get_async_status(c->ssl, &status) && status == ASYNC_STATUS_EAGAIN) {
		kpx_add(&w->m.capacity_waits, 1);
		kpx_waitq_on(&w->waitq, &c->waiter, KPX_WAIT_CAPACITY);
	}
	run_heuristic(w);
}

int kpx_conn_async_cb(SSL *ssl, void *arg)
{
	struct kpx_conn *c = arg;

	if (c == NULL || c->magic != KPX_CONN_MAGIC)
		return 0;
	/* On the worker's thread a queue append; from another thread, the locked hand-over. */
	kpx_waitq_notify(&c->w->waitq, &c->waiter);
	return 1;
}

/*
 * peer_reset tells whether the client reset (or errored) the connection: a
 * parked socket is out of epoll, so this asks the socket itself.
 */
static bool peer_reset(const struct kpx_conn *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

static void resume(struct kpx_conn *c)
{
	/* Before the handshake goes on (and perhaps answers its client): whoever sees the
	 * answer then sees the op out of the in-flight gauge too. */
	kpx_poller_refresh(&c->w->poller);
	if (c->state == KPX_CS_HANDSHAKE) {
		/* A job came free for a connection that had none (or a harmless late notification).
		 */
		kpx_waitq_off(&c->waiter);
		if (c->async_mode && peer_reset(c)) {
			/* Its client is gone: no op for it; the job goes to the next waiter. */
			kpx_waitq_job_freed(&c->w->waitq);
			fail(c, KPX_FAIL_CLOSED);
			return;
		}
		handshake(c);
		return;
	}
	if (c->state != KPX_CS_ASYNC)
		return; /* a late or duplicate notification */
	kpx_waitq_off(&c->waiter);
	c->state = KPX_CS_HANDSHAKE;
	/* The handshake re-registers the socket interest it needs; level-triggered epoll then
	 * reports whatever is pending, and a client that reset meanwhile is closed. */
	handshake(c);
}

void kpx_conn_resume_waiter(struct kpx_waiter *wt)
{
	resume(kw_container_of(wt, struct kpx_conn, waiter));
}

/* ---- handshake ---- */

static void handshake_done(struct kpx_conn *c)
{
	if (c->async_mode) {
		SSL_clear_mode(c->ssl, SSL_MODE_ASYNC);
		c->async_mode = false;
		async_fds_forget(c);
	}
	kpx_add(&c->w->m.handshakes, 1);
	c->handshake_ns = kw_now_ns() - c->accept_ns;
	if (c->handshake_ns == 0)
		c->handshake_ns = 1;
	c->state = KPX_CS_MODE;
	c->mode->start(c);
}

/*
 * over_handshake_bytes closes a client that sent more than
 * --max-handshake-bytes before finishing its handshake (counted on the
 * socket BIO, so read-ahead is included: the cap is on memory and work, and
 * a real ClientHello is far below the default).
 */
static bool over_handshake_bytes(struct kpx_conn *c)
{
	unsigned max = c->w->opt->max_handshake_bytes;
	if (max == 0 || BIO_number_read(SSL_get_rbio(c->ssl)) <= max)
		return false;
	kpx_add(&c->w->m.failures[KPX_FAIL_TLS], 1);
	kpx_conn_close_why(c, KPX_R_TOO_MANY_BYTES);
	return true;
}

static void handshake(struct kpx_conn *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);

	if (c->async_mode && e != SSL_ERROR_WANT_ASYNC && e != SSL_ERROR_WANT_ASYNC_JOB)
		kpx_waitq_job_freed(&c->w->waitq);
	if (c->closing && e != SSL_ERROR_WANT_ASYNC) {
		kpx_conn_close(c);
		return;
	}
	switch (e) {
	case SSL_ERROR_NONE:
		handshake_done(c);
		return;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		if (over_handshake_bytes(c))
			return;
		kpx_conn_watch(c, e == SSL_ERROR_WANT_READ ? KW_EV_READ : KW_EV_READ | KW_EV_WRITE);
		return;
	case SSL_ERROR_WANT_ASYNC:
		enter_async(c);
		return;
	case SSL_ERROR_WANT_ASYNC_JOB:
		/* The pool is at its bound; no fd or callback will come: wait for a job to free. */
		kpx_add(&c->w->m.job_waits, 1);
		kpx_conn_watch(c, 0);
		kpx_waitq_on(&c->w->waitq, &c->waiter, KPX_WAIT_JOB);
		return;
	case SSL_ERROR_SYSCALL:
	case SSL_ERROR_ZERO_RETURN:
		fail(c, ERR_peek_error() != 0 ? KPX_FAIL_TLS : KPX_FAIL_CLOSED);
		return;
	default:
		/* A client that went away mid-record closed; it did not speak bad TLS. */
		fail(c, ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING
		            ? KPX_FAIL_CLOSED
		            : KPX_FAIL_TLS);
	}
}

/* ---- the plaintext byte streams a mode sees ---- */

/*
 * xfer is one SSL_read (into rbuf) or SSL_write (from wbuf) of up to len
 * bytes: how many moved, or a kpx_xfer. A failed read closes c as a TLS
 * error only for a bad record (a client leaving, even mid-record, is a
 * client close); a failed write closes it as a client close.
 */
static ssize_t xfer(struct kpx_conn *c, void *rbuf, const void *wbuf, size_t len)
{
	int n = len > INT32_MAX ? INT32_MAX : (int)len;
	ERR_clear_error();
	int r = rbuf != NULL ? SSL_read(c->ssl, rbuf, n) : SSL_write(c->ssl, wbuf, n);
	if (r > 0) {
		*(rbuf != NULL ? &c->rx_client : &c->tx_client) += (uint64_t)r;
		return r;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return KPX_XFER_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return KPX_XFER_WANT_WRITE;
	if (rbuf != NULL && e == SSL_ERROR_ZERO_RETURN)
		return KPX_XFER_EOF;
	bool bad_record = rbuf != NULL && e == SSL_ERROR_SSL &&
	                  ERR_GET_REASON(ERR_peek_error()) != SSL_R_UNEXPECTED_EOF_WHILE_READING;
	kpx_conn_close_why(c, bad_record ? KPX_R_TLS_ERROR : KPX_R_CLIENT_CLOSE);
	return KPX_XFER_CLOSED;
}

ssize_t kpx_conn_recv(struct kpx_conn *c, void *buf, size_t len)
{
	return xfer(c, buf, NULL, len);
}

ssize_t kpx_conn_send(struct kpx_conn *c, const void *buf, size_t len)
{
	return xfer(c, NULL, buf, len);
}

int kpx_conn_shutdown(struct kpx_conn *c)
{
	ERR_clear_error();
	int rc = SSL_shutdown(c->ssl);
	if (rc >= 0)
		return 0;
	return SSL_get_error(c->ssl, rc) == SSL_ERROR_WANT_WRITE ? KPX_XFER_WANT_WRITE
	                                                         : KPX_XFER_FAILED;
}

void kpx_conn_bare_eof_ends(struct kpx_conn *c)
{
	SSL_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
}

void kpx_conn_info(const struct kpx_conn *c, struct kpx_conn_info *out)
{
	out->alpn = NULL;
	out->alpn_len = 0;
	SSL_get0_alpn_selected(c->ssl, &out->alpn, &out->alpn_len);
	out->version = SSL_get_version(c->ssl);
	out->cipher = SSL_get_cipher_name(c->ssl);
	out->sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

/* ---- events ---- */

static void conn_io(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_conn *c = arg;

	switch (c->state) {
	case KPX_CS_ASYNC:
		/* Parked sockets are not registered; an event already collected is dropped. */
		return;
	case KPX_CS_HANDSHAKE:
		if (c->waiter.waiting == KPX_WAIT_JOB)
			return;
		handshake(c);
		return;
	case KPX_CS_MODE:
		c->mode->io(c, events);
		return;
	case KPX_CS_CLOSED:
		return;
	}
}

static void conn_timeout(struct kw_loop *loop, void *arg)
{
	struct kpx_conn *c = arg;
	switch (c->state) {
	case KPX_CS_HANDSHAKE:
	case KPX_CS_ASYNC:
		kpx_add(&c->w->m.failures[KPX_FAIL_TIMEOUT], 1);
		kpx_conn_close_why(c, KPX_R_HANDSHAKE_TIMEOUT);
		return;
	case KPX_CS_MODE:
		c->mode->timeout(c);
		return;
	case KPX_CS_CLOSED:
		return;
	}
}
