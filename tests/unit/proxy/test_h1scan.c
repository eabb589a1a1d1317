/*
 * test_h1scan.c - the relay's HTTP/1.1 framing scanner: responses of every
 * framing on one keep-alive stream (Content-Length, chunked with extensions
 * and trailers, HEAD, 1xx, 204/304, close-delimited), each split at every
 * byte boundary and fed one byte at a time, with the Alt-Svc insertion the
 * relay does; requests (bodies, HEAD, CONNECT); malformed input.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "h1scan.h"

#define ALT "Alt-Svc: h3=\":443\"\r\n"

/*
 * relay scans s as a response stream fed in pieces (cut: each piece's
 * length; 0: all at once at split), answering kinds[] in order, and writes
 * to out the stream with ALT inserted into every final head without one.
 * Returns the number of insertions, or -1 on a scan error.
 */
static int relay(const char *s, const enum kpx_h1_kind *kinds, size_t split, size_t step, char *out)
{
	struct kpx_h1 h;
	size_t n = strlen(s), pos = 0, o = 0, k = 0;
	int ins = 0;
	kpx_h1_init(&h, true);
	while (pos < n) {
		size_t end = step ? pos + step : (pos < split ? split : n);
		if (end > n)
			end = n;
		while (pos < end) {
			size_t used;
			int rc = kpx_h1_feed(&h, (const uint8_t *)s + pos, end - pos, &used);
			if (rc < 0)
				return -1;
			memcpy(out + o, s + pos, used);
			o += used;
			pos += used;
			if (rc == KPX_H1_HEAD && h.status >= 200) {
				h.answers = kinds[k++];
				if (!h.has_alt_svc) {
					memcpy(out + o, ALT, strlen(ALT));
					o += strlen(ALT);
					ins++;
				}
			}
		}
	}
	out[o] = 0;
	return ins;
}

