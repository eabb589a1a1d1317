/*
 * conn.c - one client connection: the TLS state machine with its TLS-ASYNC
 * state, and the HTTP/1.1 responder.
 *
 * HANDSHAKE -> (ASYNC while the handshake's job is paused on an offload op)
 * -> HTTP (read requests, write responses) -> IDLE (keep-alive) -> HTTP ...
 *
 * While in ASYNC no SSL function is called for the socket: a paused job is
 * resumed by whichever SSL call comes next, so a socket event must not reach
 * SSL_do_handshake before the op completes. The first such event takes the
 * socket out of epoll's interest set (the loop is level-triggered, so
 * leaving it armed would spin) and is remembered; when the op completes the
 * handshake is re-called and the interest restored, which replays whatever
 * readiness was swallowed. A connection is never freed with a paused job:
 * closing then only marks it, and the close happens after the job finishes.
 *
 * SSL_MODE_ASYNC is on only for the handshake: a paused SSL_read would be
 * resumed by an SSL_write (OpenSSL 3.0 does not check), and record crypto is
 * cheaper inline than any round trip.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/err.h>

#include "http.h"
#include "keyway/log.h"
#include "proxy.h"

#define READ_CHUNK 16384

const char *const kpx_reason_names[KPX_NREASON] = {
    "-",
    "done",
    "client-close",
    "upstream-close",
    "upstream-connect-failed",
    "upstream-timeout",
    "idle-timeout",
    "handshake-timeout",
    "handshake-failed",
    "too-many-bytes",
    "max-connections",
    "drain",
    "tls-error",
    "http-error",
    "request-timeout",
    "internal",
};

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
#define OUT_HIGH_WATER 65536 /* stop reading requests while this much output is unsent */

static void conn_io(struct kw_loop *loop, int fd, unsigned events, void *arg);
static void conn_timeout(struct kw_loop *loop, void *arg);
static void handshake(struct kpx_conn *c);
static void http_io(struct kpx_conn *c);

static void set_interest(struct kpx_conn *c, unsigned events)
{
	if (c->io.fd >= 0)
		kw_io_modify(c->w->loop, &c->io, events);
}

static void start_timer_s(struct kpx_conn *c, unsigned s)
{
	kw_timer_start_ms(c->w->loop, &c->timer, (uint64_t)s * 1000u);
}

static void conn_free(void *p)
{
	struct kpx_conn *c = p;
	c->magic = 0;
	kw_buf_cleanup(&c->in);
	kw_buf_cleanup(&c->out);
	free(c);
}

static void async_fds_forget(struct kpx_conn *c)
{
	for (int i = 0; i < KPX_MAX_ASYNC_FDS; i++) {
		kw_io_stop(c->w->loop, &c->async_io[i]);
		c->async_fds[i] = -1;
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
		/* The first error is the cause; its data holds the provider's words (SKI, keyserver). */
		unsigned long e = ERR_peek_error_data(&data, &flags);
		ERR_error_string_n(e, detail, sizeof(detail));
		bool text = data != NULL && (flags & ERR_TXT_STRING) && data[0] != '\0';
		kw_debug("worker %u: handshake failed (%d): %s%s%s", c->w->id, (int)why,
		         e != 0 ? detail : "no TLS error", text ? ": " : "", text ? data : "");
	}
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
	kpx_wait_off(c);
	if (c->rqueued) {
		pthread_mutex_lock(&w->remote_mu);
		kpx_list_del(&c->rnode);
		c->rqueued = false;
		pthread_mutex_unlock(&w->remote_mu);
	}
	kpx_set_active(c, false);
	kpx_set_idle(c, false);
	kw_io_stop(w->loop, &c->io);
	kw_timer_stop(w->loop, &c->timer);
	async_fds_forget(c);
	kpx_relay_free(c);
	if (c->reason == KPX_R_NONE)
		c->reason = c->handshake_ns != 0 ? KPX_R_DONE : KPX_R_CLIENT_CLOSE;
	kpx_add(&w->m.closes[c->reason], 1);
	kpx_alog_conn(c); /* before SSL_free: the line reads the SNI and cipher from the SSL */
	if (c->holds_slot)
		kpx_conn_drop_slot();
	c->holds_slot = false;
	/* Only a finished job can get here; a paused one keeps the connection alive. */
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->state = KPX_CS_CLOSED;
	kpx_list_del(&c->node);
	w->nconns--;
	kpx_add(&w->m.closed, 1);
	if (kw_loop_defer_free(w->loop, conn_free, c) < 0)
		kw_warn("worker %u: out of memory; leaking a closed connection", w->id);
	/* QTLS runs the heuristic when a connection goes: it may be the one that was not waiting.
	 */
	kpx_poller_check(w);
}

