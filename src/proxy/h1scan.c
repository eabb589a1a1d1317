/*
 * h1scan.c - HTTP/1.1 message framing, byte by byte (see h1scan.h).
 *
 * Lines of a head are collected up to KPX_H1_LINE_MAX bytes: only the start
 * line and the framing fields (Content-Length, Transfer-Encoding) and
 * Alt-Svc are looked at, and those are short; a longer line is still
 * skipped whole.
 */
#include "h1scan.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

enum {
	S_START,      /* start line (or empty lines before a request's) */
	S_FIELDS,     /* field lines up to the blank one */
	S_BLANK_LF,   /* the blank line's CR was seen */
	S_CLEN,       /* Content-Length body */
	S_CHUNK_SIZE, /* chunk-size hex digits */
	S_CHUNK_EXT,  /* chunk extensions up to LF */
	S_CHUNK_DATA, /* chunk data */
	S_CHUNK_CR,   /* CR LF after chunk data */
	S_CHUNK_LF,   /* LF after chunk data's CR */
	S_TRAILER,    /* trailer section lines up to the blank one */
	S_CLOSE,      /* body up to the connection's close */
	S_TUNNEL,     /* opaque from here on */
};

static void new_message(struct kpx_h1 *h)
{
	h->state = S_START;
	h->lbytes = 0;
	h->head_told = false;
	h->have_clen = h->chunked = h->have_te = h->has_alt_svc = false;
	h->clen = 0;
	h->status = 0;
	h->kind = KPX_H1_REQ_OTHER;
	h->answers = KPX_H1_REQ_OTHER;
}

void kpx_h1_init(struct kpx_h1 *h, bool response)
{
	memset(h, 0, sizeof(*h));
	h->response = response;
	new_message(h);
}

bool kpx_h1_tunnel(const struct kpx_h1 *h)
{
	return h->state == S_TUNNEL;
}

void kpx_h1_set_tunnel(struct kpx_h1 *h)
{
	h->state = S_TUNNEL;
}

/* start_line checks the status line or request line in h->line[0, len). */
static int start_line(struct kpx_h1 *h, size_t len)
{
	const char *l = h->line;
	if (h->response) {
		if (len < 12 || strncmp(l, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)l[7]) ||
		    l[8] != ' ' || !isdigit((unsigned char)l[9]) ||
		    !isdigit((unsigned char)l[10]) || !isdigit((unsigned char)l[11]) ||
		    (len > 12 && l[12] != ' '))
			return -1;
		h->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
		return h->status >= 100 ? 0 : -1;
	}
	const char *sp = memchr(l, ' ', len);
	if (sp == NULL || sp == l || len < 9 || strncmp(l + len - 9, " HTTP/1.", 8) != 0)
		return -1;
	size_t ml = (size_t)(sp - l);
	if (ml == 4 && memcmp(l, "HEAD", 4) == 0)
		h->kind = KPX_H1_REQ_HEAD;
	else if (ml == 7 && memcmp(l, "CONNECT", 7) == 0)
		h->kind = KPX_H1_REQ_CONNECT;
	return 0;
}

static bool name_is(const char *l, size_t nl, const char *name)
{
	return nl == strlen(name) && strncasecmp(l, name, nl) == 0;
}

/* field looks at one field line h->line[0, len) (len < KPX_H1_LINE_MAX when whole). */
static int field(struct kpx_h1 *h, size_t len, bool whole)
{
	const char *l = h->line;
	const char *colon = memchr(l, ':', len);
	if (colon == NULL || colon == l)
		return whole ? -1 : 0; /* a long line's colon may lie beyond what was kept */
	size_t nl = (size_t)(colon - l);
	const char *v = colon + 1, *e = l + len;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (name_is(l, nl, "alt-svc")) {
		h->has_alt_svc = true;
	} else if (name_is(l, nl, "transfer-encoding")) {
		if (!whole)
			return -1;
		h->have_te = true;
		/* chunked must be the last coding (RFC 9112 §6.1). */
		h->chunked = e - v >= 7 && strncasecmp(e - 7, "chunked", 7) == 0 &&
		             (e - v == 7 || e[-8] == ',' || e[-8] == ' ');
	} else if (name_is(l, nl, "content-length")) {
		if (!whole || v == e)
			return -1;
		uint64_t n = 0;
		for (const char *q = v; q < e; q++) {
			if (!isdigit((unsigned char)*q) || n > (UINT64_MAX - 9) / 10)
				return -1;
			n = n * 10 + (uint64_t)(*q - '0');
		}
		if (h->have_clen && n != h->clen)
			return -1;
		h->have_clen = true;
		h->clen = n;
	}
	return 0;
}

/* end_line: a head line of h->lbytes bytes ended (its LF not counted). */
static int end_line(struct kpx_h1 *h)
{
	size_t len = h->lbytes < KPX_H1_LINE_MAX ? h->lbytes : KPX_H1_LINE_MAX;
	bool whole = h->lbytes < KPX_H1_LINE_MAX;
	if (len > 0 && whole && h->line[len - 1] == '\r')
		len--;
	h->lbytes = 0;
	if (h->state == S_START) {
		if (len == 0 && !h->response)
			return 0; /* empty lines before a request line are ignored */
		if (!whole || start_line(h, len) < 0)
			return -1;
		h->state = S_FIELDS;
		return 0;
	}
	return field(h, len, whole);
}

