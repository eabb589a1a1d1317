/*
 * pki.h - a throwaway PKI for the TLS tests: keys, certificates signed by a
 * test CA, and the PEM files a test's contexts load.
 */
#ifndef KW_TEST_PKI_H
#define KW_TEST_PKI_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "check.h"

static inline EVP_PKEY *pki_genkey(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static inline void pki_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v;
	X509V3_set_ctx_nodb(&v);
	X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
	CHECK(e != NULL);
	if (e != NULL) {
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
}

/*
 * pki_mkcert makes a certificate for key named cn, signed by issuer's key (a
 * self-signed CA when issuer is NULL), with the subjectAltName san if not NULL.
 */
static inline X509 *pki_mkcert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                               const char *san)
{
	static long serial = 1;
	X509 *x = X509_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	pki_add_ext(x, issuer ? issuer : x, NID_basic_constraints,
	            issuer ? "critical,CA:FALSE" : "critical,CA:TRUE");
	if (issuer == NULL)
		pki_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	pki_add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
	if (san != NULL)
		pki_add_ext(x, issuer, NID_subject_alt_name, san);
	X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
	return x;
}

/* Writes DIR/NAME holding x (or, if x is NULL, the private key k); mode 0 leaves the
 * file's mode as created. */
static inline void fixture_write_pem(const char *dir, const char *name, X509 *x, EVP_PKEY *k,
                                     mode_t mode)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	if (x != NULL)
		CHECK(PEM_write_X509(f, x) == 1);
	else
		CHECK(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
	fclose(f);
	if (mode != 0)
		chmod(path, mode);
}

/*
 * pki_issue makes a key and a certificate for it named cn (with san, if not
 * NULL) issued by ca, and writes them to dir/NAME.pem and dir/NAME.key (0600).
 */
static inline void pki_issue(const char *dir, const char *name, const char *cn, X509 *ca,
                             EVP_PKEY *ca_key, const char *san)
{
	char file[300];
	EVP_PKEY *k = pki_genkey();
	X509 *x = pki_mkcert(k, cn, ca, ca_key, san);

	snprintf(file, sizeof(file), "%s.pem", name);
	fixture_write_pem(dir, file, x, NULL, 0);
	snprintf(file, sizeof(file), "%s.key", name);
	fixture_write_pem(dir, file, NULL, k, 0600);
	X509_free(x);
	EVP_PKEY_free(k);
}

/*
 * pki_make writes into dir: ca.pem (the test CA, its key in ca.key),
 * server.pem/server.key (for 127.0.0.1 and keyserver.test),
 * client.pem/client.key (both issued by the CA) and other-ca.pem (an
 * unrelated CA); further certificates may be issued with pki_issue.
 */
static inline void pki_make(const char *dir)
{
	EVP_PKEY *cak = pki_genkey(), *ok = pki_genkey();
	X509 *ca = pki_mkcert(cak, "test CA", NULL, NULL, NULL);
	X509 *other = pki_mkcert(ok, "other CA", NULL, NULL, NULL);

	fixture_write_pem(dir, "ca.pem", ca, NULL, 0);
	fixture_write_pem(dir, "ca.key", NULL, cak, 0600);
	fixture_write_pem(dir, "other-ca.pem", other, NULL, 0);
	pki_issue(dir, "server", "keyserver", ca, cak, "IP:127.0.0.1,DNS:keyserver.test");
	pki_issue(dir, "client", "client", ca, cak, NULL);
	X509_free(ca);
	X509_free(other);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(ok);
}

/* pki_make_tmp makes a private temporary directory holding pki_make's files (free it). */
static inline char *pki_make_tmp(void)
{
	char tmpl[] = "/tmp/kwpki-XXXXXX";
	char *d = mkdtemp(tmpl) != NULL ? strdup(tmpl) : NULL;
	if (d != NULL)
		pki_make(d);
	return d;
}

#endif
