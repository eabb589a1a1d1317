/*
 * fuzz_http.c - libFuzzer harness for keyway-proxy's HTTP/1.x request
 * parser (--respond). The input is what a client sends on one connection:
 * requests are parsed one after another as the server would. Each verdict
 * must be one of those http.h lists, a request must lie inside the bytes
 * seen, its answer must carry the persistence it promises, and the parser
 * must be indifferent to where a read ends: one byte fewer of a complete
 * request asks for more, never for a different request.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyway/buf.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool contains(const struct kw_buf *b, const char *s)
{
	return memmem(b->data, b->len, s, strlen(s)) != NULL;
}

static bool ends_with(const struct kw_buf *b, const char *s)
{
	size_t n = strlen(s);
	return b->len >= n && memcmp(b->data + b->len - n, s, n) == 0;
}

static void check_error(int rc)
{
	struct kw_buf out = KW_BUF_INIT;
	char status[16];

	if (rc != -400 && rc != -413 && rc != -431 && rc != -501 && rc != -505)
		abort();
	if (kpx_http_error(&out, -rc) != 0)
		abort();
	memcpy(status, "HTTP/1.1 ", 9);
	status[9] = (char)('0' + -rc / 100);
	status[10] = (char)('0' + -rc / 10 % 10);
	status[11] = (char)('0' + -rc % 10);
	status[12] = '\0';
	if (out.len < 12 || memcmp(out.data, status, 12) != 0 ||
	    !contains(&out, "Connection: close"))
		abort();
	kw_buf_cleanup(&out);
}

static void check_request(const struct kpx_http_req *req, const uint8_t *p, size_t len)
{
	struct kw_buf out = KW_BUF_INIT;
	struct kpx_http_req again;

	if (req->len == 0 || req->len > len || req->minor < 0 || req->minor > 9)
		abort();
	/* Exactly the request's bytes parse to the same request... */
	if (kpx_http_parse(&again, p, req->len) != 1 || memcmp(&again, req, sizeof(again)) != 0)
		abort();
	/* ...and one byte fewer is an incomplete request, not another one. */
	if (kpx_http_parse(&again, p, req->len - 1) != 0)
		abort();
	if (kpx_http_respond(&out, req, "ok\n", false) != 0)
		abort();
	if (contains(&out, "Connection: close") == req->keep_alive)
		abort();
	if (req->head == ends_with(&out, "\r\n\r\nok\n") ||
	    !ends_with(&out, req->head ? "\r\n\r\n" : "ok\n"))
		abort();
	kw_buf_cleanup(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kpx_http_req req;

	while (size > 0) {
		int rc = kpx_http_parse(&req, data, size);
		if (rc == 0)
			break;
		if (rc < 0) {
			check_error(rc);
			break;
		}
		if (rc != 1)
			abort();
		check_request(&req, data, size);
		if (!req.keep_alive)
			break;
		data += req.len;
		size -= req.len;
	}
	return 0;
}
