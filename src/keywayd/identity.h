/*
 * identity.h - who a keywayd client is, captured once per connection: when
 * its TLS handshake completes (the verified client certificate) or when it
 * is accepted on the Unix socket (the peer's uid from SO_PEERCRED). The ACL
 * (acl.h) and the audit log (audit.h) read it for every request.
 */
#ifndef KEYWAYD_IDENTITY_H
#define KEYWAYD_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#define KWD_SPKI_LEN 32 /* SHA-256 */

struct kwd_identity {
	bool has_cert;              /* a verified client certificate (TLS) */
	uint8_t spki[KWD_SPKI_LEN]; /* SHA-256 of its SubjectPublicKeyInfo, DER */
	char *cn;                   /* its subject's commonName, UTF-8; NULL if none */
	char **dns;                 /* its DNS subjectAltNames */
	size_t ndns;
	bool has_uid; /* a Unix-socket peer */
	uid_t uid;    /* its SO_PEERCRED uid */
	char *name;   /* "spki:HEX cn=NAME" or "uid:N", for the audit log; never NULL once set */
};

/*
 * kwd_identity_from_tls captures the identity of ssl's peer once its
 * handshake is done (the certificate was verified by then). A peer without a
 * certificate (not possible with --client-ca) gets an empty identity that only
 * `*` rules match. 0 or -ENOMEM.
 */
int kwd_identity_from_tls(struct kwd_identity *id, SSL *ssl);

/* kwd_identity_from_unix captures the SO_PEERCRED uid of a Unix-socket peer; 0 or -errno. */
int kwd_identity_from_unix(struct kwd_identity *id, int fd);

/* kwd_identity_cleanup frees what id holds and empties it. */
void kwd_identity_cleanup(struct kwd_identity *id);

/*
 * kwd_identity_reverify checks ssl's peer certificate (and the chain it sent)
 * again against store, as the handshake did, with store's flags (CRL checks
 * included). true if it still verifies; false with the reason in why.
 */
bool kwd_identity_reverify(SSL *ssl, X509_STORE *store, char *why, size_t whylen);

#endif
