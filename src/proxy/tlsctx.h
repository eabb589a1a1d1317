/* tlsctx.h - the proxy's certificate sets, SNI and ALPN (see tlsctx.c). */
#ifndef KPX_TLSCTX_H
#define KPX_TLSCTX_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "proxy.h"

/* One loaded set of certificates and keys (one SSL_CTX per --cert/--key pair); refcounted. */
struct kpx_tls;

/*
 * kpx_tls_load loads every --cert/--key pair of o (keys as kpx_load_key
 * makes them) with o's ALPN list. NULL with the reason (file and OpenSSL's
 * words) in err.
 */
struct kpx_tls *kpx_tls_load(const struct kpx_options *o, char *err, size_t errlen);
void kpx_tls_ref(struct kpx_tls *t);
void kpx_tls_unref(struct kpx_tls *t); /* NULL ok */
size_t kpx_tls_count(const struct kpx_tls *t);
/* kpx_tls_key is the private key of t's i-th pair (owned by t), or NULL. */
EVP_PKEY *kpx_tls_key(const struct kpx_tls *t, size_t i);
/*
 * kpx_tls_refuse stops t serving its i-th certificate (--require-keys: no
 * keyserver holds its key, SKI ski_hex): SNI skips it, and a handshake that
 * would get it as the default fails. Any thread; a reload makes a new set.
 */
void kpx_tls_refuse(struct kpx_tls *t, size_t i, const char *ski_hex);

/* kpx_tls_quic_cred is t's gnutls_certificate_credentials_t for QUIC (NULL without
 * --quic-listen), owned by t: hold a reference to t while a session uses it. */
void *kpx_tls_quic_cred(const struct kpx_tls *t);
/* kpx_tls_quic_remote: a pair of t has a keyserver-held key, which GnuTLS signs with
 * synchronously (so quic_conn.c runs such handshakes on its handshake threads). */
bool kpx_tls_quic_remote(const struct kpx_tls *t);
/* kpx_tls_quic_remote_signs counts the signatures keyserver-held keys made on this thread. */
unsigned kpx_tls_quic_remote_signs(void);

/* kpx_tls_publish makes t (its reference taken over) the set new connections get. */
void kpx_tls_publish(struct kpx_tls *t);
/* kpx_tls_current is a new reference to the published set, with its generation in *gen. */
struct kpx_tls *kpx_tls_current(uint64_t *gen);
/* kpx_tls_generation changes at every publish: a cheap "is mine still current?". */
uint64_t kpx_tls_generation(void);

/* kpx_tls_ssl_new makes a server SSL on t's default context; the SSL keeps t alive. */
SSL *kpx_tls_ssl_new(struct kpx_tls *t);

/*
 * kpx_alpn_wire turns a NULL-terminated list of protocol names into ALPN
 * wire format (*out malloc'ed). 0, -ENOMEM, or -KW_ECONFIG naming the fix.
 */
int kpx_alpn_wire(char *const *names, unsigned char **out, size_t *outlen, char *err,
                  size_t errlen);

#endif
