/* tls.c - OpenSSL context helpers (see keyway/tls.h). */
#include "keyway/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/asn1err.h>
#include <openssl/err.h>
#include <openssl/pemerr.h>
#include <openssl/sslerr.h>
#include <openssl/x509err.h>

#include "keyway/log.h"
#include <openssl/x509.h>

/* gokeyless' suites first, so its clients interoperate; then the other AES-GCM/ChaCha suites. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

void kw_tls_err_string(char *out, size_t outlen)
{
	size_t used = 0;
	unsigned long e;
	out[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		/* Keep the reason part only: "error:0A000086:SSL routines::certificate verify
		 * failed". */
		const char *reason = strrchr(one, ':');
		reason = reason ? reason + 1 : one;
		/* OpenSSL often queues the same reason several times (e.g. "system lib"). */
		if (reason[0] == '\0' || strstr(out, reason) != NULL)
			continue;
		int w = snprintf(out + used, outlen - used, "%s%s", used ? "; " : "", reason);
		if (w < 0 || (size_t)w >= outlen - used)
			break;
		used += (size_t)w;
	}
}

/* What an OpenSSL reason means for a file that failed to load, worst (most telling) last. */
enum cause { C_OTHER, C_UNSUPPORTED, C_DAMAGED, C_NOT_PEM, C_ENCRYPTED, C_MISMATCH, C_SYS };

static enum cause cause_of(unsigned long e)
{
	int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);

	if (ERR_SYSTEM_ERROR(e) || lib == ERR_LIB_SYS)
		return C_SYS;
	/* A key of another type than the certificate's lands in an empty slot: "no certificate
	 * assigned" is a mismatch too, as the operator sees it. */
	if ((lib == ERR_LIB_X509 &&
	     (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH)) ||
	    (lib == ERR_LIB_SSL && reason == SSL_R_NO_CERTIFICATE_ASSIGNED))
		return C_MISMATCH;
	if (lib == ERR_LIB_PEM && reason == PEM_R_NO_START_LINE)
		return C_NOT_PEM;
	if (lib == ERR_LIB_PEM &&
	    (reason == PEM_R_BAD_PASSWORD_READ || reason == PEM_R_PROBLEMS_GETTING_PASSWORD ||
	     reason == PEM_R_BAD_DECRYPT))
		return C_ENCRYPTED;
	if (lib == ERR_LIB_PEM || lib == ERR_LIB_ASN1)
		return C_DAMAGED;
	if (reason == ERR_R_UNSUPPORTED)
		return C_UNSUPPORTED;
	return C_OTHER;
}

void kw_tls_err_explain(char *out, size_t outlen, const char *what)
{
	enum cause worst = C_OTHER;
	int sys = 0;
	unsigned long e;
	char raw[512] = "";
	size_t used = 0;

	while ((e = ERR_get_error()) != 0) {
		enum cause c = cause_of(e);
		if (c == C_SYS && sys == 0)
			sys = ERR_GET_REASON(e) & ERR_SYSTEM_MASK; /* the errno */
		if (c > worst)
			worst = c;
		if (used < sizeof(raw)) {
			char one[256];
			ERR_error_string_n(e, one, sizeof(one));
			int w =
			    snprintf(raw + used, sizeof(raw) - used, "%s%s", used ? "; " : "", one);
			used += w > 0 ? (size_t)w : 0;
		}
	}
	if (raw[0] != '\0')
		kw_debug("OpenSSL detail for the %s: %s", what, raw);
	switch (worst) {
	case C_SYS:
		if (sys == EACCES || sys == EPERM)
			snprintf(out, outlen, "%s; fix: make it readable by this program's user",
			         strerror(sys));
		else if (sys != 0)
			snprintf(out, outlen, "%s; fix: check the path", strerror(sys));
		else
			snprintf(out, outlen, "cannot read the file; fix: check the path");
		break;
	case C_MISMATCH:
		snprintf(out, outlen,
		         "the key does not match the certificate; fix: give each "
		         "certificate with its own key");
		break;
	case C_NOT_PEM:
		snprintf(out, outlen,
		         "not a PEM %s (no -----BEGIN line); fix: give a PEM file "
		         "(openssl x509 or openssl pkey converts DER)",
		         what);
		break;
	case C_ENCRYPTED:
		snprintf(out, outlen,
		         "an encrypted %s; fix: store it unencrypted (openssl pkey -in "
		         "FILE -out NEW)",
		         what);
		break;
	case C_DAMAGED:
		snprintf(out, outlen,
		         "a damaged PEM %s (its contents do not parse); fix: export it "
		         "again",
		         what);
		break;
	case C_UNSUPPORTED:
	case C_OTHER:
		snprintf(out, outlen, "no usable PEM %s in it; fix: give a PEM %s file", what,
		         what);
		break;
	}
}

