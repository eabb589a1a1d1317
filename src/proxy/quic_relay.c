/*
 * quic_relay.c - one HTTP/3 request relayed as HTTP/1.1 to the upstream
 * (see quic_relay.h).
 *
 * The response body waits for the client's acknowledgements in a chain
 * of fixed blocks: nghttp3 keeps pointers into what it was given until the
 * client acknowledges it, so nothing handed out may move.
 */
#include "quic_relay.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ngtcp2/ngtcp2.h>

#include "keyway/buf.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "proxy.h"
#include "proxyv2.h"

#define BLK 16384
#define MAX_HEAD 65536
#define READ_CHUNK 16384
#define REQ_LOW_WATER 65536 /* request bytes buffered before flow control is credited */

struct blk {
	struct blk *next;
	size_t len;
	uint8_t data[BLK];
};

enum body_mode { BODY_NONE, BODY_CLEN, BODY_CHUNKED, BODY_CLOSE };
enum chunk_state { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER };

struct kpx_qrelay {
	struct kpx_qrelay_conn qc; /* the connection: its ops and handles */
	int64_t sid;
	int fd;
	struct kw_io io;
	struct kw_timer timer; /* connect timeout */
	bool connected, dead;
	/* request */
	char method[32];
	struct kw_buf path, authority, fields, req;
	uint8_t *pp2; /* --send-proxy-v2: the header to send first (NULL: none) */
	int pp2_len;
	bool have_host, have_clen, req_chunked, req_ended, head_sent, head_ready;
	uint64_t credit_owed; /* body bytes received, not yet credited to flow control */
	/* response */
	struct kw_buf head;
	bool head_done, resp_eof, submitted, is_head;
	enum body_mode mode;
	uint64_t left; /* CLEN: bytes to come; CHUNKED: of the current chunk */
	enum chunk_state cs;
	bool trailer_empty; /* in the trailer section: the current line is empty so far */
	struct blk *first, *last, *send_blk; /* send_blk/send_off: next byte for nghttp3 */
	size_t first_acked, send_off;
	uint64_t unacked; /* buffered and not acknowledged */
	bool paused;      /* not reading the upstream: the window is full */
};

/* ---- the response body chain ---- */

static int out_append(struct kpx_qrelay *r, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (r->last == NULL || r->last->len == BLK) {
			struct blk *b = malloc(sizeof(*b));
			if (b == NULL)
				return -ENOMEM;
			b->next = NULL;
			b->len = 0;
			if (r->last != NULL)
				r->last->next = b;
			else
				r->first = b;
			r->last = b;
			if (r->send_blk == NULL) {
				r->send_blk = b;
				r->send_off = 0;
			}
		}
		size_t k = BLK - r->last->len < n ? BLK - r->last->len : n;
		memcpy(r->last->data + r->last->len, p, k);
		r->last->len += k;
		r->unacked += k;
		p += k;
		n -= k;
	}
	return 0;
}

static nghttp3_ssize read_data(nghttp3_conn *h3, int64_t sid, nghttp3_vec *vec, size_t veccnt,
                               uint32_t *pflags, void *ud, void *sd);

static void update_interest(struct kpx_qrelay *r);

void kpx_qrelay_acked(struct kpx_qrelay *r, uint64_t n)
{
	r->unacked -= n < r->unacked ? n : r->unacked;
	while (n > 0 && r->first != NULL) {
		size_t k = r->first->len - r->first_acked;
		if (n < k) {
			r->first_acked += (size_t)n;
			break;
		}
		n -= k;
		struct blk *b = r->first;
		/* Acknowledged bytes were all handed out: a block fully acked is not being sent. */
		r->first = b->next;
		r->first_acked = 0;
		if (r->last == b)
			r->last = NULL;
		if (r->send_blk == b) {
			r->send_blk = r->first;
			r->send_off = 0;
		}
		free(b);
	}
	if (r->paused && r->unacked < KPX_QRELAY_WINDOW / 2)
		update_interest(r);
}

