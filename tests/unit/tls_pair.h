/*
 * tls_pair.h - a TLS server and client SSL joined by a non-blocking
 * socketpair, handshaking in one thread by stepping each side in turn.
 */
#ifndef KW_TEST_TLS_PAIR_H
#define KW_TEST_TLS_PAIR_H

#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "check.h"

struct tls_pair {
	SSL *server, *client;
	int fd[2];
	bool server_done, client_done; /* handshake completed on that side */
};

/* tls_pair_attach joins server and client (owned by p from now on), not yet handshaking. */
static inline void tls_pair_attach(struct tls_pair *p, SSL *server, SSL *client)
{
	memset(p, 0, sizeof(*p));
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fd) == 0);
	p->server = server;
	p->client = client;
	CHECK(p->server != NULL && p->client != NULL);
	SSL_set_fd(p->server, p->fd[0]);
	SSL_set_fd(p->client, p->fd[1]);
	SSL_set_accept_state(p->server);
	SSL_set_connect_state(p->client);
}

/* tls_pair_open makes the two SSLs (not yet handshaking; set SNI etc. on them now). */
static inline void tls_pair_open(struct tls_pair *p, SSL_CTX *sctx, SSL_CTX *cctx)
{
	tls_pair_attach(p, SSL_new(sctx), SSL_new(cctx));
}

/* tls_pair_step advances one side: 1 done, 0 wants I/O, -1 failed. */
static inline int tls_pair_step(SSL *s, bool *done)
{
	if (*done)
		return 1;
	int r = SSL_do_handshake(s);
	if (r == 1) {
		*done = true;
		return 1;
	}
	int e = SSL_get_error(s, r);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* tls_pair_handshake runs both sides until both are done or one fails; true if both done. */
static inline bool tls_pair_handshake(struct tls_pair *p)
{
	int sr = 0, cr = 0;
	for (int i = 0; i < 100 && sr >= 0 && cr >= 0 && !(p->server_done && p->client_done); i++) {
		cr = tls_pair_step(p->client, &p->client_done);
		sr = tls_pair_step(p->server, &p->server_done);
	}
	ERR_clear_error();
	return p->server_done && p->client_done;
}

static inline void tls_pair_close(struct tls_pair *p)
{
	SSL_free(p->server);
	SSL_free(p->client);
	close(p->fd[0]);
	close(p->fd[1]);
}

#endif