static const char stream[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    "HTTP/1.1 100 Continue\r\n\r\n"
    "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    "3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n"
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" /* answers HEAD: no body */
    "HTTP/1.1 204 No Content\r\n\r\n"
    "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
    "HTTP/1.1 200 OK\r\nalt-svc: clear\r\nContent-Length: 0\r\n\r\n"
    "HTTP/1.1 200 OK\nContent-Length: 2\n\nok" /* bare LF */
    "HTTP/1.1 200 OK\r\n\r\nuntil the close HTTP/1.1 200 OK\r\n\r\n";

static const char want[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" ALT "\r\nhello"
                           "HTTP/1.1 100 Continue\r\n\r\n"
                           "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" ALT "\r\n"
                           "3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n"
                           "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n" ALT "\r\n"
                           "HTTP/1.1 204 No Content\r\n" ALT "\r\n"
                           "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n" ALT "\r\n"
                           "HTTP/1.1 200 OK\r\nalt-svc: clear\r\nContent-Length: 0\r\n\r\n"
                           "HTTP/1.1 200 OK\nContent-Length: 2\n" ALT "\nok"
                           "HTTP/1.1 200 OK\r\n" ALT "\r\nuntil the close HTTP/1.1 200 OK\r\n\r\n";

static const enum kpx_h1_kind kinds[] = {
    KPX_H1_REQ_OTHER, KPX_H1_REQ_OTHER, KPX_H1_REQ_HEAD,  KPX_H1_REQ_OTHER, KPX_H1_REQ_OTHER,
    KPX_H1_REQ_OTHER, KPX_H1_REQ_OTHER, KPX_H1_REQ_OTHER, KPX_H1_REQ_OTHER,
};

static int scan(bool response, const char *s)
{
	struct kpx_h1 h;
	size_t used, n = strlen(s), pos = 0;
	int rc;
	kpx_h1_init(&h, response);
	while ((rc = kpx_h1_feed(&h, (const uint8_t *)s + pos, n - pos, &used)) == KPX_H1_HEAD)
		pos += used;
	return rc;
}

static void requests(void)
{
	/* Bodies are skipped, HEAD and CONNECT are told at each head. */
	const char *s = "\r\nPOST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nHEADGET / HTTP/1.1\r\n"
	                "Transfer-Encoding: chunked\r\n\r\n4\r\nHEAD\r\n0\r\n\r\n"
	                "HEAD /h HTTP/1.1\r\n\r\nCONNECT x:1 HTTP/1.1\r\n\r\n\x16\x03\x01";
	enum kpx_h1_kind seen[8];
	for (size_t step = 1; step <= strlen(s); step++) {
		struct kpx_h1 h;
		size_t pos = 0, k = 0, n = strlen(s);
		kpx_h1_init(&h, false);
		while (pos < n) {
			size_t end = pos + step < n ? pos + step : n, used;
			while (pos < end) {
				int rc =
				    kpx_h1_feed(&h, (const uint8_t *)s + pos, end - pos, &used);
				CHECK(rc >= 0);
				if (rc < 0)
					return;
				pos += used;
				if (rc == KPX_H1_HEAD && k < 8)
					seen[k++] = h.kind;
			}
		}
		CHECK_EQ(k, 4);
		CHECK(seen[0] == KPX_H1_REQ_OTHER && seen[1] == KPX_H1_REQ_OTHER);
		CHECK(seen[2] == KPX_H1_REQ_HEAD && seen[3] == KPX_H1_REQ_CONNECT);
		CHECK(kpx_h1_tunnel(&h));
	}
}

static void malformed(void)
{
	CHECK_EQ(scan(true, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), KPX_H1_MORE);
	CHECK_EQ(scan(true, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxgarbage\r\n\r\n"),
	         KPX_H1_ERROR);
	CHECK_EQ(scan(true, "SSH-2.0-x\r\n"), KPX_H1_ERROR);
	/* An error tells how many bytes came before the wrong one. */
	struct kpx_h1 h;
	size_t used = 99;
	kpx_h1_init(&h, true);
	CHECK_EQ(kpx_h1_feed(&h, (const uint8_t *)"HTTP/1.1 200 OK\r\n\r\n", 17, &used),
	         KPX_H1_MORE);
	CHECK_EQ(kpx_h1_feed(&h, (const uint8_t *)"xx\r\n", 4, &used), KPX_H1_ERROR);
	CHECK_EQ(used, 3);
	CHECK_EQ(scan(true, "HTTP/1.1 2000 OK\r\n"), KPX_H1_ERROR);
	CHECK_EQ(scan(true, "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"), KPX_H1_ERROR);
	CHECK_EQ(scan(true, "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"), KPX_H1_ERROR);
	CHECK_EQ(scan(true, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
	         KPX_H1_ERROR);
	CHECK_EQ(scan(true, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
	         KPX_H1_ERROR);
	CHECK_EQ(scan(true, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n"),
	         KPX_H1_ERROR);
	CHECK_EQ(scan(true, "HTTP/1.1 200 OK\r\n\r\r\n"), KPX_H1_ERROR);
	CHECK_EQ(scan(false, "GET /\r\n\r\n"), KPX_H1_ERROR);
	/* 101: the rest is opaque, never an error. */
	CHECK_EQ(scan(true, "HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n\x00\xff garbage"),
	         KPX_H1_MORE);
	/* A long field line that is not a framing field is skipped whole. */
	char big[2048] = "HTTP/1.1 200 OK\r\nX-Long: ";
	memset(big + strlen(big), 'a', 1000);
	strcat(big, "\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n");
	CHECK_EQ(scan(true, big), KPX_H1_MORE);
}

int main(void)
{
	static char out[8192];
	size_t n = strlen(stream);

	CHECK_EQ(relay(stream, kinds, 0, 0, out), 7);
	CHECK(strcmp(out, want) == 0);
	for (size_t split = 1; split < n; split++) {
		CHECK_EQ(relay(stream, kinds, split, 0, out), 7);
		CHECK(strcmp(out, want) == 0);
	}
	CHECK_EQ(relay(stream, kinds, 0, 1, out), 7);
	CHECK(strcmp(out, want) == 0);
	requests();
	malformed();
	CHECK_DONE();
}