static nghttp3_ssize read_data(nghttp3_conn *h3, int64_t sid, nghttp3_vec *vec, size_t veccnt,
                               uint32_t *pflags, void *ud, void *sd)
{
	struct kpx_qrelay *r = *(struct kpx_qrelay **)sd; /* see quic_relay.h */
	size_t i = 0;
	while (i < veccnt && r->send_blk != NULL) {
		struct blk *b = r->send_blk;
		if (r->send_off < b->len) {
			vec[i].base = b->data + r->send_off;
			vec[i].len = b->len - r->send_off;
			r->send_off = b->len;
			i++;
		}
		if (r->send_off < BLK || b->next == NULL)
			break; /* more may be appended to this block */
		r->send_blk = b->next;
		r->send_off = 0;
	}
	if (i == 0 && !r->resp_eof)
		return NGHTTP3_ERR_WOULDBLOCK;
	/* Everything handed out and nothing more to come: the end of the body. */
	if (r->resp_eof &&
	    (r->send_blk == NULL || (r->send_blk->next == NULL && r->send_off == r->send_blk->len)))
		*pflags |= NGHTTP3_DATA_FLAG_EOF;
	return (nghttp3_ssize)i;
}

/* ---- answering the client ---- */

/* wake: the connection has something to write now. */
static void wake(struct kpx_qrelay *r)
{
	r->qc.ops.wake(r->qc.ops.ctx);
}

/* fail_stream ends the client's stream with an error: the response can no longer be whole. */
static void fail_stream(struct kpx_qrelay *r)
{
	ngtcp2_conn_shutdown_stream(r->qc.conn, r->sid, NGHTTP3_H3_INTERNAL_ERROR);
	wake(r);
}

static void close_upstream(struct kpx_qrelay *r)
{
	if (r->fd < 0)
		return;
	kw_io_stop(r->qc.w->loop, &r->io);
	kw_timer_stop(r->qc.w->loop, &r->timer);
	close(r->fd);
	r->fd = -1;
}

#define NV(n, nl, v, vl)                                                                           \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), (nl), (vl), NGHTTP3_NV_FLAG_NONE                   \
	}

/* answer_error answers 502 (nothing sent yet) or resets the stream. */
static void answer_error(struct kpx_qrelay *r, const char *why)
{
	kw_debug("HTTP/3 relay: stream %lld: %s", (long long)r->sid, why);
	close_upstream(r);
	r->dead = true;
	if (r->submitted) {
		fail_stream(r);
		return;
	}
	r->submitted = true;
	r->resp_eof = true;
	kpx_add(&r->qc.w->m.quic_http_errors, 1);
	static const char body[] = "bad gateway\n";
	out_append(r, (const uint8_t *)body, sizeof(body) - 1);
	const nghttp3_nv nva[] = {
	    NV(":status", 7, "502", 3),
	    NV("content-type", 12, "text/plain", 10),
	    NV("content-length", 14, "12", 2),
	};
	nghttp3_data_reader dr = {.read_data = read_data};
	if (nghttp3_conn_submit_response(r->qc.h3, r->sid, nva, 3, &dr) != 0)
		fail_stream(r);
	wake(r);
}

/* ---- the upstream's response ---- */

static bool connection_specific(const char *n, size_t len)
{
	static const char *const names[] = {
	    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
	    "te",         NULL};
	for (const char *const *p = names; *p != NULL; p++)
		if (strlen(*p) == len && strncasecmp(n, *p, len) == 0)
			return true;
	return false;
}

/*
 * submit_head turns the response head [p, p + len) (status line, fields,
 * up to the blank line) into the HTTP/3 response: 1 submitted, 0 skipped
 * (1xx), -1 malformed.
 */
