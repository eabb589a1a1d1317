/*
 * http.h - the HTTP/1.x request parser and fixed responses of --respond.
 *
 * Enough of RFC 9112 for a correct benchmark responder: a request line and
 * header fields, HTTP/1.0 and 1.1 persistence rules (Connection: close /
 * keep-alive), request bodies framed by Content-Length (skipped), pipelined
 * requests parsed one after another from the same buffer. Everything else is
 * an error answered with a status and a close: 400 for garbage, 431 for a
 * header block over the limit, 413 for a body over the limit, 501 for a
 * Transfer-Encoding, 505 for an HTTP major version other than 1.
 */
#ifndef KPX_HTTP_H
#define KPX_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyway/buf.h"

#define KPX_HTTP_MAX_HEAD 8192  /* request line + header fields */
#define KPX_HTTP_MAX_BODY 65536 /* request body we are willing to skip */

struct kpx_http_req {
	size_t len;      /* bytes of this request, head and body: consume them */
	int minor;       /* HTTP/1.<minor> */
	bool keep_alive; /* the connection may carry another request */
	bool head;       /* HEAD: no body in the response */
};

/*
 * kpx_http_parse looks for one complete request at the start of p[0..len).
 * Returns 1 with *req filled, 0 if more bytes are needed, or minus an HTTP
 * status (-400, -413, -431, -501, -505) to answer before closing.
 */
int kpx_http_parse(struct kpx_http_req *req, const uint8_t *p, size_t len);

/*
 * kpx_http_respond appends the response to req: 200 with body (omitted for
 * HEAD) and Content-Length, and the Connection header the persistence rules
 * need. close forces "Connection: close" (e.g. --keepalive-timeout 0).
 * 0 or -ENOMEM.
 */
int kpx_http_respond(struct kw_buf *out, const struct kpx_http_req *req, const char *body,
                     bool close);

/* kpx_http_error appends an error response with status (400, 413, ...) and Connection: close. */
int kpx_http_error(struct kw_buf *out, int status);

#endif
