/*
 * respond.h - --respond: answer every HTTP/1.1 request on a connection's
 * plaintext stream with a small fixed response (keep-alive, pipelining;
 * the parser is http.c).
 *
 * The request handling (kpx_respond_serve) is bytes in, bytes out, so any
 * transport that offers a byte stream can reuse it.
 */
#ifndef KPX_RESPOND_H
#define KPX_RESPOND_H

#include <stdbool.h>
#include <stdint.h>

#include "keyway/buf.h"
#include "proxy.h"

/* No more requests are read or answered while this much output is unsent. */
#define KPX_RESPOND_HIGH_WATER 65536

/* One connection's responder. */
struct kpx_respond {
	struct kw_buf in, out;  /* request bytes not yet answered; response bytes not yet sent */
	uint64_t nreq;          /* requests answered */
	bool close_after_write; /* the last answer is queued: close once out is written */
	int error;              /* the status answered to a malformed request (0: none) */
	bool idle;              /* kept alive between requests */
	uint64_t gen_left;      /* /bytes/N: body bytes still to generate into out */
	const char *extra;      /* header lines every answer carries (Alt-Svc), or NULL */
};

/* kpx_respond_ops is the mode table the worker gives each connection under --respond. */
extern const struct kpx_mode_ops kpx_respond_ops;

/*
 * kpx_respond_serve answers every complete request at the head of r->in
 * into r->out, until the output reaches KPX_RESPOND_HIGH_WATER or an answer
 * is the last: one that closes (the request asks for it, or !keep, e.g.
 * --keepalive-timeout 0 or a stopping worker) or an error answer to a
 * malformed request (r->error set). Answered requests are consumed from
 * r->in (all of it after the last answer) and counted in r->nreq and
 * *answered. A /bytes/N answer leaves its body to kpx_respond_fill and
 * stops answering until it is all out; the rest is counted in r->nreq and
 * *answered. body is the response body. 0, or -ENOMEM (nothing more
 * answered; *answered still counts what was).
 */
int kpx_respond_serve(struct kpx_respond *r, const char *body, bool keep, unsigned *answered);
/* kpx_respond_fill tops r->out up from a /bytes/N body still to generate. 0 or -ENOMEM. */
int kpx_respond_fill(struct kpx_respond *r);

#endif
