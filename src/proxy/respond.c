/*
 * respond.c - --respond: a small HTTP/1.1 server on the connection's
 * plaintext stream: read requests, queue the fixed answers, write them,
 * then wait for the next request (keep-alive) or close.
 *
 * A connection reading or writing a request is active (it counts for the
 * poll heuristic) under the request timeout (--handshake-timeout); between
 * requests it is idle under --keepalive-timeout and holds no read buffer.
 * Reading stops while KPX_RESPOND_HIGH_WATER bytes of answers are unsent,
 * so a client that pipelines without reading cannot make the proxy buffer
 * without bound.
 */
#include "respond.h"

#include <errno.h>
#include <stdlib.h>

#include "conn.h"
#include "http.h"

#define READ_CHUNK 16384

int kpx_respond_serve(struct kpx_respond *r, const char *body, bool keep, unsigned *answered)
{
	struct kpx_http_req req;

	*answered = 0;
	while (!r->close_after_write && kw_buf_unread(&r->in) > 0 &&
	       kw_buf_unread(&r->out) < KPX_RESPOND_HIGH_WATER) {
		int rc = kpx_http_parse(&req, kw_buf_head(&r->in), kw_buf_unread(&r->in));
		if (rc == 0)
			break;
		if (rc < 0) {
			r->error = -rc;
			kpx_http_error(&r->out, -rc);
			r->close_after_write = true;
			break;
		}
		kw_buf_consume(&r->in, req.len);
		bool last = !req.keep_alive || !keep;
		if (kpx_http_respond(&r->out, &req, body, last) < 0)
			return -ENOMEM;
		r->nreq++;
		(*answered)++;
		if (last)
			r->close_after_write = true;
	}
	if (r->close_after_write)
		kw_buf_reset(&r->in); /* nothing after the last answered request is read */
	return 0;
}

/* serve answers what r->in holds, with the counters and close reason of c. */
static enum kpx_step serve(struct kpx_conn *c, struct kpx_respond *r)
{
	struct kpx_worker *w = c->w;
	unsigned answered;
	bool keep = w->opt->keepalive_timeout_s != 0 &&
	            !atomic_load_explicit(&w->stop, memory_order_relaxed);
	int error = r->error;
	int rc = kpx_respond_serve(r, w->opt->body, keep, &answered);

	kpx_add(&w->m.requests, answered);
	if (r->error != error) {
		kpx_add(&w->m.http_errors, 1);
		c->reason = KPX_R_HTTP_ERROR;
	}
	if (rc < 0) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return KPX_STEP_CLOSED;
	}
	return KPX_STEP_DONE;
}

static void finish_close(struct kpx_conn *c, enum kpx_reason reason)
{
	if (c->reason == KPX_R_NONE)
		c->reason = reason;
	/* close_notify, once and without waiting for the client's. */
	kpx_conn_shutdown(c);
	kpx_conn_close(c);
}

/* flush writes pending output: DONE when all is written. */
static enum kpx_step flush(struct kpx_conn *c, struct kpx_respond *r)
{
	while (kw_buf_unread(&r->out) > 0) {
		ssize_t n = kpx_conn_send(c, kw_buf_head(&r->out), kw_buf_unread(&r->out));
		if (n == KPX_XFER_CLOSED)
			return KPX_STEP_CLOSED;
		if (n < 0)
			return KPX_STEP_BLOCKED;
		kw_buf_consume(&r->out, (size_t)n);
	}
	return KPX_STEP_DONE;
}

/*
 * read_some reads until the stream wants more from the socket (with
 * read-ahead, records may wait inside the transport where epoll cannot see
 * them), or until the output high-water mark stops it, answering as it
 * goes: DONE (read, or nothing yet) or CLOSED.
 */
static enum kpx_step read_some(struct kpx_conn *c, struct kpx_respond *r)
{
	for (;;) {
		if (kw_buf_unread(&r->out) >= KPX_RESPOND_HIGH_WATER || r->close_after_write)
			return KPX_STEP_DONE;
		if (kw_buf_reserve(&r->in, READ_CHUNK) < 0) {
			kpx_conn_close_why(c, KPX_R_INTERNAL);
			return KPX_STEP_CLOSED;
		}
		ssize_t n = kpx_conn_recv(c, kw_buf_tail(&r->in), READ_CHUNK);
		if (n > 0) {
			r->in.len += (size_t)n;
			if (serve(c, r) == KPX_STEP_CLOSED)
				return KPX_STEP_CLOSED;
			continue;
		}
		if (n == KPX_XFER_WANT_READ || n == KPX_XFER_WANT_WRITE)
			return KPX_STEP_DONE;
		/* close_notify between requests: a client leaving is no failure. */
		if (n == KPX_XFER_EOF)
			kpx_conn_close_why(c, KPX_R_CLIENT_CLOSE);
		return KPX_STEP_CLOSED;
	}
}

