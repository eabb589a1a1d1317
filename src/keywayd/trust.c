/* trust.c - client CAs, their CRLs and no resumption (see trust.h). */
#include "trust.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/tls.h"

#define MAX_TRUST_FILE (16u << 20) /* CRLs of a large CA are megabytes, not more */

/* read_file reads path whole; 0 with *data (free it), or -errno. */
static int read_file(const char *path, char **data, size_t *len)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -errno;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			char *p = cap <= MAX_TRUST_FILE ? realloc(buf, cap) : NULL;
			if (p == NULL) {
				rc = cap <= MAX_TRUST_FILE ? -ENOMEM : -EFBIG;
				break;
			}
			buf = p;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f))
				rc = -EIO;
			break;
		}
	}
	fclose(f);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*data = buf;
	*len = n;
	return 0;
}

static STACK_OF(X509_INFO) * parse_pem(const char *data, size_t len)
{
	BIO *b = BIO_new_mem_buf(data, (int)len);
	STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	return infos;
}

/* name_of writes the one-line subject of cert. */
static void name_of(X509 *cert, char *out, size_t outlen)
{
	out[0] = '\0';
	X509_NAME_oneline(X509_get_subject_name(cert), out, (int)outlen);
}

/* covered: a CRL in infos is issued and signed by ca. */
static int covered(STACK_OF(X509_INFO) * crls, X509 *ca)
{
	for (int i = 0; i < sk_X509_INFO_num(crls); i++) {
		X509_CRL *crl = sk_X509_INFO_value(crls, i)->crl;
		if (crl != NULL &&
		    X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0 &&
		    X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
			return 1;
	}
	return 0;
}

/* time_str writes t as 2026-12-07T01:43:50Z, or "none". */
static void time_str(const ASN1_TIME *t, char *out, size_t outlen)
{
	struct tm tm;
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, outlen, "none");
}

/* current: crl is within its validity now (thisUpdate passed, nextUpdate not). */
static bool current(X509_CRL *crl)
{
	const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
	return X509_cmp_current_time(X509_CRL_get0_lastUpdate(crl)) < 0 &&
	       (next == NULL || X509_cmp_current_time(next) > 0);
}

/* has_current: another CRL of crl's issuer in crls is current (OpenSSL then uses that one). */
static bool has_current(STACK_OF(X509_INFO) * crls, X509_CRL *crl)
{
	for (int i = 0; i < sk_X509_INFO_num(crls); i++) {
		X509_CRL *o = sk_X509_INFO_value(crls, i)->crl;
		if (o != NULL && o != crl &&
		    X509_NAME_cmp(X509_CRL_get_issuer(o), X509_CRL_get_issuer(crl)) == 0 &&
		    current(o))
			return true;
	}
	return false;
}

/*
 * warn_stale warns of each CA whose CRLs are all expired or not yet valid.
 * Such a file is accepted (a CRL may be replaced before its clients notice),
 * but until it is, verification refuses every client certificate of that CA
 * -- which would otherwise show only as failed handshakes.
 */
static void warn_stale(STACK_OF(X509_INFO) * crls, const char *crl_file)
{
	for (int i = 0; i < sk_X509_INFO_num(crls); i++) {
		X509_CRL *crl = sk_X509_INFO_value(crls, i)->crl;
		if (crl == NULL || current(crl) || has_current(crls, crl))
			continue;
		char issuer[256], next[32], last[32];
		issuer[0] = '\0';
		X509_NAME_oneline(X509_CRL_get_issuer(crl), issuer, (int)sizeof(issuer));
		time_str(X509_CRL_get0_nextUpdate(crl), next, sizeof(next));
		time_str(X509_CRL_get0_lastUpdate(crl), last, sizeof(last));
		bool early = X509_cmp_current_time(X509_CRL_get0_lastUpdate(crl)) >= 0;
		kw_warn(
		    "--client-crl %s: the CRL of the CA '%s' %s (thisUpdate %s, nextUpdate "
		    "%s): every client certificate of that CA is refused until a current CRL is "
		    "loaded; fix: %s",
		    crl_file, issuer, early ? "is not valid yet" : "has expired", last, next,
		    early ? "check this host's clock and the CRL's dates"
		          : "put the CA's current CRL in the file and send SIGHUP");
	}
}