static int submit_head(struct kpx_qrelay *r, char *p, size_t len)
{
	nghttp3_nv nva[128];
	size_t n = 1;
	char status[4];
	bool chunked = false, have_clen = false;
	uint64_t clen = 0;

	if (len < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
	    !isdigit((unsigned char)p[9]) || !isdigit((unsigned char)p[10]) ||
	    !isdigit((unsigned char)p[11]))
		return -1;
	memcpy(status, p + 9, 3);
	status[3] = 0;
	int code = atoi(status);
	if (code == 101)
		return -1; /* no protocol switch over HTTP/3 */
	if (code < 200)
		return 0;
	nva[0] = (nghttp3_nv)NV(":status", 7, status, 3);
	char *line = memchr(p, '\n', len), *end = p + len;
	while (line != NULL && ++line < end) {
		char *eol = memchr(line, '\n', (size_t)(end - line));
		if (eol == NULL)
			break;
		char *e = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
		if (e == line)
			break; /* the blank line */
		char *colon = memchr(line, ':', (size_t)(e - line));
		if (colon == NULL || colon == line)
			return -1;
		char *v = colon + 1;
		while (v < e && (*v == ' ' || *v == '\t'))
			v++;
		char *ve = e;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		size_t nl = (size_t)(colon - line);
		for (size_t i = 0; i < nl; i++)
			line[i] =
			    (char)tolower((unsigned char)line[i]); /* HTTP/3 names are lowercase */
		if (nl == 17 && memcmp(line, "transfer-encoding", 17) == 0)
			chunked = ve - v >= 7 && strncasecmp(ve - 7, "chunked", 7) == 0;
		if (nl == 14 && memcmp(line, "content-length", 14) == 0) {
			have_clen = true;
			clen = strtoull(v, NULL, 10);
		}
		if (!connection_specific(line, nl)) {
			if (n == sizeof(nva) / sizeof(nva[0]))
				return -1;
			nva[n++] = (nghttp3_nv)NV(line, nl, v, (size_t)(ve - v));
		}
		line = eol;
	}
	if (r->is_head || code == 204 || code == 304)
		r->mode = BODY_NONE;
	else if (chunked)
		r->mode = BODY_CHUNKED;
	else if (have_clen)
		r->mode = BODY_CLEN, r->left = clen;
	else
		r->mode = BODY_CLOSE;
	if (r->mode == BODY_NONE || (r->mode == BODY_CLEN && clen == 0))
		r->resp_eof = true;
	nghttp3_data_reader dr = {.read_data = read_data};
	r->submitted = true;
	kpx_add(&r->qc.w->m.quic_requests, 1);
	r->qc.ops.count_request(r->qc.ops.ctx); /* for its access log line */
	if (nghttp3_conn_submit_response(r->qc.h3, r->sid, nva, n,
	                                 r->mode == BODY_NONE ? NULL : &dr) != 0)
		return -1;
	return 1;
}

/* end_size_line: a chunk-size line ended; a zero size starts the trailer section. */
static void end_size_line(struct kpx_qrelay *r)
{
	r->cs = r->left == 0 ? CH_TRAILER : CH_DATA;
	r->trailer_empty = true;
}

/* body_chunked decodes chunked framing from p[0, n) into the chain. 0, 1 (ended) or -1. */
static int body_chunked(struct kpx_qrelay *r, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint8_t ch = p[i];
		switch (r->cs) {
		case CH_SIZE:
			if (isxdigit(ch)) {
				if (r->left > (1ull << 56))
					return -1;
				r->left =
				    r->left * 16 +
				    (uint64_t)(isdigit(ch) ? ch - '0' : (tolower(ch) - 'a' + 10));
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				r->cs = CH_EXT;
			} else if (ch == '\r') {
				r->cs = CH_SIZE_LF;
			} else if (ch == '\n') {
				end_size_line(r);
			} else {
				return -1;
			}
			i++;
			break;
		case CH_EXT:
			if (ch == '\n')
				end_size_line(r);
			i++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return -1;
			end_size_line(r);
			i++;
			break;
		case CH_DATA: {
			size_t k = n - i < r->left ? n - i : (size_t)r->left;
			if (out_append(r, p + i, k) < 0)
				return -1;
			r->left -= k;
			i += k;
			if (r->left == 0)
				r->cs = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch == '\r')
				r->cs = CH_DATA_LF;
			else if (ch == '\n')
				r->cs = CH_SIZE;
			else
				return -1;
			i++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return -1;
			r->cs = CH_SIZE;
			i++;
			break;
		case CH_TRAILER:
			/* Trailer fields are dropped; an empty line ends the message. */
			if (ch == '\n') {
				if (r->trailer_empty)
					return 1;
				r->trailer_empty = true;
			} else if (ch != '\r') {
				r->trailer_empty = false;
			}
			i++;
			break;
		}
	}
	return 0;
}

