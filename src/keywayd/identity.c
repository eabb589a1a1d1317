/* identity.c - a client's identity from its certificate or its socket (see identity.h). */
#include "identity.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* spki_digest is SHA-256 over the DER SubjectPublicKeyInfo of cert; 0 or -1. */
static int spki_digest(X509 *cert, uint8_t out[KWD_SPKI_LEN])
{
	unsigned char *der = NULL;
	int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	if (len <= 0)
		return -1;
	unsigned int mdlen = 0;
	int ok = EVP_Digest(der, (size_t)len, out, &mdlen, EVP_sha256(), NULL);
	OPENSSL_free(der);
	return ok == 1 && mdlen == KWD_SPKI_LEN ? 0 : -1;
}

/* asn1_text copies an ASN1 string as a C string; NULL if it holds a NUL or on ENOMEM. */
static char *asn1_text(const ASN1_STRING *s)
{
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8, s);
	if (n < 0)
		return NULL;
	char *out = NULL;
	/* A name with an embedded NUL could match a rule for its prefix: never match. */
	if (memchr(utf8, 0, (size_t)n) == NULL)
		out = strndup((const char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	return out;
}

static char *common_name(X509 *cert)
{
	X509_NAME *subj = X509_get_subject_name(cert);
	/* The last CN is the most specific one, as verifiers pick it. */
	int i = -1, last = -1;
	while ((i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0)
		last = i;
	if (last < 0)
		return NULL;
	return asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
}

static int dns_names(struct kwd_identity *id, X509 *cert)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	int rc = 0;
	if (gens == NULL)
		return 0;
	int n = sk_GENERAL_NAME_num(gens);
	id->dns = calloc((size_t)n + 1, sizeof(*id->dns));
	if (id->dns == NULL)
		rc = -ENOMEM;
	for (int i = 0; rc == 0 && i < n; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_DNS)
			continue;
		char *s = asn1_text(g->d.dNSName);
		if (s != NULL)
			id->dns[id->ndns++] = s;
	}
	GENERAL_NAMES_free(gens);
	return rc;
}

/*
 * audit_value writes s into out for a key=value line: bytes that would end or
 * split the value (space, '=', '%', controls, '"') are percent-encoded.
 */
static void audit_value(char *out, size_t outlen, const char *s)
{
	size_t j = 0;
	for (; *s != '\0' && j + 4 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch <= 0x20 || ch == 0x7f || ch == '=' || ch == '%' || ch == '"')
			j += (size_t)snprintf(out + j, outlen - j, "%%%02X", ch);
		else
			out[j++] = (char)ch;
	}
	out[j] = '\0';
}

int kwd_identity_from_tls(struct kwd_identity *id, SSL *ssl)
{
	memset(id, 0, sizeof(*id));
	X509 *cert = SSL_get0_peer_certificate(ssl);
	char buf[2 * KWD_SPKI_LEN + 400];
	if (cert != NULL && spki_digest(cert, id->spki) == 0) {
		id->has_cert = true;
		id->cn = common_name(cert);
		if (dns_names(id, cert) < 0)
			goto nomem;
		size_t j = (size_t)snprintf(buf, sizeof(buf), "spki:");
		for (int i = 0; i < KWD_SPKI_LEN; i++)
			j += (size_t)snprintf(buf + j, sizeof(buf) - j, "%02x", id->spki[i]);
		if (id->cn != NULL) {
			char cn[300];
			audit_value(cn, sizeof(cn), id->cn);
			snprintf(buf + j, sizeof(buf) - j, " cn=%s", cn);
		}
	} else {
		snprintf(buf, sizeof(buf), "anonymous");
	}
	if ((id->name = strdup(buf)) == NULL)
		goto nomem;
	return 0;
nomem:
	kwd_identity_cleanup(id);
	return -ENOMEM;
}

int kwd_identity_from_unix(struct kwd_identity *id, int fd)
{
	memset(id, 0, sizeof(*id));
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return -errno;
	id->has_uid = true;
	id->uid = cred.uid;
	char buf[32];
	snprintf(buf, sizeof(buf), "uid:%lu", (unsigned long)cred.uid);
	if ((id->name = strdup(buf)) == NULL)
		return -ENOMEM;
	return 0;
}

void kwd_identity_cleanup(struct kwd_identity *id)
{
	free(id->cn);
	for (size_t i = 0; i < id->ndns; i++)
		free(id->dns[i]);
	free(id->dns);
	free(id->name);
	memset(id, 0, sizeof(*id));
}

bool kwd_identity_reverify(SSL *ssl, X509_STORE *store, char *why, size_t whylen)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (cert == NULL) {
		snprintf(why, whylen, "no client certificate");
		return false;
	}
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	/* On the server side the peer's chain as sent excludes its leaf. */
	if (ctx == NULL ||
	    X509_STORE_CTX_init(ctx, store, cert, SSL_get_peer_cert_chain(ssl)) != 1) {
		X509_STORE_CTX_free(ctx);
		snprintf(why, whylen, "out of memory");
		return false;
	}
	/* The purpose the handshake checked: a TLS client certificate. */
	X509_STORE_CTX_set_default(ctx, "ssl_client");
	int ok = X509_verify_cert(ctx);
	if (ok != 1)
		snprintf(why, whylen, "%s",
		         X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	return ok == 1;
}