static void fail(char *err, size_t errlen, const char *what, const char *file)
{
	char why[512];
	kw_tls_err_string(why, sizeof(why));
	snprintf(err, errlen, "%s '%s'%s%s", what, file, why[0] ? ": " : "", why);
}

static SSL_CTX *new_ctx(const SSL_METHOD *method)
{
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_cipher_list(ctx, tls12_ciphers);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                          SSL_MODE_RELEASE_BUFFERS);
	/* Keyless links carry signatures and decrypted premaster blocks: OpenSSL wipes
	 * its plaintext copies of records once they are read. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	                             SSL_OP_CLEANSE_PLAINTEXT);
	return ctx;
}

/* The messages of use_identity's three steps. */
struct identity_msgs {
	const char *cert, *key, *mismatch;
};

/*
 * use_identity loads cert's chain and key into ctx (each when not NULL) and
 * checks they match; 0, or -1 with the file and the reason in err.
 */
static int use_identity(SSL_CTX *ctx, const char *cert, const char *key,
                        const struct identity_msgs *m, char *err, size_t errlen)
{
	if (cert != NULL && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		fail(err, errlen, m->cert, cert);
		return -1;
	}
	if (key == NULL)
		return 0;
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fail(err, errlen, m->key, key);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		fail(err, errlen, m->mismatch, cert ? cert : key);
		return -1;
	}
	return 0;
}

SSL_CTX *kw_tls_server_ctx(const char *cert, const char *key, const char *client_ca, char *err,
                           size_t errlen)
{
	SSL_CTX *ctx = new_ctx(TLS_server_method());
	if (ctx == NULL) {
		fail(err, errlen, "cannot create TLS context for", cert);
		return NULL;
	}
	static const struct identity_msgs server = {
	    "cannot load TLS certificate chain", "cannot load TLS private key",
	    "TLS private key does not match the certificate in"};
	if (use_identity(ctx, cert, key, &server, err, errlen) < 0)
		goto err;
	if (client_ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
			fail(err, errlen, "cannot load client CA", client_ca);
			goto err;
		}
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(ctx, names);
		ERR_clear_error();
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	/* A keyserver link is long-lived and mutual: no resumption state to keep. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	return ctx;
err:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *kw_tls_client_ctx(const char *cert, const char *key, const char *ca, char *err,
                           size_t errlen)
{
	SSL_CTX *ctx = new_ctx(TLS_client_method());
	if (ctx == NULL) {
		fail(err, errlen, "cannot create TLS context for", ca ? ca : "client");
		return NULL;
	}
	if (ca == NULL) {
		snprintf(err, errlen, "a CA file is required to verify the keyserver");
		goto err;
	}
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		fail(err, errlen, "cannot load CA", ca);
		goto err;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	static const struct identity_msgs client = {"cannot load client certificate",
	                                            "cannot load client key",
	                                            "client key does not match the certificate in"};
	if (use_identity(ctx, cert, key, &client, err, errlen) < 0)
		goto err;
	return ctx;
err:
	SSL_CTX_free(ctx);
	return NULL;
}