/* body consumes response body bytes by the framing. 0, 1 (the body ended) or -1. */
static int body(struct kpx_qrelay *r, const uint8_t *p, size_t n)
{
	switch (r->mode) {
	case BODY_NONE:
		return 1;
	case BODY_CLEN: {
		size_t k = n < r->left ? n : (size_t)r->left;
		if (out_append(r, p, k) < 0)
			return -1;
		r->left -= k;
		return r->left == 0 ? 1 : 0;
	}
	case BODY_CHUNKED:
		return body_chunked(r, p, n);
	case BODY_CLOSE:
		return out_append(r, p, n) < 0 ? -1 : 0;
	}
	return -1;
}

/* got_bytes feeds what the upstream sent: head, then body. 0, 1 (response done) or -1. */
static int got_bytes(struct kpx_qrelay *r, const uint8_t *p, size_t n)
{
	while (!r->head_done) {
		if (kw_buf_append(&r->head, p, n) < 0)
			return -1;
		n = 0;
		char *h = (char *)kw_buf_head(&r->head);
		size_t hl = kw_buf_unread(&r->head);
		char *e = memmem(h, hl, "\r\n\r\n", 4);
		size_t end = e != NULL ? (size_t)(e - h) + 4 : 0;
		if (e == NULL) {
			char *e2 = memmem(h, hl, "\n\n", 2);
			end = e2 != NULL ? (size_t)(e2 - h) + 2 : 0;
		}
		if (end == 0)
			return hl > MAX_HEAD ? -1 : 0;
		int rc = submit_head(r, h, end);
		if (rc < 0)
			return -1;
		/* What follows the head is body (or the next head after a 1xx). */
		size_t rest = hl - end;
		uint8_t *tmp = NULL;
		if (rest > 0 && (tmp = malloc(rest)) == NULL)
			return -1;
		if (rest > 0)
			memcpy(tmp, h + end, rest);
		kw_buf_reset(&r->head);
		r->head_done = rc == 1;
		if (r->head_done) {
			int b = rest > 0 ? body(r, tmp, rest) : (r->mode == BODY_NONE ? 1 : 0);
			if (r->resp_eof && r->mode != BODY_CLOSE)
				b = 1;
			free(tmp);
			return b;
		}
		if (rest == 0) {
			free(tmp);
			return 0;
		}
		int rc2 = got_bytes(r, tmp, rest);
		free(tmp);
		return rc2;
	}
	return body(r, p, n);
}

/* ---- upstream I/O ---- */

static void credit(struct kpx_qrelay *r)
{
	/* Once the upstream took the bytes, the client may send that many more. */
	if (r->credit_owed > 0 && kw_buf_unread(&r->req) < REQ_LOW_WATER) {
		ngtcp2_conn *conn = r->qc.conn;
		ngtcp2_conn_extend_max_stream_offset(conn, r->sid, r->credit_owed);
		ngtcp2_conn_extend_max_offset(conn, r->credit_owed);
		r->credit_owed = 0;
		wake(r);
	}
}

static void update_interest(struct kpx_qrelay *r)
{
	if (r->fd < 0)
		return;
	unsigned ev = 0;
	if (!r->connected || (r->head_sent && kw_buf_unread(&r->req) > 0))
		ev |= KW_EV_WRITE;
	r->paused = r->unacked >= KPX_QRELAY_WINDOW;
	if (r->connected && !r->paused)
		ev |= KW_EV_READ;
	if (r->io.fd < 0)
		kw_io_start(r->qc.w->loop, &r->io, r->fd, ev);
	else
		kw_io_modify(r->qc.w->loop, &r->io, ev);
}

static int write_some(struct kpx_qrelay *r)
{
	while (r->head_sent && kw_buf_unread(&r->req) > 0) {
		ssize_t n = send(r->fd, kw_buf_head(&r->req), kw_buf_unread(&r->req), MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		kw_buf_consume(&r->req, (size_t)n);
		kpx_add(&r->qc.w->m.relay_bytes[0], (uint64_t)n);
	}
	credit(r);
	return 0;
}

static void on_upstream(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_qrelay *r = arg;
	if (!r->connected) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
			kpx_add(&r->qc.w->m.upstream_connects[1], 1);
			answer_error(r, "connect failed");
			return;
		}
		kpx_add(&r->qc.w->m.upstream_connects[0], 1);
		r->connected = true;
		kw_timer_stop(loop, &r->timer);
	}
	if (write_some(r) < 0) {
		answer_error(r, "write failed");
		return;
	}
	uint8_t buf[READ_CHUNK];
	while ((events & (KW_EV_READ | KW_EV_ERROR)) && r->unacked < KPX_QRELAY_WINDOW) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0) {
			/* The upstream closed: the end of a close-delimited body, else too early.
			 */
			if (n == 0 && r->head_done && r->mode == BODY_CLOSE) {
				r->resp_eof = true;
				close_upstream(r);
				nghttp3_conn_resume_stream(r->qc.h3, r->sid);
				wake(r);
			} else {
				answer_error(r, "the upstream closed early");
			}
			return;
		}
		kpx_add(&r->qc.w->m.relay_bytes[1], (uint64_t)n);
		int rc = got_bytes(r, buf, (size_t)n);
		if (rc < 0) {
			answer_error(r, "malformed response");
			return;
		}
		if (r->submitted)
			nghttp3_conn_resume_stream(r->qc.h3, r->sid);
		wake(r);
		if (rc == 1) {
			r->resp_eof = true;
			close_upstream(r);
			return;
		}
	}
	update_interest(r);
}

