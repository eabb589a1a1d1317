/*
 * h1scan.h - an HTTP/1.1 message framing scanner for the TCP --upstream
 * relay: it follows requests (client to upstream) or responses (upstream to
 * client) byte by byte, without buffering, to find where each head ends.
 *
 * The relay feeds every byte once, in any split. Before the blank line that
 * ends a head, kpx_h1_feed stops (returns KPX_H1_HEAD) so the caller can see
 * the start line's facts and, for a response, insert a field at that point.
 * Framing (RFC 9112 §6.3): requests have a body only with Content-Length or
 * chunked; responses to HEAD, 1xx, 204 and 304 have none, otherwise chunked
 * (extensions and trailers skipped), Content-Length, or up to the close.
 * After a 101, a 2xx to CONNECT, or a CONNECT request the rest is opaque
 * (KPX_H1_TUNNEL) and nothing more is parsed.
 */
#ifndef KPX_H1SCAN_H
#define KPX_H1SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KPX_H1_LINE_MAX 256 /* bytes of a line kept for inspection */

enum kpx_h1_kind { KPX_H1_REQ_OTHER, KPX_H1_REQ_HEAD, KPX_H1_REQ_CONNECT };

struct kpx_h1 {
	bool response; /* scanning responses (else requests) */
	int state;     /* private: where in the message */
	uint64_t left; /* private: body or chunk bytes still to skip */
	size_t lbytes; /* private: bytes of the current line so far */
	char line[KPX_H1_LINE_MAX];
	bool head_told; /* private: KPX_H1_HEAD was returned for this blank line */
	bool have_clen, chunked, have_te;
	uint64_t clen;
	/* Facts of the head being scanned, valid when KPX_H1_HEAD is returned: */
	int status;            /* response status */
	enum kpx_h1_kind kind; /* request method class */
	bool has_alt_svc;      /* the head already has an Alt-Svc field */
	/* Set by the caller on a response's KPX_H1_HEAD: what it answers. */
	enum kpx_h1_kind answers;
};

enum {
	KPX_H1_MORE = 0, /* every byte consumed */
	KPX_H1_HEAD = 1, /* stopped before a head's blank line (*used bytes consumed) */
	KPX_H1_ERROR = -1,
};

/* kpx_h1_init starts a scanner at the start of a message. */
void kpx_h1_init(struct kpx_h1 *h, bool response);

/*
 * kpx_h1_feed scans p[0, n): KPX_H1_MORE with *used = n, KPX_H1_HEAD with
 * *used the offset of the blank line that ends a head (feed the rest again
 * after acting on it), or KPX_H1_ERROR for framing that is not HTTP/1.x (*used
 * bytes before the one found wrong).
 */
int kpx_h1_feed(struct kpx_h1 *h, const uint8_t *p, size_t n, size_t *used);

/* kpx_h1_tunnel: true once the stream became opaque (101, CONNECT). */
bool kpx_h1_tunnel(const struct kpx_h1 *h);

/* kpx_h1_set_tunnel makes the rest of the stream opaque (the other direction switched). */
void kpx_h1_set_tunnel(struct kpx_h1 *h);

#endif