void kpx_conn_accept(struct kpx_worker *w, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		len = 0;
	if (!kpx_conn_take_slot(w->opt->max_connections)) {
		kpx_conn_refuse(w, fd, len > 0 ? (struct sockaddr *)&ss : NULL);
		return;
	}
	kpx_conn_accept_from(w, fd, (struct sockaddr *)&ss, len);
}

void kpx_conn_refuse(struct kpx_worker *w, int fd, const struct sockaddr *peer)
{
	kpx_add(&w->m.accepted, 1);
	kpx_add(&w->m.closes[KPX_R_MAX_CONNECTIONS], 1);
	kpx_alog_refused(w, peer);
	close(fd);
}

void kpx_conn_accept_from(struct kpx_worker *w, int fd, const struct sockaddr *peer,
                          socklen_t peer_len)
{
	struct kpx_conn *c = calloc(1, sizeof(*c));
	if (c == NULL || (c->ssl = kpx_worker_ssl_new(w)) == NULL || SSL_set_fd(c->ssl, fd) != 1) {
		kw_warn("worker %u: cannot set up a connection (out of memory)", w->id);
		kpx_add(&w->m.failures[KPX_FAIL_INTERNAL], 1);
		kpx_add(&w->m.closes[KPX_R_INTERNAL], 1);
		if (c != NULL)
			SSL_free(c->ssl);
		free(c);
		close(fd);
		kpx_conn_drop_slot();
		return;
	}
	c->holds_slot = true; /* the caller took it */
	c->accept_ns = kw_loop_now_ns(w->loop);
	if (peer_len > 0 && peer_len <= sizeof(c->peer))
		memcpy(&c->peer, peer, peer_len);
	c->magic = KPX_CONN_MAGIC;
	c->w = w;
	c->fd = fd;
	c->state = KPX_CS_HANDSHAKE;
	kpx_list_init(&c->wait);
	kpx_list_init(&c->rnode);
	kpx_list_add_tail(&w->conns, &c->node);
	w->nconns++;
	for (int i = 0; i < KPX_MAX_ASYNC_FDS; i++) {
		c->async_fds[i] = -1;
		kw_io_init(&c->async_io[i], NULL, c);
	}
	kw_io_init(&c->io, conn_io, c);
	kw_timer_init(&c->timer, conn_timeout, c);
	SSL_set_accept_state(c->ssl);
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (!w->opt->async_off) {
		SSL_set_mode(c->ssl, SSL_MODE_ASYNC);
		c->async_mode = true;
		if (w->opt->notify == KPX_NOTIFY_CALLBACK)
			SSL_set_async_callback_arg(c->ssl, c);
	}
	kpx_add(&w->m.accepted, 1);
	kpx_set_active(c, true);
	start_timer_s(c, w->opt->handshake_timeout_s);
	if (kw_io_start(w->loop, &c->io, fd, KW_EV_READ) < 0)
		fail(c, KPX_FAIL_INTERNAL);
	/* No SSL call yet: the ClientHello is rarely there at accept time. */
}

/* ---- TLS-ASYNC ---- */

static void async_fd_ready(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_conn *c = arg;
	kpx_add(&c->w->m.async_fd_wakeups, 1);
	/* The provider drains its own eventfd when the job resumes. */
	kpx_conn_resume(c);
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
	if (w->opt->notify == KPX_NOTIFY_FD)
		track_async_fds(c);
	/* A full backend sends no notification of its own: retry after the next completion. */
	if (SSL_get_async_status(c->ssl, &status) && status == ASYNC_STATUS_EAGAIN) {
		kpx_add(&w->m.capacity_waits, 1);
		kpx_wait_on(c, KPX_WAIT_CAPACITY);
	}
	kpx_poller_check(w);
}