static void on_connect_timeout(struct kw_loop *loop, void *arg)
{
	struct kpx_qrelay *r = arg;
	kpx_add(&r->qc.w->m.upstream_connects[2], 1);
	answer_error(r, "connect timed out");
}

/* ---- the request ---- */

/* build_pp2 makes the PROXY v2 header the upstream is sent first; 0 or -1. */
static int build_pp2(struct kpx_qrelay *r, const struct kpx_pp2_info *pp2)
{
	if ((r->pp2 = malloc(KPX_PP2_MAX)) == NULL ||
	    (r->pp2_len = kpx_pp2_build(r->pp2, KPX_PP2_MAX, pp2)) < 0)
		return -1;
	return 0;
}

struct kpx_qrelay *kpx_qrelay_new(const struct kpx_qrelay_conn *qc, int64_t sid,
                                  const struct kpx_pp2_info *pp2)
{
	struct kpx_qrelay *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->qc = *qc;
	r->sid = sid;
	r->fd = -1;
	if (pp2 != NULL && build_pp2(r, pp2) < 0) {
		free(r->pp2);
		free(r);
		return NULL;
	}
	kw_io_init(&r->io, on_upstream, r);
	kw_timer_init(&r->timer, on_connect_timeout, r);
	return r;
}

int kpx_qrelay_header(struct kpx_qrelay *r, int32_t token, const uint8_t *name, size_t nlen,
                      const uint8_t *value, size_t vlen)
{
	switch (token) {
	case NGHTTP3_QPACK_TOKEN__METHOD:
		if (vlen == 0 || vlen >= sizeof(r->method))
			return -1;
		memcpy(r->method, value, vlen);
		r->method[vlen] = 0;
		r->is_head = strcmp(r->method, "HEAD") == 0;
		return 0;
	case NGHTTP3_QPACK_TOKEN__PATH:
		return kw_buf_append(&r->path, value, vlen);
	case NGHTTP3_QPACK_TOKEN__AUTHORITY:
		return kw_buf_append(&r->authority, value, vlen);
	default:
		break;
	}
	if (nlen > 0 && name[0] == ':')
		return 0; /* :scheme, :protocol: nothing in HTTP/1.1 */
	if (connection_specific((const char *)name, nlen))
		return 0;
	if (nlen == 4 && memcmp(name, "host", 4) == 0)
		r->have_host = true;
	if (nlen == 14 && memcmp(name, "content-length", 14) == 0)
		r->have_clen = true;
	if (kw_buf_append(&r->fields, name, nlen) < 0 || kw_buf_append(&r->fields, ": ", 2) < 0 ||
	    kw_buf_append(&r->fields, value, vlen) < 0 || kw_buf_append(&r->fields, "\r\n", 2) < 0)
		return -1;
	return 0;
}

