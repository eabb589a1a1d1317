/*
 * quic_relay.h - --upstream over HTTP/3: each request stream relayed as
 * one HTTP/1.1 request on its own connection to the upstream (reuse
 * policy: none; "Connection: close" on every request, so each response
 * ends unambiguously and no upstream connection carries two clients).
 *
 * Request: the method, :path and :authority (as Host, unless the request
 * has a Host field) with the other fields minus HTTP/3's pseudo-headers and
 * the connection-specific ones of RFC 9114 §4.2; a body with its
 * Content-Length, or chunked when the client gave none. Response: the
 * status line and fields minus the connection-specific ones; the body by
 * Content-Length, chunked (decoded) or up to the upstream's close; none
 * for HEAD, 204 and 304; 1xx interim answers skipped. 502 when the
 * upstream cannot be reached or answers garbage before its head ends; a
 * reset stream (H3_INTERNAL_ERROR) when it fails after.
 *
 * Both directions stream with bounded buffers: request bytes are credited
 * to QUIC flow control only once written to the upstream, and the
 * upstream is read only while less than KPX_QRELAY_WINDOW bytes of the
 * response are unacknowledged by the client.
 */
#ifndef KPX_QUIC_RELAY_H
#define KPX_QUIC_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>

#define KPX_QRELAY_WINDOW (1u << 20)

struct kpx_pp2_info;
struct kpx_qrelay;
struct kpx_worker;

/*
 * kpx_qrelay_ops: what a relay asks of the connection its stream belongs
 * to. The connection (quic_conn.c) fills it in, so this layer never calls
 * up into the connection; ctx is the ops' argument.
 */
struct kpx_qrelay_ops {
	void *ctx;
	/* wake: the connection has something to write (a flush before the loop sleeps). */
	void (*wake)(void *ctx);
	/* count_request counts an answered request for the connection's access log line. */
	void (*count_request)(void *ctx);
};

/*
 * kpx_qrelay_conn: the connection as a relay sees it: its ops and the
 * handles it drives the stream with (they live as long as the connection,
 * which frees its relays first).
 */
struct kpx_qrelay_conn {
	struct kpx_qrelay_ops ops;
	struct kpx_worker *w;
	ngtcp2_conn *conn;
	nghttp3_conn *h3;
};

/*
 * kpx_qrelay_new starts the relay of request stream sid of qc (copied);
 * pp2: what the PROXY v2 header sent first says of the client (--send-proxy-v2;
 * NULL: none), read here. NULL when out of memory.
 */
struct kpx_qrelay *kpx_qrelay_new(const struct kpx_qrelay_conn *qc, int64_t sid,
                                  const struct kpx_pp2_info *pp2);
/*
 * The stream user data a connection gives nghttp3 for a relayed stream
 * begins with a struct kpx_qrelay *, its relay: the relay's data reader,
 * handed only that, finds itself there without asking the connection.
 */

/* kpx_qrelay_header takes one request field (token: nghttp3's QPACK token). 0 or -1. */
int kpx_qrelay_header(struct kpx_qrelay *r, int32_t token, const uint8_t *name, size_t nlen,
                      const uint8_t *value, size_t vlen);
/* kpx_qrelay_headers_done: the request head is complete (fin: and so is the request). */
int kpx_qrelay_headers_done(struct kpx_qrelay *r, bool fin);
/* kpx_qrelay_body takes request body bytes; the relay credits flow control itself. */
int kpx_qrelay_body(struct kpx_qrelay *r, const uint8_t *data, size_t len);
/* kpx_qrelay_body_end: the client's request ended. */
int kpx_qrelay_body_end(struct kpx_qrelay *r);
/* kpx_qrelay_acked: the client acknowledged n more bytes of the response body. */
void kpx_qrelay_acked(struct kpx_qrelay *r, uint64_t n);
/* kpx_qrelay_free closes the upstream connection and frees r (at the end of the loop's turn). */
void kpx_qrelay_free(struct kpx_qrelay *r);

#endif
