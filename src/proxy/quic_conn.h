/*
 * quic_conn.h - one QUIC connection of keyway-proxy: an ngtcp2 server
 * connection whose handshake runs on GnuTLS (the certificate set's
 * credentials), HTTP/3 on nghttp3 over it, answering like --respond does
 * over TCP (and GET /bytes/N), its packets written in GSO batches.
 */
#ifndef KPX_QUIC_CONN_H
#define KPX_QUIC_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ngtcp2/ngtcp2.h>

#include "quic_listen.h"

struct kpx_qconn;

/*
 * kpx_qconn_accept makes a connection for the client Initial hd (as
 * ngtcp2_accept decoded it) that arrived from peer, then reads the datagram
 * data into it; odcid: the client's first DCID when hd came back with our
 * Retry token (NULL: no Retry). The connection holds a --max-connections
 * slot the caller took (given back at its end, or here on failure).
 */
void kpx_qconn_accept(struct kpx_qep *ep, const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                      const uint8_t *data, size_t len, const struct sockaddr *peer,
                      socklen_t peer_len);
/* kpx_qconn_read hands a datagram to c; it may close c. Writing waits for kpx_qconn_flush. */
void kpx_qconn_read(struct kpx_qconn *c, const uint8_t *data, size_t len,
                    const struct sockaddr *peer, socklen_t peer_len);
/*
 * kpx_qconn_rx_batchable is c's engine receive state when the receive
 * batch may open packets for it now (its handshake completed on the loop
 * and no handshake step runs), else NULL.
 */
struct kpx_qtx_conn *kpx_qconn_rx_batchable(struct kpx_qconn *c);
/* kpx_qconn_flush writes what c has to send (ep->dirty); it may close c. */
void kpx_qconn_flush(struct kpx_qconn *c);
/* kpx_qconn_drain sends GOAWAY and closes c once its open requests are answered (now if
 * there are none). */
void kpx_qconn_drain(struct kpx_qconn *c);
/* kpx_qconn_close sends CONNECTION_CLOSE (NO_ERROR) and frees c. */
void kpx_qconn_close(struct kpx_qconn *c);
/*
 * kpx_qconn_hs_collect takes back the connections whose handshake step
 * finished on a handshake thread (ep->hs): their later datagrams are read
 * and they are flushed as usual; on ep's loop, before it sleeps.
 */
void kpx_qconn_hs_collect(struct kpx_qep *ep);
/* kpx_qconn_of is the connection on ep->conns or ep->dirty at node l. */
struct kpx_qconn *kpx_qconn_of(struct kw_list *l, bool dirty);

/* ---- for quic_relay.c ---- */

struct kpx_qrelay;
struct nghttp3_conn;
/* The HTTP/3 and QUIC connections of c, its worker. */
struct nghttp3_conn *kpx_qconn_h3(struct kpx_qconn *c);
ngtcp2_conn *kpx_qconn_ngtcp2(struct kpx_qconn *c);
struct kpx_worker *kpx_qconn_worker(struct kpx_qconn *c);
/* kpx_qconn_wake: c has something to write (a flush before the loop sleeps). */
void kpx_qconn_wake(struct kpx_qconn *c);
struct kpx_pp2_info;
/* kpx_qconn_pp2_info fills what a PROXY v2 header says of c (strings owned by c's session,
 * sni_buf holding the server name). */
void kpx_qconn_pp2_info(struct kpx_qconn *c, struct kpx_pp2_info *in, char *sni_buf,
                        size_t sni_len);
/* kpx_qconn_count_request counts an answered request for c's access log line. */
void kpx_qconn_count_request(struct kpx_qconn *c);
/* kpx_qconn_stream_relay is the relay of a request stream (nghttp3's stream user data). */
struct kpx_qrelay *kpx_qconn_stream_relay(void *stream_user_data);

#endif