/* send_head queues the request head, framing the body by its length, chunked, or none. */
static int send_head(struct kpx_qrelay *r, bool body)
{
	if (r->head_sent)
		return 0;
	r->req_chunked = body && !r->have_clen;
	struct kw_buf h = {0};
	int rc = r->pp2 != NULL ? kw_buf_append(&h, r->pp2, (size_t)r->pp2_len) : 0;
	if (rc == 0)
		rc = kw_buf_appendf(&h, "%s %.*s HTTP/1.1\r\n", r->method,
		                    (int)kw_buf_unread(&r->path),
		                    (const char *)kw_buf_head(&r->path));
	if (rc == 0 && !r->have_host)
		rc = kw_buf_appendf(&h, "Host: %.*s\r\n", (int)kw_buf_unread(&r->authority),
		                    (const char *)kw_buf_head(&r->authority));
	if (rc == 0)
		rc = kw_buf_append(&h, kw_buf_head(&r->fields), kw_buf_unread(&r->fields));
	if (rc == 0 && r->req_chunked)
		rc = kw_buf_appendf(&h, "Transfer-Encoding: chunked\r\n");
	if (rc == 0)
		rc = kw_buf_appendf(&h, "Connection: close\r\n\r\n");
	/* The head goes before any body bytes already queued. */
	if (rc == 0)
		rc = kw_buf_append(&h, kw_buf_head(&r->req), kw_buf_unread(&r->req));
	if (rc < 0) {
		kw_buf_cleanup(&h);
		return -1;
	}
	kw_buf_cleanup(&r->req);
	r->req = h;
	r->head_sent = true;
	return 0;
}

int kpx_qrelay_headers_done(struct kpx_qrelay *r, bool fin)
{
	if (r->method[0] == 0 || kw_buf_unread(&r->path) == 0 || strcmp(r->method, "CONNECT") == 0)
		return -1;
	const struct kpx_options *o = r->qc.w->opt;
	int fd = kw_connect(&o->upstream_addr);
	if (fd < 0) {
		kpx_add(&r->qc.w->m.upstream_connects[1], 1);
		answer_error(r, "connect failed");
		return 0;
	}
	r->fd = fd;
	kw_timer_start_ms(r->qc.w->loop, &r->timer, (uint64_t)o->connect_timeout_s * 1000);
	/* A request known to have no body goes at once; otherwise the first body byte or the
	 * end decides between chunked and none. */
	if (fin || r->have_clen) {
		r->req_ended = fin;
		if (send_head(r, !fin) < 0)
			return -1;
	}
	update_interest(r);
	return 0;
}

int kpx_qrelay_body(struct kpx_qrelay *r, const uint8_t *data, size_t len)
{
	r->credit_owed += len;
	if (r->dead || (r->head_sent && r->fd < 0)) {
		/* Answered already (or failed): the rest of the body is read and dropped. */
		kw_buf_reset(&r->req);
		credit(r);
		return 0;
	}
	if (!r->head_sent && send_head(r, true) < 0)
		return -1;
	if (r->req_chunked && len > 0 && kw_buf_appendf(&r->req, "%zx\r\n", len) < 0)
		return -1;
	if (kw_buf_append(&r->req, data, len) < 0)
		return -1;
	if (r->req_chunked && len > 0 && kw_buf_append(&r->req, "\r\n", 2) < 0)
		return -1;
	if (r->connected && write_some(r) < 0) {
		answer_error(r, "write failed");
		return 0;
	}
	update_interest(r);
	return 0;
}

int kpx_qrelay_body_end(struct kpx_qrelay *r)
{
	if (r->dead || r->req_ended || (r->head_sent && r->fd < 0))
		return 0;
	r->req_ended = true;
	if (!r->head_sent && send_head(r, false) < 0)
		return -1;
	if (r->req_chunked && kw_buf_append(&r->req, "0\r\n\r\n", 5) < 0)
		return -1;
	if (r->connected && write_some(r) < 0) {
		answer_error(r, "write failed");
		return 0;
	}
	update_interest(r);
	return 0;
}

static void relay_free(void *p)
{
	struct kpx_qrelay *r = p;
	while (r->first != NULL) {
		struct blk *b = r->first;
		r->first = b->next;
		free(b);
	}
	kw_buf_cleanup(&r->path);
	kw_buf_cleanup(&r->authority);
	kw_buf_cleanup(&r->fields);
	kw_buf_cleanup(&r->req);
	kw_buf_cleanup(&r->head);
	free(r->pp2);
	free(r);
}

void kpx_qrelay_free(struct kpx_qrelay *r)
{
	if (r == NULL)
		return;
	close_upstream(r);
	/* The watcher may have an event due this turn: free after it. */
	if (kw_loop_defer_free(r->qc.w->loop, relay_free, r) < 0)
		relay_free(r);
}