int kpx_conn_async_cb(SSL *ssl, void *arg)
{
	struct kpx_conn *c = arg;
	struct kpx_worker *w;

	if (c == NULL || c->magic != KPX_CONN_MAGIC)
		return 0;
	w = c->w;
	if (kpx_worker_current() == w) {
		/* Kernel-bypass notification: the op completed on this thread; queue, no syscall.
		 */
		if (c->waiting != KPX_WAIT_ASYNCQ) {
			kpx_wait_on(c, KPX_WAIT_ASYNCQ);
			kpx_add(&w->m.async_queue_wakeups, 1);
		}
		return 1;
	}
	/*
	 * A completion on another thread (a provider polling internally): hand over
	 * through a locked queue of its own (the wait lists are the worker's alone)
	 * and wake the loop. Not the hot path of keyway-proxy, which polls itself.
	 */
	pthread_mutex_lock(&w->remote_mu);
	if (!c->rqueued) {
		c->rqueued = true;
		kpx_list_add_tail(&w->remote_q, &c->rnode);
	}
	pthread_mutex_unlock(&w->remote_mu);
	atomic_store_explicit(&w->remote_pending, true, memory_order_release);
	kw_loop_wake(w->loop);
	return 1;
}

void kpx_conn_resume(struct kpx_conn *c)
{
	if (c->state == KPX_CS_HANDSHAKE) {
		/* A job came free for a connection that had none (or a harmless late notification).
		 */
		kpx_wait_off(c);
		handshake(c);
		return;
	}
	if (c->state != KPX_CS_ASYNC)
		return; /* a late or duplicate notification */
	kpx_wait_off(c);
	c->state = KPX_CS_HANDSHAKE;
	unsigned parked = c->parked;
	c->parked = 0;
	handshake(c);
	/* Replay: the handshake re-armed the socket interest it needs and level-triggered
	 * epoll reports again whatever is still pending; a hang-up is acted on now. */
	if (c->state != KPX_CS_CLOSED && c->state != KPX_CS_ASYNC && (parked & KW_EV_ERROR))
		conn_io(c->w->loop, c->fd, parked, c);
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
	if (c->w->opt->upstream != NULL) {
		kpx_relay_start(c);
		return;
	}
	c->state = KPX_CS_HTTP;
	start_timer_s(c, c->w->opt->handshake_timeout_s);
	set_interest(c, KW_EV_READ);
	/* The request usually follows the client's Finished in the same flight. */
	http_io(c);
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
		kpx_job_freed(c->w);
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
		set_interest(c, e == SSL_ERROR_WANT_READ ? KW_EV_READ : KW_EV_READ | KW_EV_WRITE);
		return;
	case SSL_ERROR_WANT_ASYNC:
		enter_async(c);
		return;
	case SSL_ERROR_WANT_ASYNC_JOB:
		/* The pool is at its bound; no fd or callback will come: wait for a job to free. */
		kpx_add(&c->w->m.job_waits, 1);
		set_interest(c, 0);
		kpx_wait_on(c, KPX_WAIT_JOB);
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

/* ---- HTTP ---- */

static void finish_close(struct kpx_conn *c, enum kpx_reason reason)
{
	if (c->reason == KPX_R_NONE)
		c->reason = reason;
	/* close_notify, once and without waiting for the client's. */
	ERR_clear_error();
	SSL_shutdown(c->ssl);
	kpx_conn_close(c);
}

/* flush writes pending output; 1 when all is written, 0 when blocked, -1 when closed. */
static int flush(struct kpx_conn *c)
{
	while (kw_buf_unread(&c->out) > 0) {
		ERR_clear_error();
		size_t n = kw_buf_unread(&c->out);
		int r = SSL_write(c->ssl, kw_buf_head(&c->out), n > INT32_MAX ? INT32_MAX : (int)n);
		if (r > 0) {
			kw_buf_consume(&c->out, (size_t)r);
			c->tx_client += (uint64_t)r;
			continue;
		}
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
			return 0;
		kpx_conn_close_why(c, KPX_R_CLIENT_CLOSE);
		return -1;
	}
	return 1;
}

/* serve answers every complete request in the input buffer. */
static void serve(struct kpx_conn *c)
{
	struct kpx_worker *w = c->w;
	struct kpx_http_req req;

	while (!c->close_after_write && kw_buf_unread(&c->in) > 0 &&
	       kw_buf_unread(&c->out) < OUT_HIGH_WATER) {
		int rc = kpx_http_parse(&req, kw_buf_head(&c->in), kw_buf_unread(&c->in));
		if (rc == 0)
			break;
		if (rc < 0) {
			kpx_add(&w->m.http_errors, 1);
			kpx_http_error(&c->out, -rc);
			c->reason = KPX_R_HTTP_ERROR;
			c->close_after_write = true;
			break;
		}
		kw_buf_consume(&c->in, req.len);
		bool last = !req.keep_alive || w->opt->keepalive_timeout_s == 0 ||
		            atomic_load_explicit(&w->stop, memory_order_relaxed);
		if (kpx_http_respond(&c->out, &req, w->opt->body, last) < 0) {
			kpx_conn_close_why(c, KPX_R_INTERNAL);
			return;
		}
		c->nreq++;
		kpx_add(&w->m.requests, 1);
		if (last)
			c->close_after_write = true;
	}
	if (c->close_after_write)
		kw_buf_reset(&c->in); /* nothing after the last answered request is read */
}

/*
 * read_some reads until SSL_read wants more from the socket (with read-ahead,
 * records may wait inside the SSL where epoll cannot see them), or until the
 * output high-water mark stops it; 1: read or nothing yet, -1: closed (c is gone).
 */
static int read_some(struct kpx_conn *c)
{
	for (;;) {
		if (kw_buf_unread(&c->out) >= OUT_HIGH_WATER || c->close_after_write)
			return 1;
		if (kw_buf_reserve(&c->in, READ_CHUNK) < 0) {
			kpx_conn_close_why(c, KPX_R_INTERNAL);
			return -1;
		}
		ERR_clear_error();
		int r = SSL_read(c->ssl, kw_buf_tail(&c->in), READ_CHUNK);
		if (r > 0) {
			c->in.len += (size_t)r;
			c->rx_client += (uint64_t)r;
			serve(c);
			if (c->state == KPX_CS_CLOSED)
				return -1;
			continue;
		}
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return 1;
		/* close_notify, EOF or reset: a client leaving between requests is no failure. */
		kpx_conn_close_why(c, e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) !=
		                                                SSL_R_UNEXPECTED_EOF_WHILE_READING
		                          ? KPX_R_TLS_ERROR
		                          : KPX_R_CLIENT_CLOSE);
		return -1;
	}
}