/*
 * timer_or_close (re)starts c's timer for s seconds; if the loop refuses,
 * c is closed rather than left without a bound (false: c is gone).
 */
static bool timer_or_close(struct kpx_conn *c, unsigned s)
{
	if (kpx_conn_timer_s(c, s) == 0)
		return true;
	kpx_conn_close_why(c, KPX_R_INTERNAL);
	return false;
}

/* become_active puts an idle connection under the request timeout; false: c was closed. */
static bool become_active(struct kpx_conn *c, struct kpx_respond *r)
{
	if (!r->idle)
		return true;
	kpx_conn_set_idle(c, false);
	r->idle = false;
	return timer_or_close(c, c->w->opt->handshake_timeout_s);
}

/* wait_for_client: everything answered was written; read the next request. */
static void wait_for_client(struct kpx_conn *c, struct kpx_respond *r, uint64_t before)
{
	kpx_conn_watch(c, KW_EV_READ);
	if (kw_buf_unread(&r->in) > 0 || r->nreq == 0) {
		/* Part of a request, or the first one still to come: active, under the request
		 * timeout (restarted for each new request). */
		if (r->nreq != before)
			r->idle = true;
		(void)become_active(c, r);
		return;
	}
	if (!r->idle) {
		r->idle = true;
		kw_buf_cleanup(&r->in); /* idle keep-alive connections hold no read buffer */
		kpx_conn_set_idle(c, true);
	}
	if (r->nreq != before)
		(void)timer_or_close(c, c->w->opt->keepalive_timeout_s);
}

static void respond_io(struct kpx_conn *c, unsigned events)
{
	struct kpx_respond *r = c->mode_state;
	uint64_t before = r->nreq;

	if (kw_buf_unread(&r->out) > 0 && flush(c, r) == KPX_STEP_CLOSED)
		return;
	if (read_some(c, r) == KPX_STEP_CLOSED)
		return;
	if (serve(c, r) == KPX_STEP_CLOSED) /* requests held back by the high-water mark */
		return;
	switch (flush(c, r)) {
	case KPX_STEP_CLOSED:
		return;
	case KPX_STEP_BLOCKED: {
		/* Blocked on the socket: keep reading requests only below the high-water mark. */
		if (!become_active(c, r))
			return;
		bool more =
		    !r->close_after_write && kw_buf_unread(&r->out) < KPX_RESPOND_HIGH_WATER;
		kpx_conn_watch(c, more ? KW_EV_READ | KW_EV_WRITE : KW_EV_WRITE);
		return;
	}
	case KPX_STEP_DONE:
		if (r->close_after_write)
			finish_close(c, KPX_R_DONE);
		else
			wait_for_client(c, r, before);
		return;
	}
}

static void start(struct kpx_conn *c)
{
	struct kpx_respond *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		kpx_conn_close_why(c, KPX_R_INTERNAL);
		return;
	}
	c->mode_state = r;
	if (!timer_or_close(c, c->w->opt->handshake_timeout_s))
		return;
	kpx_conn_watch(c, KW_EV_READ);
	/* The request usually follows the client's Finished in the same flight. */
	respond_io(c, 0);
}

static void timeout(struct kpx_conn *c)
{
	struct kpx_respond *r = c->mode_state;
	if (r != NULL && r->idle)
		finish_close(c, KPX_R_IDLE_TIMEOUT);
	else
		kpx_conn_close_why(c, KPX_R_REQUEST_TIMEOUT);
}

static void respond_free(struct kpx_conn *c)
{
	struct kpx_respond *r = c->mode_state;
	if (r == NULL)
		return;
	kw_buf_cleanup(&r->in);
	kw_buf_cleanup(&r->out);
	free(r);
	c->mode_state = NULL;
}

const struct kpx_mode_ops kpx_respond_ops = {
    .start = start,
    .io = respond_io,
    .timeout = timeout,
    .free = respond_free,
};
