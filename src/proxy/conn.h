/*
 * conn.h - one client connection: accepted, its TLS handshake with the
 * TLS-ASYNC state, then handed to its mode (struct kpx_mode_ops), which
 * sees the connection as plaintext byte streams through kpx_conn_recv,
 * kpx_conn_send and kpx_conn_shutdown.
 *
 * Everything here runs on the connection's worker thread, except
 * kpx_conn_async_cb and the --max-connections slot counter.
 */
#ifndef KPX_CONN_H
#define KPX_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "proxy.h"

/* kpx_conn_slots: connections holding a --max-connections slot, process-wide; any thread. */
unsigned kpx_conn_slots(void);
/* kpx_conn_take_slot takes a slot unless max (non-zero) are taken; false when refused. */
bool kpx_conn_take_slot(unsigned max);
/* kpx_conn_drop_slot gives back a slot kpx_conn_take_slot took. */
void kpx_conn_drop_slot(void);

/*
 * kpx_conn_accept makes a connection of w for the accepted socket fd, with
 * the client's address (for logs and PROXY v2), its server SSL and its mode.
 * The caller took a --max-connections slot; the connection owns fd, ssl and
 * the slot from here on. A NULL ssl (out of memory) or a failure is counted
 * and closes fd at once.
 */
void kpx_conn_accept(struct kpx_worker *w, int fd, SSL *ssl, const struct sockaddr *peer,
                     socklen_t peer_len, const struct kpx_mode_ops *mode);
/* kpx_conn_refuse answers a connection over --max-connections: counted, logged, fd closed. */
void kpx_conn_refuse(struct kpx_worker *w, int fd, const struct sockaddr *peer);

/* kpx_conn_close closes now, or as soon as a paused job has finished. */
void kpx_conn_close(struct kpx_conn *c);
/* kpx_conn_close_why records reason (the first one given wins) and closes. */
void kpx_conn_close_why(struct kpx_conn *c, enum kpx_reason reason);

/* kpx_conn_resume_waiter re-calls the paused handshake of the connection whose waiter wt is,
 * after its op completed or a retry is due (the worker's wait queue calls it). */
void kpx_conn_resume_waiter(struct kpx_waiter *wt);
/* kpx_conn_async_cb is the SSL_CTX async callback (callback mode); any thread. */
int kpx_conn_async_cb(SSL *ssl, void *arg);

/* ---- for modes ---- */

/* kpx_conn_watch sets the client socket's interest (KW_EV_*; 0: unregistered from epoll,
 * as epoll reports a hang-up whatever the mask). A failure closes c. */
void kpx_conn_watch(struct kpx_conn *c, unsigned events);
/* kpx_conn_timer_s (re)starts the connection's timer: the mode's timeout in s seconds;
 * 0, or -ENOMEM (the timer is then stopped). */
int kpx_conn_timer_s(struct kpx_conn *c, unsigned s);
/* kpx_conn_set_idle: an idle keep-alive connection is not active for the poll heuristic
 * (which runs when one goes idle); false: active again. */
void kpx_conn_set_idle(struct kpx_conn *c, bool idle);

/* What a byte-stream transfer that moved no byte ran into. */
enum kpx_xfer {
	KPX_XFER_WANT_READ = -1,  /* the transport must read from the socket first */
	KPX_XFER_WANT_WRITE = -2, /* the transport must write to the socket first */
	KPX_XFER_EOF = -3,        /* kpx_conn_recv: the client ended its direction */
	KPX_XFER_CLOSED = -4,     /* a fatal error: the connection was closed */
	KPX_XFER_FAILED = -5,     /* kpx_conn_shutdown: not sent; the connection is left open */
};

/* kpx_conn_recv reads up to len plaintext bytes from the client: how many (> 0), or a
 * kpx_xfer (an error closes c with the reason tls-error or client-close). */
ssize_t kpx_conn_recv(struct kpx_conn *c, void *buf, size_t len);
/* kpx_conn_send writes up to len plaintext bytes to the client: how many (> 0), or a
 * kpx_xfer (an error closes c with the reason client-close). */
ssize_t kpx_conn_send(struct kpx_conn *c, const void *buf, size_t len);
/* kpx_conn_shutdown ends the stream to the client (close_notify): 0, KPX_XFER_WANT_WRITE
 * (call again when writable) or KPX_XFER_FAILED. */
int kpx_conn_shutdown(struct kpx_conn *c);
/* kpx_conn_bare_eof_ends: from now on a bare EOF from the client ends its stream like
 * close_notify (KPX_XFER_EOF); truncation is then not policed. */
void kpx_conn_bare_eof_ends(struct kpx_conn *c);

/* What the handshake settled, for PROXY v2; the strings live as long as c. */
struct kpx_conn_info {
	const char *version, *cipher, *sni; /* sni NULL: none sent */
	const unsigned char *alpn;          /* the protocol chosen (NULL: none), alpn_len bytes */
	unsigned alpn_len;
};
/* kpx_conn_info fills *out from c's finished handshake. */
void kpx_conn_info(const struct kpx_conn *c, struct kpx_conn_info *out);

#endif