static void become_active(struct kpx_conn *c)
{
	if (c->state == KPX_CS_HTTP)
		return;
	kpx_set_idle(c, false);
	kpx_set_active(c, true);
	c->state = KPX_CS_HTTP;
	start_timer_s(c, c->w->opt->handshake_timeout_s);
}

static void http_io(struct kpx_conn *c)
{
	struct kpx_worker *w = c->w;
	uint64_t before = c->nreq;

	if (kw_buf_unread(&c->out) > 0 && flush(c) < 0)
		return;
	if (read_some(c) < 0)
		return;
	serve(c); /* requests held back by the output high-water mark */
	if (c->state == KPX_CS_CLOSED)
		return;
	int f = flush(c);
	if (f < 0)
		return;
	if (f == 0) {
		/* Blocked on the socket: keep reading requests only below the high-water mark. */
		become_active(c);
		bool more = !c->close_after_write && kw_buf_unread(&c->out) < OUT_HIGH_WATER;
		set_interest(c, more ? KW_EV_READ | KW_EV_WRITE : KW_EV_WRITE);
		return;
	}
	if (c->close_after_write) {
		finish_close(c, KPX_R_DONE);
		return;
	}
	set_interest(c, KW_EV_READ);
	if (kw_buf_unread(&c->in) > 0 || c->nreq == 0) {
		/* Part of a request, or the first one still to come: active, under the request
		 * timeout. */
		if (c->nreq != before)
			c->state =
			    KPX_CS_IDLE; /* so become_active restarts the timer for this request */
		become_active(c);
		return;
	}
	if (c->state != KPX_CS_IDLE) {
		c->state = KPX_CS_IDLE;
		kw_buf_cleanup(&c->in); /* idle keep-alive connections hold no read buffer */
		kpx_set_active(c, false);
		kpx_set_idle(c, true);
		kpx_poller_check(w);
	}
	if (c->nreq != before)
		start_timer_s(c, w->opt->keepalive_timeout_s);
}

static void conn_io(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_conn *c = arg;

	switch (c->state) {
	case KPX_CS_ASYNC:
		/* Parked: remember, and stop epoll reporting it until the op completes. */
		c->parked |= events;
		set_interest(c, 0);
		return;
	case KPX_CS_HANDSHAKE:
		if (c->waiting == KPX_WAIT_JOB)
			return;
		handshake(c);
		return;
	case KPX_CS_HTTP:
	case KPX_CS_IDLE:
		http_io(c);
		return;
	case KPX_CS_RELAY:
		kpx_relay_client_io(c, events);
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
	case KPX_CS_IDLE:
		finish_close(c, KPX_R_IDLE_TIMEOUT);
		return;
	case KPX_CS_RELAY:
		kpx_relay_timeout(c);
		return;
	default:
		kpx_conn_close_why(c, KPX_R_REQUEST_TIMEOUT);
	}
}
