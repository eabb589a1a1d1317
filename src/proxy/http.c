/* http.c - HTTP/1.x request parsing and the fixed responses (see http.h). */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Field-name and method characters: RFC 9110 tchar. */
static bool is_tchar(uint8_t c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* find_head_end returns the length of the head including its blank line, or 0. */
static size_t find_head_end(const uint8_t *p, size_t len)
{
	/* Bare LF line ends are accepted, as RFC 9112 §2.2 allows. */
	for (size_t i = 0; i < len; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < len && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* next_line returns the end of the line starting at p (before CR LF / LF). */
static const uint8_t *line_end(const uint8_t *p, const uint8_t *end, const uint8_t **next)
{
	const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
	if (nl == NULL)
		nl = end;
	*next = nl < end ? nl + 1 : end;
	return nl > p && nl[-1] == '\r' ? nl - 1 : nl;
}

static int parse_request_line(struct kpx_http_req *req, const uint8_t *p, const uint8_t *e)
{
	const uint8_t *m = p;
	while (p < e && is_tchar(*p))
		p++;
	if (p == m || p >= e || *p != ' ')
		return -400;
	req->head = (size_t)(p - m) == 4 && memcmp(m, "HEAD", 4) == 0;
	const uint8_t *target = ++p;
	while (p<e && * p> ' ' && *p < 0x7f)
		p++;
	if (p == target || p >= e || *p != ' ')
		return -400;
	int b = kpx_http_bytes_path((const char *)target, (size_t)(p - target), &req->nbytes);
	if (b < 0)
		return -400;
	req->bytes = b > 0;
	p++;
	if (e - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' || p[5] > '9' ||
	    p[7] < '0' || p[7] > '9')
		return -400;
	if (p[5] != '1')
		return -505;
	req->minor = p[7] - '0';
	return 0;
}

/* has_token tells whether a comma-separated field value lists tok (case-insensitive). */
static bool has_token(const uint8_t *v, const uint8_t *e, const char *tok)
{
	size_t n = strlen(tok);
	while (v < e) {
		while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
			v++;
		const uint8_t *s = v;
		while (v < e && *v != ',')
			v++;
		const uint8_t *t = v;
		while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - s) == n && strncasecmp((const char *)s, tok, n) == 0)
			return true;
	}
	return false;
}

static bool name_is(const uint8_t *n, size_t len, const char *want)
{
	return len == strlen(want) && strncasecmp((const char *)n, want, len) == 0;
}

int kpx_http_parse(struct kpx_http_req *req, const uint8_t *p, size_t len)
{
	const uint8_t *end, *line, *next, *e;
	bool conn_close = false, conn_keep = false, have_cl = false;
	unsigned long long cl = 0;
	int rc;

	memset(req, 0, sizeof(*req));
	/* RFC 9112 §2.2: ignore empty lines before the request line (old clients after a POST). */
	while (len > 0 && (p[0] == '\r' || p[0] == '\n')) {
		if (p[0] == '\r' && len > 1 && p[1] != '\n')
			return -400;
		p++;
		len--;
		if (++req->len > KPX_HTTP_MAX_HEAD)
			return -400;
	}
	size_t head = find_head_end(p, len);
	if (head == 0)
		return len > KPX_HTTP_MAX_HEAD ? -431 : 0;
	if (head > KPX_HTTP_MAX_HEAD)
		return -431;
	end = p + head;
	line = p;
	e = line_end(line, end, &next);
	if ((rc = parse_request_line(req, line, e)) < 0)
		return rc;
	for (line = next; line < end; line = next) {
		e = line_end(line, end, &next);
		if (e == line)
			break; /* the blank line */
		const uint8_t *colon = line;
		while (colon < e && is_tchar(*colon))
			colon++;
		/* No name, no colon, or whitespace before it (RFC 9112 §5.1: reject). */
		if (colon == line || colon >= e || *colon != ':')
			return -400;
		size_t nlen = (size_t)(colon - line);
		const uint8_t *v = colon + 1, *ve = e;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		for (const uint8_t *c = v; c < ve; c++)
			if ((*c < ' ' && *c != '\t') || *c == 0x7f)
				return -400;
		if (name_is(line, nlen, "connection")) {
			conn_close |= has_token(v, ve, "close");
			conn_keep |= has_token(v, ve, "keep-alive");
		} else if (name_is(line, nlen, "content-length")) {
			unsigned long long x = 0;
			if (v == ve)
				return -400;
			for (const uint8_t *c = v; c < ve; c++) {
				if (*c < '0' || *c > '9' || x > KPX_HTTP_MAX_BODY * 10ull)
					return -400;
				x = x * 10 + (unsigned)(*c - '0');
			}
			/* Repeated lengths must agree (RFC 9112 §6.3). */
			if (have_cl && x != cl)
				return -400;
			have_cl = true;
			cl = x;
		} else if (name_is(line, nlen, "transfer-encoding")) {
			return -501;
		}
	}
	if (cl > KPX_HTTP_MAX_BODY)
		return -413;
	if (head + cl > len)
		return 0;
	req->len += head + (size_t)cl;
	req->keep_alive = req->minor >= 1 ? !conn_close : (conn_keep && !conn_close);
	return 1;
}

int kpx_http_bytes_path(const char *target, size_t len, uint64_t *n)
{
	if (len < 7 || memcmp(target, "/bytes/", 7) != 0)
		return 0;
	uint64_t v = 0;
	if (len == 7)
		return -1;
	for (size_t i = 7; i < len; i++) {
		if (target[i] < '0' || target[i] > '9' || v > KPX_HTTP_BYTES_MAX)
			return -1;
		v = v * 10 + (uint64_t)(target[i] - '0');
	}
	if (v > KPX_HTTP_BYTES_MAX)
		return -1;
	*n = v;
	return 1;
}

int kpx_http_fill(struct kw_buf *out, uint64_t *left, size_t max)
{
	/* Lines of 64 letters: readable in a terminal, the same over TCP and HTTP/3. */
	static const char line[] =
	    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk\n";
	size_t n = *left < max ? (size_t)*left : max;
	if (kw_buf_reserve(out, n) < 0)
		return -ENOMEM;
	uint8_t *t = kw_buf_tail(out);
	for (size_t i = 0; i < n; i += 64)
		memcpy(t + i, line, n - i < 64 ? n - i : 64);
	out->len += n;
	*left -= n;
	return 0;
}

int kpx_http_respond(struct kw_buf *out, const struct kpx_http_req *req, const char *body,
                     bool close)
{
	return kpx_http_respond_ex(out, req, body, close, NULL);
}

int kpx_http_respond_ex(struct kw_buf *out, const struct kpx_http_req *req, const char *body,
                        bool close, const char *extra)
{
	char hdr[512];
	size_t blen = strlen(body);
	const char *type = "text/plain";
	unsigned long long clen = blen;
	if (req->bytes) {
		type = "application/octet-stream";
		clen = req->nbytes;
	}
	const char *conn = "";

	if (close || !req->keep_alive)
		conn = "Connection: close\r\n";
	else if (req->minor == 0)
		conn = "Connection: keep-alive\r\n";
	int n = snprintf(hdr, sizeof(hdr),
	                 "HTTP/1.1 200 OK\r\nServer: keyway-proxy\r\nContent-Type: %s\r\n"
	                 "Content-Length: %llu\r\n%s%s\r\n",
	                 type, clen, conn, extra != NULL ? extra : "");
	if (n < 0 || (size_t)n >= sizeof(hdr))
		return -EINVAL;
	if (kw_buf_append(out, hdr, (size_t)n) < 0)
		return -ENOMEM;
	return req->head || req->bytes ? 0 : kw_buf_append(out, body, blen);
}

int kpx_http_error(struct kw_buf *out, int status)
{
	const char *reason;
	switch (status) {
	case 413:
		reason = "Content Too Large";
		break;
	case 431:
		reason = "Request Header Fields Too Large";
		break;
	case 501:
		reason = "Not Implemented";
		break;
	case 505:
		reason = "HTTP Version Not Supported";
		break;
	default:
		status = 400;
		reason = "Bad Request";
	}
	char buf[256];
	int n = snprintf(buf, sizeof(buf),
	                 "HTTP/1.1 %d %s\r\nServer: keyway-proxy\r\nContent-Length: 0\r\n"
	                 "Connection: close\r\n\r\n",
	                 status, reason);
	return kw_buf_append(out, buf, (size_t)n);
}
