/*
 * test_http.c - the responder's request parser: persistence rules for 1.0
 * and 1.1, pipelined requests, bodies, incomplete input at every byte, and
 * each error status.
 */
#include <string.h>

#include "check.h"
#include "http.h"

static int parse(const char *s, struct kpx_http_req *r)
{
	return kpx_http_parse(r, (const uint8_t *)s, strlen(s));
}

int main(void)
{
	struct kpx_http_req r;

	CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 1);
	CHECK(r.keep_alive && r.minor == 1 && !r.head);
	CHECK_EQ(r.len, 27);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &r), 1);
	CHECK(!r.keep_alive);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n", &r), 1);
	CHECK(!r.keep_alive);
	CHECK_EQ(parse("GET / HTTP/1.0\r\n\r\n", &r), 1);
	CHECK(!r.keep_alive && r.minor == 0);
	CHECK_EQ(parse("GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n", &r), 1);
	CHECK(r.keep_alive);
	CHECK_EQ(parse("HEAD /x?y=1 HTTP/1.1\n\n", &r), 1); /* bare LF */
	CHECK(r.head);
	CHECK_EQ(parse("\r\nGET / HTTP/1.1\r\n\r\n", &r), 1); /* leading empty line */
	CHECK_EQ(r.len, 20);

	/* Pipelined: two requests back to back, the first with a body. */
	const char *two =
	    "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n";
	CHECK_EQ(parse(two, &r), 1);
	CHECK_EQ(r.len, 44);
	CHECK_EQ(parse(two + r.len, &r), 1);
	CHECK_EQ(r.len, 19);

	/* Every proper prefix is incomplete, never an error. */
	for (size_t n = 0; n < 44; n++)
		CHECK_EQ(kpx_http_parse(&r, (const uint8_t *)two, n), 0);

	/* Errors. */
	CHECK_EQ(parse("\x16\x03\x01\x02\x10\x01\x7f\x01\xfc\x03\x03\r\n\r\n", &r), -400);
	CHECK_EQ(parse("GET /\r\n\r\n", &r), -400);
	CHECK_EQ(parse("GET  / HTTP/1.1\r\n\r\n", &r), -400);
	CHECK_EQ(parse("GET / HTTP/2.0\r\n\r\n", &r), -505);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", &r), -400);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &r), -400);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", &r), -400);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &r),
	         -400);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", &r), -400);
	CHECK_EQ(parse("GET / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", &r), -413);
	CHECK_EQ(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r), -501);
	static uint8_t big[KPX_HTTP_MAX_HEAD + 100];
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memset(big + 19, 'a', sizeof(big) - 19);
	CHECK_EQ(kpx_http_parse(&r, big, sizeof(big)), -431);
	CHECK_EQ(kpx_http_parse(&r, big, 4000), 0);
	memset(big, '\n', sizeof(big));
	CHECK_EQ(kpx_http_parse(&r, big, sizeof(big)), -400);

	/* Responses. */
	struct kw_buf out = KW_BUF_INIT;
	CHECK_EQ(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r), 1);
	CHECK_EQ(kpx_http_respond(&out, &r, "ok\n", false), 0);
	kw_buf_append(&out, "", 1); /* for strstr */
	CHECK(strstr((const char *)kw_buf_head(&out), "HTTP/1.1 200 OK\r\n") != NULL);
	CHECK(strstr((const char *)kw_buf_head(&out),
	             "Content-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n") != NULL);
	kw_buf_reset(&out);
	CHECK_EQ(kpx_http_respond(&out, &r, "ok\n", true), 0);
	kw_buf_append(&out, "", 1);
	CHECK(strstr((const char *)kw_buf_head(&out), "Connection: close\r\n") != NULL);
	kw_buf_reset(&out);
	CHECK_EQ(parse("HEAD / HTTP/1.1\r\n\r\n", &r), 1);
	CHECK_EQ(kpx_http_respond(&out, &r, "ok\n", false), 0);
	CHECK(kw_buf_unread(&out) > 4 &&
	      memcmp(kw_buf_head(&out) + kw_buf_unread(&out) - 4, "\r\n\r\n", 4) == 0);
	kw_buf_reset(&out);
	CHECK_EQ(kpx_http_error(&out, 431), 0);
	CHECK(memcmp(kw_buf_head(&out), "HTTP/1.1 431 ", 13) == 0);
	kw_buf_reset(&out);

	/* /bytes/N: the head says N bytes of octets; the caller generates the body. */
	CHECK_EQ(parse("GET /bytes/1000 HTTP/1.1\r\n\r\n", &r), 1);
	CHECK(r.bytes && r.nbytes == 1000);
	CHECK_EQ(kpx_http_respond_ex(&out, &r, "ok\n", false, "Alt-Svc: h3=\":443\"\r\n"), 0);
	kw_buf_append(&out, "", 1);
	CHECK(strstr((const char *)kw_buf_head(&out),
	             "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n") != NULL);
	CHECK(strstr((const char *)kw_buf_head(&out), "Alt-Svc: h3=\":443\"\r\n\r\n") != NULL);
	kw_buf_reset(&out);
	uint64_t left = 100;
	CHECK_EQ(kpx_http_fill(&out, &left, 64), 0);
	CHECK(left == 36 && kw_buf_unread(&out) == 64 && kw_buf_head(&out)[63] == '\n' &&
	      kw_buf_head(&out)[26] == 'a');
	kw_buf_reset(&out);
	CHECK_EQ(parse("GET /bytes/1073741825 HTTP/1.1\r\n\r\n", &r), -400); /* over 1 GiB */
	CHECK_EQ(parse("GET /bytes/ HTTP/1.1\r\n\r\n", &r), -400);
	CHECK_EQ(parse("GET /bytes/1073741824 HTTP/1.1\r\n\r\n", &r), 1);
	CHECK_EQ(parse("GET /bytesx HTTP/1.1\r\n\r\n", &r), 1);
	CHECK(!r.bytes);
	kw_buf_cleanup(&out);
	CHECK_DONE();
}