/* body_state picks the framing once a head ended. */
static void end_head(struct kpx_h1 *h)
{
	if (h->response) {
		int st = h->status;
		if (st == 101 || (h->answers == KPX_H1_REQ_CONNECT && st >= 200 && st < 300)) {
			h->state = S_TUNNEL;
			return;
		}
		if (st < 200) { /* interim: the final head follows */
			new_message(h);
			return;
		}
		if (h->answers == KPX_H1_REQ_HEAD || st == 204 || st == 304)
			h->state = S_START;
		else if (h->chunked)
			h->state = S_CHUNK_SIZE;
		else if (h->have_te)
			h->state = S_CLOSE;
		else if (h->have_clen)
			h->state = h->clen > 0 ? S_CLEN : S_START;
		else
			h->state = S_CLOSE;
	} else {
		if (h->kind == KPX_H1_REQ_CONNECT)
			h->state = S_TUNNEL;
		else if (h->chunked)
			h->state = S_CHUNK_SIZE;
		else if (h->have_clen && h->clen > 0)
			h->state = S_CLEN;
		else
			h->state = S_START;
	}
	h->left = h->clen;
	if (h->state == S_START)
		new_message(h);
	if (h->state == S_CHUNK_SIZE)
		h->left = 0;
}

/* end_message: the body (or trailers) ended; the next head starts. */
static void end_message(struct kpx_h1 *h)
{
	new_message(h);
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (uint8_t)tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* head_byte takes one byte of a start or field line: 0, KPX_H1_HEAD or -1. */
static int head_byte(struct kpx_h1 *h, uint8_t ch)
{
	if (h->state == S_FIELDS && h->lbytes == 0 && (ch == '\r' || ch == '\n')) {
		if (!h->head_told) {
			h->head_told = true;
			return KPX_H1_HEAD;
		}
		if (ch == '\r') {
			h->state = S_BLANK_LF;
			return 0;
		}
		end_head(h);
		return 0;
	}
	if (ch == '\n')
		return end_line(h);
	if (h->lbytes < KPX_H1_LINE_MAX)
		h->line[h->lbytes] = (char)ch;
	h->lbytes++;
	return 0;
}

/* chunk_byte takes one byte of chunked framing outside chunk data: 0 or -1. */
static int chunk_byte(struct kpx_h1 *h, uint8_t ch)
{
	switch (h->state) {
	case S_CHUNK_SIZE: {
		int v = hexval(ch);
		if (v >= 0) {
			if (h->left > (UINT64_MAX >> 4))
				return -1;
			h->left = h->left * 16 + (uint64_t)v;
			h->lbytes++;
		} else if (h->lbytes > 0 && (ch == ';' || ch == ' ' || ch == '\t' || ch == '\r')) {
			h->state = S_CHUNK_EXT;
		} else if (h->lbytes > 0 && ch == '\n') {
			h->lbytes = 0;
			h->state = h->left == 0 ? S_TRAILER : S_CHUNK_DATA;
		} else {
			return -1;
		}
		return 0;
	}
	case S_CHUNK_EXT:
		if (ch == '\n') {
			h->lbytes = 0;
			h->state = h->left == 0 ? S_TRAILER : S_CHUNK_DATA;
		}
		return 0;
	case S_CHUNK_CR:
		if (ch == '\r')
			h->state = S_CHUNK_LF;
		else if (ch == '\n')
			h->state = S_CHUNK_SIZE;
		else
			return -1;
		return 0;
	case S_CHUNK_LF:
		if (ch != '\n')
			return -1;
		h->state = S_CHUNK_SIZE;
		return 0;
	case S_TRAILER:
		/* Trailer fields pass through unread; an empty line ends the message. */
		if (ch == '\n') {
			if (h->lbytes == 0)
				end_message(h);
			h->lbytes = 0;
		} else if (ch != '\r' || h->lbytes > 0) {
			h->lbytes++;
		}
		return 0;
	}
	return -1;
}

int kpx_h1_feed(struct kpx_h1 *h, const uint8_t *p, size_t n, size_t *used)
{
	size_t i = 0;
	while (i < n) {
		switch (h->state) {
		case S_TUNNEL:
		case S_CLOSE:
			i = n;
			break;
		case S_CLEN:
		case S_CHUNK_DATA: {
			size_t k = n - i < h->left ? n - i : (size_t)h->left;
			h->left -= k;
			i += k;
			if (h->left == 0 && h->state == S_CLEN)
				end_message(h);
			else if (h->left == 0)
				h->state = S_CHUNK_CR;
			break;
		}
		case S_BLANK_LF:
			if (p[i] != '\n')
				goto bad;
			i++;
			end_head(h);
			break;
		case S_START:
		case S_FIELDS: {
			int rc = head_byte(h, p[i]);
			if (rc == KPX_H1_HEAD) {
				*used = i;
				return KPX_H1_HEAD;
			}
			if (rc < 0)
				goto bad;
			i++;
			break;
		}
		default:
			if (chunk_byte(h, p[i]) < 0)
				goto bad;
			i++;
			break;
		}
	}
	*used = n;
	return KPX_H1_MORE;
bad:
	*used = i;
	return KPX_H1_ERROR;
}
