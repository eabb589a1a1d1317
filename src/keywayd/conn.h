/*
 * conn.h - one client connection of a keywayd worker: mutual TLS over TCP or
 * plain over the Unix socket. Everything readable is read, every complete
 * frame answered, and the batch of responses written at once.
 */
#ifndef KEYWAYD_CONN_H
#define KEYWAYD_CONN_H

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "metrics.h"

struct kwd_worker;
struct kwd_conn;

/*
 * kwd_conn_bio_method creates the BIO method that connects an SSL object to
 * a connection's buffers (one per process). NULL on allocation failure.
 */
BIO_METHOD *kwd_conn_bio_method(void);

/*
 * kwd_conn_open takes ownership of the accepted, non-blocking fd and starts
 * serving it in worker w. ctx is the TLS context for TCP connections (NULL
 * for the Unix socket). On failure the fd is closed and -errno returned.
 */
int kwd_conn_open(struct kwd_worker *w, int fd, enum kwd_transport transport, SSL_CTX *ctx,
                  const char *peer);

/*
 * kwd_conn_drain stops reading new requests once what the peer already sent
 * is answered, then closes the connection cleanly. It may close c at once.
 */
void kwd_conn_drain(struct kwd_conn *c);

/* kwd_conn_abort closes c now without flushing (drain deadline, shutdown). */
void kwd_conn_abort(struct kwd_conn *c);

/* kwd_conn_next walks a worker's connection list. */
struct kwd_conn *kwd_conn_next(const struct kwd_conn *c);

#endif
