/*
 * test_respond.c - --respond's request handling, bytes in and bytes out:
 * pipelined requests answered in order and consumed, a partial request
 * left for later, the request or the server ending keep-alive, an error
 * answer that closes and drops what follows, and the output high-water
 * mark holding requests back until the answers are written.
 */
#include <string.h>

#include "check.h"
#include "respond.h"

static const char req11[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

static void feed(struct kpx_respond *r, const char *s)
{
	CHECK_EQ(kw_buf_append(&r->in, s, strlen(s)), 0);
}

/* count how many times needle occurs in b's unread bytes. */
static int count(const struct kw_buf *b, const char *needle)
{
	int n = 0;
	size_t len = kw_buf_unread(b), nl = strlen(needle);
	const uint8_t *p = kw_buf_head(b);
	for (size_t i = 0; i + nl <= len; i++)
		n += memcmp(p + i, needle, nl) == 0;
	return n;
}

static void done(struct kpx_respond *r)
{
	kw_buf_cleanup(&r->in);
	kw_buf_cleanup(&r->out);
	memset(r, 0, sizeof(*r));
}

static void test_pipelined(void)
{
	struct kpx_respond r = {0};
	unsigned n = 99;

	/* Two whole requests and half of a third. */
	feed(&r, req11);
	feed(&r, req11);
	feed(&r, "GET / HT");
	CHECK_EQ(kpx_respond_serve(&r, "hello\n", true, &n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(r.nreq, 2);
	CHECK_EQ(count(&r.out, "HTTP/1.1 200 OK\r\n"), 2);
	CHECK_EQ(count(&r.out, "\r\n\r\nhello\n"), 2);
	CHECK_EQ(count(&r.out, "Connection: close"), 0);
	CHECK(!r.close_after_write && r.error == 0);
	CHECK_EQ(kw_buf_unread(&r.in), 8); /* the partial request waits */

	/* Its rest arrives, asking to close: answered as the last. */
	feed(&r, "TP/1.1\r\nConnection: close\r\n\r\n");
	CHECK_EQ(kpx_respond_serve(&r, "hello\n", true, &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(r.nreq, 3);
	CHECK(r.close_after_write);
	CHECK_EQ(count(&r.out, "Connection: close\r\n"), 1);

	/* Nothing is answered after the last answer, and nothing more is kept. */
	feed(&r, req11);
	CHECK_EQ(kpx_respond_serve(&r, "hello\n", true, &n), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(kw_buf_unread(&r.in), 0);
	done(&r);
}

static void test_server_ends_keepalive(void)
{
	struct kpx_respond r = {0};
	unsigned n;

	/* !keep (--keepalive-timeout 0, or draining): the first answer closes. */
	feed(&r, req11);
	feed(&r, req11);
	CHECK_EQ(kpx_respond_serve(&r, "ok\n", false, &n), 0);
	CHECK_EQ(n, 1);
	CHECK(r.close_after_write);
	CHECK_EQ(count(&r.out, "Connection: close\r\n"), 1);
	CHECK_EQ(kw_buf_unread(&r.in), 0); /* the second is dropped */
	done(&r);

	/* HEAD: the headers without the body. */
	feed(&r, "HEAD / HTTP/1.1\r\n\r\n");
	CHECK_EQ(kpx_respond_serve(&r, "body\n", true, &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(count(&r.out, "Content-Length: 5\r\n"), 1);
	CHECK_EQ(count(&r.out, "body"), 0);
	done(&r);
}

static void test_error(void)
{
	struct kpx_respond r = {0};
	unsigned n;

	/* A good request, then garbage, then another good one: 200, 400, nothing. */
	feed(&r, req11);
	feed(&r, "BLAH\r\n\r\n");
	feed(&r, req11);
	CHECK_EQ(kpx_respond_serve(&r, "ok\n", true, &n), 0);
	CHECK_EQ(n, 1);
	CHECK_EQ(r.nreq, 1);
	CHECK_EQ(r.error, 400);
	CHECK(r.close_after_write);
	CHECK_EQ(count(&r.out, "HTTP/1.1 200 OK\r\n"), 1);
	CHECK_EQ(count(&r.out, "HTTP/1.1 400 Bad Request\r\n"), 1);
	CHECK_EQ(kw_buf_unread(&r.in), 0);
	done(&r);

	/* A Transfer-Encoding is not implemented. */
	feed(&r, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	CHECK_EQ(kpx_respond_serve(&r, "ok\n", true, &n), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(r.error, 501);
	done(&r);
}

static void test_high_water(void)
{
	struct kpx_respond r = {0};
	unsigned n, total = 0;
	char body[4096];

	/* 4 KiB answers: about 16 fit under the mark; the rest wait in the input. */
	memset(body, 'x', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	for (int i = 0; i < 40; i++)
		feed(&r, req11);
	CHECK_EQ(kpx_respond_serve(&r, body, true, &n), 0);
	CHECK(n > 0 && n < 40);
	CHECK(kw_buf_unread(&r.out) >= KPX_RESPOND_HIGH_WATER);
	CHECK(kw_buf_unread(&r.out) < KPX_RESPOND_HIGH_WATER + 4096 + 256);
	CHECK_EQ(kw_buf_unread(&r.in), (40 - n) * (sizeof(req11) - 1));
	total += n;
	/* Once the answers are written, the held-back requests are answered. */
	while (total < 40) {
		kw_buf_consume(&r.out, kw_buf_unread(&r.out));
		CHECK_EQ(kpx_respond_serve(&r, body, true, &n), 0);
		if (n == 0)
			break;
		total += n;
	}
	CHECK_EQ(total, 40);
	CHECK_EQ(r.nreq, 40);
	CHECK(!r.close_after_write);
	done(&r);
}

int main(void)
{
	test_pipelined();
	test_server_ends_keepalive();
	test_error();
	test_high_water();
	CHECK_DONE();
}