/* install_crls checks every CA of cas has a CRL in crls, then adds them all to ctx's store. */
static int install_crls(SSL_CTX *ctx, STACK_OF(X509_INFO) * cas, STACK_OF(X509_INFO) * crls,
                        const char *ca_file, const char *crl_file, char *err, size_t errlen)
{
	int ncrl = 0;
	for (int i = 0; i < sk_X509_INFO_num(crls); i++)
		ncrl += sk_X509_INFO_value(crls, i)->crl != NULL;
	if (ncrl == 0) {
		snprintf(err, errlen,
		         "--client-crl %s: no PEM CRL in it; fix: give the CRLs (-----BEGIN X509 "
		         "CRL-----) of every CA in --client-ca",
		         crl_file);
		return -KW_ECONFIG;
	}
	for (int i = 0; i < sk_X509_INFO_num(cas); i++) {
		X509 *ca = sk_X509_INFO_value(cas, i)->x509;
		if (ca == NULL || covered(crls, ca))
			continue;
		char name[256];
		name_of(ca, name, sizeof(name));
		snprintf(err, errlen,
		         "--client-crl %s: no CRL signed by the CA '%s' of --client-ca %s; fix: "
		         "add that CA's current CRL to the file (every client CA needs one)",
		         crl_file, name, ca_file);
		return -KW_ECONFIG;
	}
	X509_STORE *st = SSL_CTX_get_cert_store(ctx);
	for (int i = 0; i < sk_X509_INFO_num(crls); i++) {
		X509_CRL *crl = sk_X509_INFO_value(crls, i)->crl;
		if (crl != NULL && X509_STORE_add_crl(st, crl) != 1) {
			char why[256];
			kw_tls_err_string(why, sizeof(why));
			snprintf(err, errlen, "--client-crl %s: cannot use a CRL: %s", crl_file,
			         why);
			return -KW_ECONFIG;
		}
	}
	X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
	warn_stale(crls, crl_file);
	return 0;
}

int kwd_trust_apply(SSL_CTX *ctx, const char *ca_file, const char *crl_file,
                    uint8_t digest[KWD_TRUST_DIGEST_LEN], char *err, size_t errlen)
{
	char *ca = NULL, *crl = NULL;
	size_t calen = 0, crllen = 0;
	STACK_OF(X509_INFO) *cas = NULL, *crls = NULL;
	int rc = read_file(ca_file, &ca, &calen);
	if (rc < 0) {
		snprintf(err, errlen, "--client-ca %s: %s; fix: give the PEM CA of the clients",
		         ca_file, strerror(-rc));
		return rc;
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int mdlen = 0;
	rc = -ENOMEM;
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, ca, calen) != 1) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (crl_file != NULL) {
		if ((rc = read_file(crl_file, &crl, &crllen)) < 0) {
			snprintf(err, errlen,
			         "--client-crl %s: %s; fix: give the PEM CRLs of the client CAs",
			         crl_file, strerror(-rc));
			goto out;
		}
		cas = parse_pem(ca, calen);
		crls = parse_pem(crl, crllen);
		if (cas == NULL || crls == NULL) {
			char why[256];
			kw_tls_err_string(why, sizeof(why));
			snprintf(err, errlen, "%s %s: not PEM%s%s; fix: give PEM files",
			         cas == NULL ? "--client-ca" : "--client-crl",
			         cas == NULL ? ca_file : crl_file, why[0] ? ": " : "", why);
			rc = -KW_ECONFIG;
			goto out;
		}
		/* "CRL" separates the two files in the digest, so no content moves across. */
		if (EVP_DigestUpdate(md, "CRL", 3) != 1 || EVP_DigestUpdate(md, crl, crllen) != 1) {
			snprintf(err, errlen, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		if ((rc = install_crls(ctx, cas, crls, ca_file, crl_file, err, errlen)) < 0)
			goto out;
	}
	rc = EVP_DigestFinal_ex(md, digest, &mdlen) == 1 ? 0 : -ENOMEM;
	if (rc < 0)
		snprintf(err, errlen, "out of memory");
out:
	EVP_MD_CTX_free(md);
	sk_X509_INFO_pop_free(cas, X509_INFO_free);
	sk_X509_INFO_pop_free(crls, X509_INFO_free);
	free(ca);
	free(crl);
	return rc;
}

int kwd_trust_no_resumption(SSL_CTX *ctx)
{
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);            /* TLS 1.3 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET); /* TLS 1.2 stateless tickets */
	if (SSL_CTX_get_session_cache_mode(ctx) != SSL_SESS_CACHE_OFF ||
	    SSL_CTX_get_num_tickets(ctx) != 0 || !(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET))
		return -1;
	return 0;
}
