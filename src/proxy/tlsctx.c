/*
 * tlsctx.c - the proxy's certificates: one SSL_CTX per --cert/--key pair,
 * SNI choosing among them, and the swap that SIGHUP makes.
 *
 * A set (struct kpx_tls) is immutable once published. Every SSL made from
 * it holds a reference in its ex_data, dropped by SSL_free, so a reload
 * never pulls a certificate from under a connection: old connections keep
 * the old set until they close, new ones get the new set. Workers pick up
 * a new set at their next accept (one atomic load per accept when nothing
 * changed).
 *
 * With --quic-listen the same set also holds one GnuTLS credentials object
 * with every pair (GnuTLS picks by SNI): QUIC's handshake runs on GnuTLS,
 * since OpenSSL 3.0 has no QUIC server API. Both stacks are loaded from the
 * same files in one kpx_tls_load, so a SIGHUP swaps both or neither.
 *
 * Resumption off (the default, and what the benchmarks compare) means no
 * tickets at all -- SSL_CTX_set_num_tickets(0), because OpenSSL sends two
 * TLS 1.3 tickets even with SSL_OP_NO_TICKET -- and no session cache.
 */
#include "tlsctx.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "conn.h"
#include "keys.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/provider_api.h"
#include "keyway/tls.h"

struct kpx_tls {
	_Atomic unsigned refs;
	size_t n;
	SSL_CTX **ctx; /* ctx[0]: the default, first --cert/--key pair */
	X509 **leaf;   /* each context's certificate, for SNI matching */
	/* --require-keys: the key check found no keyserver holding ctx[i]'s key (SKI in hex) */
	_Atomic bool *refused;
	char (*refused_ski)[2 * KW_SKI_LEN + 1];
	unsigned char *alpn; /* wire format: length-prefixed protocol names */
	size_t alpn_len;
	gnutls_certificate_credentials_t quic_cred; /* --quic-listen: every pair; else NULL */
	bool quic_remote;              /* a pair's key is held by keyservers: sign off the loop */
	gnutls_pcert_st **quic_pcerts; /* per remote pair: its chain (owned by quic_cred) */
};

/* Signatures made by keyserver-held keys on this thread (quic_conn.c's handshake steps). */
static _Thread_local unsigned remote_signs;

static int ssl_set_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

/* The published set. */
static pthread_mutex_t cur_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kpx_tls *cur;
static _Atomic uint64_t cur_gen;

/*
 * set_err says what failed on which file and why in plain words, with the
 * fix; OpenSSL's own reason strings only reach the debug log.
 */
static void set_err(char *err, size_t errlen, const char *what, const char *file)
{
	char detail[512];
	kw_tls_err_explain(detail, sizeof(detail), "certificate");
	snprintf(err, errlen, "%s %s%s%s", what, file, file[0] ? ": " : "", detail);
}

static void ssl_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	kpx_tls_unref(ptr);
}

static void make_index(void)
{
	ssl_set_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_free_cb);
}

void kpx_tls_ref(struct kpx_tls *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void kpx_tls_unref(struct kpx_tls *t)
{
	if (t == NULL || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < t->n; i++) {
		SSL_CTX_free(t->ctx[i]);
		X509_free(t->leaf[i]);
	}
	free(t->ctx);
	free(t->leaf);
	free(t->refused);
	free(t->refused_ski);
	free(t->alpn);
	if (t->quic_cred != NULL)
		gnutls_certificate_free_credentials(t->quic_cred);
	for (size_t i = 0; t->quic_pcerts != NULL && i < t->n; i++)
		free(t->quic_pcerts[i]);
	free(t->quic_pcerts);
	free(t);
}

/* ---- SNI and ALPN ---- */

static bool refused(const struct kpx_tls *t, size_t i)
{
	return atomic_load_explicit(&t->refused[i], memory_order_acquire);
}

/*
 * A certificate refused by --require-keys is skipped by SNI; when the
 * default one is refused and would be served, the handshake fails with the
 * same words as the provider's "key not found", so the access log line
 * names the key the same way.
 */
static int refuse_default(const struct kpx_tls *t, int *alert)
{
	ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL,
	               KW_PROVIDER_KEY_NOT_FOUND_TEXT "%s (certificate refused by --require-keys)",
	               t->refused_ski[0]);
	*alert = SSL_AD_INTERNAL_ERROR;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Called for every ClientHello, with or without SNI. */
static int select_cert(SSL *ssl, int *alert, void *arg)
{
	struct kpx_tls *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	for (size_t i = 0; name != NULL && i < t->n; i++) {
		/* Names in the subjectAltName (wildcards as RFC 6125 allows), else the CN. */
		if (!refused(t, i) && X509_check_host(t->leaf[i], name, 0, 0, NULL) == 1) {
			if (i > 0 && SSL_set_SSL_CTX(ssl, t->ctx[i]) == NULL)
				return SSL_TLSEXT_ERR_ALERT_FATAL;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	/* No SNI or an unknown name: the default certificate. */
	return refused(t, 0) ? refuse_default(t, alert) : SSL_TLSEXT_ERR_NOACK;
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
	struct kpx_tls *t = arg;
	unsigned char *sel = NULL;
	unsigned char sellen = 0;
	if (SSL_select_next_proto(&sel, &sellen, t->alpn, (unsigned)t->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* no protocol in common: go on without ALPN */
	*out = sel;
	*outlen = sellen;
	return SSL_TLSEXT_ERR_OK;
}

int kpx_alpn_wire(char *const *names, unsigned char **out, size_t *outlen, char *err, size_t errlen)
{
	size_t len = 0;
	for (char *const *p = names; p != NULL && *p != NULL; p++) {
		size_t l = strlen(*p);
		if (l == 0 || l > 255) {
			snprintf(err, errlen,
			         "--alpn '%s': a protocol name is 1 to 255 bytes; fix: e.g. "
			         "--alpn http/1.1",
			         *p);
			return -KW_ECONFIG;
		}
		len += 1 + l;
	}
	unsigned char *w = malloc(len > 0 ? len : 1);
	if (w == NULL)
		return -ENOMEM;
	*out = w;
	*outlen = len;
	for (char *const *p = names; p != NULL && *p != NULL; p++) {
		size_t l = strlen(*p);
		*w++ = (unsigned char)l;
		memcpy(w, *p, l);
		w += l;
	}
	return 0;
}

/* ---- loading ---- */

static SSL_CTX *make_ctx(const struct kpx_options *o, struct kpx_tls *t, const char *cert,
                         const char *keyname, X509 **leaf, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = NULL;

	if (ctx == NULL) {
		set_err(err, errlen, "cannot make a TLS context", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		set_err(err, errlen, "cannot load the certificate chain", cert);
		goto err;
	}
	if ((key = kpx_load_key(o, keyname, err, errlen)) == NULL)
		goto err;
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		char why[400];
		kw_tls_err_explain(why, sizeof(why), "private key");
		/* OpenSSL's usual reason here is "key values mismatch": say it in the pair's terms.
		 */
		if (strncmp(why, "the key does not match", 22) == 0)
			snprintf(
			    err, errlen,
			    "the private key %s does not match the certificate in %s; fix: give "
			    "each --cert with its own --key, in the same order",
			    keyname, cert);
		else
			snprintf(err, errlen,
			         "cannot use the private key %s with the certificate %s: %s",
			         keyname, cert, why);
		goto err;
	}
	EVP_PKEY_free(key); /* the context holds its own reference */
	key = NULL;
	if (!o->resumption) {
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	} else {
		static const unsigned char sid_ctx[] = "keyway-proxy";
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
		SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	}
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, t);
	SSL_CTX_set_tlsext_servername_callback(ctx, select_cert);
	SSL_CTX_set_tlsext_servername_arg(ctx, t);
	/*
	 * Read whole socket buffers instead of each record's header and body
	 * apart: a handshake and its request take 4 reads instead of 8. The
	 * connection code reads until SSL_read wants more, so data buffered
	 * inside the SSL never waits for an epoll event that will not come.
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	/*
	 * Give OpenSSL's record buffers (16 KiB+ each way) back while a
	 * connection has nothing buffered, as nginx and HAProxy do: an idle
	 * keep-alive or relayed connection then costs a few KiB, not 35.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (o->async && o->notify == KPX_NOTIFY_CALLBACK)
		SSL_CTX_set_async_callback(ctx, kpx_conn_async_cb);
	if ((*leaf = SSL_CTX_get0_certificate(ctx)) == NULL || X509_up_ref(*leaf) != 1) {
		*leaf = NULL;
		set_err(err, errlen, "no certificate in", cert);
		goto err;
	}
	return ctx;
err:
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	return NULL;
}

/* ---- GnuTLS keys signed through the keyway provider (--quic-listen) ---- */

/* The digest of a TLS 1.3 signature scheme; NULL for Ed25519 (no pre-hash). */
static const EVP_MD *sign_md(gnutls_sign_algorithm_t algo, bool *pss)
{
	*pss = false;
	switch (algo) {
	case GNUTLS_SIGN_RSA_PSS_RSAE_SHA256:
		*pss = true;
		/* fall through */
	case GNUTLS_SIGN_ECDSA_SECP256R1_SHA256:
	case GNUTLS_SIGN_ECDSA_SHA256:
		return EVP_sha256();
	case GNUTLS_SIGN_RSA_PSS_RSAE_SHA384:
		*pss = true;
		/* fall through */
	case GNUTLS_SIGN_ECDSA_SECP384R1_SHA384:
	case GNUTLS_SIGN_ECDSA_SHA384:
		return EVP_sha384();
	case GNUTLS_SIGN_RSA_PSS_RSAE_SHA512:
		*pss = true;
		/* fall through */
	case GNUTLS_SIGN_ECDSA_SECP521R1_SHA512:
	case GNUTLS_SIGN_ECDSA_SHA512:
		return EVP_sha512();
	default:
		return NULL;
	}
}

/* Which GnuTLS public-key algorithm an OpenSSL key is (0: none we sign with). */
static gnutls_pk_algorithm_t pk_of(EVP_PKEY *key)
{
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_RSA:
		return GNUTLS_PK_RSA;
	case EVP_PKEY_EC:
		return GNUTLS_PK_ECDSA;
	case EVP_PKEY_ED25519:
		return GNUTLS_PK_EDDSA_ED25519;
	default:
		return GNUTLS_PK_UNKNOWN;
	}
}

/* Whether algo is a TLS 1.3 scheme we sign with a key of type pk. */
static bool can_sign(gnutls_pk_algorithm_t pk, gnutls_sign_algorithm_t algo)
{
	bool pss;
	if (algo == GNUTLS_SIGN_EDDSA_ED25519)
		return pk == GNUTLS_PK_EDDSA_ED25519;
	if (sign_md(algo, &pss) == NULL)
		return false;
	return pss ? pk == GNUTLS_PK_RSA : pk == GNUTLS_PK_ECDSA;
}

/* sign_failed logs why a signature for a QUIC handshake failed (GnuTLS only says it did). */
static int sign_failed(gnutls_datum_t *sig)
{
	/* The provider's own words (which keyserver, why) are the error's data. */
	const char *data = NULL;
	int fl = 0;
	char why[256] = "no reason given";
	unsigned long e = ERR_peek_last_error_all(NULL, NULL, NULL, &data, &fl);
	if (e != 0 && data != NULL && (fl & ERR_TXT_STRING) && data[0] != 0)
		snprintf(why, sizeof(why), "%s", data);
	else if (e != 0)
		ERR_error_string_n(e, why, sizeof(why));
	ERR_clear_error();
	kw_warn("QUIC handshake: signing with the keyserver-held key failed: %s", why);
	gnutls_free(sig->data);
	sig->data = NULL;
	return GNUTLS_E_PK_SIGN_FAILED;
}

/*
 * ext_sign_hash signs a digest GnuTLS made (ECDSA, RSA-PSS) with EVP_PKEY_sign
 * on the keyway provider's key, as the TCP side's signatures go: RSA-PSS with
 * MGF1 and a salt as long as the digest, as TLS 1.3 wants; ECDSA as DER, the
 * form GnuTLS sends. It blocks until the keyserver answers, so it only runs
 * on a handshake thread (quic_conn.c).
 */
static int ext_sign_hash(gnutls_privkey_t gkey, gnutls_sign_algorithm_t algo, void *userdata,
                         unsigned flags, const gnutls_datum_t *hash, gnutls_datum_t *sig)
{
	EVP_PKEY *key = userdata;
	bool pss;
	const EVP_MD *md = sign_md(algo, &pss);
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	size_t len = 0;
	int ok = 0;

	sig->data = NULL;
	if (pctx != NULL && md != NULL && can_sign(pk_of(key), algo) &&
	    EVP_PKEY_sign_init(pctx) == 1 && EVP_PKEY_CTX_set_signature_md(pctx, md) == 1 &&
	    (!pss || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
	              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
	              EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1)) &&
	    EVP_PKEY_sign(pctx, NULL, &len, hash->data, hash->size) == 1 &&
	    (sig->data = gnutls_malloc(len)) != NULL &&
	    EVP_PKEY_sign(pctx, sig->data, &len, hash->data, hash->size) == 1)
		ok = 1;
	EVP_PKEY_CTX_free(pctx);
	if (!ok)
		return sign_failed(sig);
	sig->size = (unsigned)len;
	remote_signs++;
	return 0;
}

/* ext_sign_data signs the whole message for Ed25519 (no pre-hash), like ext_sign_hash. */
static int ext_sign_data(gnutls_privkey_t gkey, gnutls_sign_algorithm_t algo, void *userdata,
                         unsigned flags, const gnutls_datum_t *data, gnutls_datum_t *sig)
{
	EVP_PKEY *key = userdata;
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	size_t len = 0;
	int ok = 0;

	sig->data = NULL;
	if (mctx != NULL && algo == GNUTLS_SIGN_EDDSA_ED25519 && can_sign(pk_of(key), algo) &&
	    EVP_DigestSignInit(mctx, NULL, NULL, NULL, key) == 1 &&
	    EVP_DigestSign(mctx, NULL, &len, data->data, data->size) == 1 &&
	    (sig->data = gnutls_malloc(len)) != NULL &&
	    EVP_DigestSign(mctx, sig->data, &len, data->data, data->size) == 1)
		ok = 1;
	EVP_MD_CTX_free(mctx);
	if (!ok)
		return sign_failed(sig);
	sig->size = (unsigned)len;
	remote_signs++;
	return 0;
}

static void ext_deinit(gnutls_privkey_t gkey, void *userdata)
{
	EVP_PKEY_free(userdata);
}

static int ext_info(gnutls_privkey_t gkey, unsigned flags, void *userdata)
{
	gnutls_pk_algorithm_t pk = pk_of(userdata);
	if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
		return (int)pk;
	if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
		return EVP_PKEY_get_bits(userdata);
	if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO)
		return can_sign(pk, (gnutls_sign_algorithm_t)GNUTLS_FLAGS_TO_SIGN_ALGO(flags));
	return -1;
}

/*
 * load_quic_remote gives GnuTLS pair i as the certificate chain from its
 * file and an external key signing through the EVP_PKEY the TCP side
 * uses (the keyway provider's): every signature goes where the TCP
 * side's would.
 */
static int load_quic_remote(const struct kpx_options *o, struct kpx_tls *t, size_t i)
{
	EVP_PKEY *key = kpx_tls_key(t, i);
	gnutls_privkey_t gkey = NULL;
	unsigned n = 16;
	int rc;

	if (pk_of(key) == GNUTLS_PK_UNKNOWN)
		return GNUTLS_E_UNKNOWN_PK_ALGORITHM;
	if ((t->quic_pcerts[i] = calloc(n, sizeof(gnutls_pcert_st))) == NULL)
		return GNUTLS_E_MEMORY_ERROR;
	rc = gnutls_pcert_list_import_x509_file(t->quic_pcerts[i], &n, o->certs[i],
	                                        GNUTLS_X509_FMT_PEM, NULL, NULL, 0);
	if (rc < 0)
		return rc;
	if ((rc = gnutls_privkey_init(&gkey)) < 0)
		goto err;
	EVP_PKEY_up_ref(key); /* the GnuTLS key's own reference, dropped by ext_deinit */
	rc = gnutls_privkey_import_ext4(gkey, key, ext_sign_data, ext_sign_hash, NULL, ext_deinit,
	                                ext_info, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE);
	if (rc < 0) {
		EVP_PKEY_free(key);
		goto err;
	}
	/* The credentials own the chain and the key from here on. */
	rc = gnutls_certificate_set_key(t->quic_cred, NULL, 0, t->quic_pcerts[i], (int)n, gkey);
	if (rc < 0)
		goto err;
	t->quic_remote = true;
	return 0;
err:
	gnutls_privkey_deinit(gkey);
	for (unsigned j = 0; j < n; j++)
		gnutls_pcert_deinit(&t->quic_pcerts[i][j]);
	return rc;
}

/*
 * load_quic loads every pair into GnuTLS for QUIC: local key files as
 * files; keyserver-held keys as external keys (load_quic_remote), whose
 * handshakes quic_conn.c runs on handshake threads since GnuTLS signs
 * synchronously.
 */
static int load_quic(const struct kpx_options *o, struct kpx_tls *t, char *err, size_t errlen)
{
	int rc = gnutls_certificate_allocate_credentials(&t->quic_cred);
	if (rc >= 0 && (t->quic_pcerts = calloc(t->n, sizeof(*t->quic_pcerts))) == NULL)
		rc = GNUTLS_E_MEMORY_ERROR;
	/* The key check would sign on a keyserver while loading; OpenSSL's check covered it. */
	if (rc >= 0)
		gnutls_certificate_set_flags(t->quic_cred, GNUTLS_CERTIFICATE_SKIP_KEY_CERT_MATCH);
	for (size_t i = 0; rc >= 0 && i < t->n; i++) {
		if (kpx_key_kind(o->keys[i]) == KPX_KEY_KEYWAY)
			rc = load_quic_remote(o, t, i);
		else
			rc = gnutls_certificate_set_x509_key_file2(
			    t->quic_cred, o->certs[i], o->keys[i], GNUTLS_X509_FMT_PEM, NULL, 0);
		if (rc < 0) {
			snprintf(
			    err, errlen,
			    "--quic-listen: GnuTLS cannot load the pair %s and %s: %s; fix: give "
			    "a PEM certificate chain and its unencrypted PEM private key (or a "
			    "keyserver-held RSA, ECDSA or Ed25519 key)",
			    o->certs[i], o->keys[i], gnutls_strerror(rc));
			return -KW_ECONFIG;
		}
	}
	if (rc < 0) {
		snprintf(err, errlen, "--quic-listen: %s", gnutls_strerror(rc));
		return -KW_ECONFIG;
	}
	return 0;
}

bool kpx_tls_quic_remote(const struct kpx_tls *t)
{
	return t->quic_remote;
}

unsigned kpx_tls_quic_remote_signs(void)
{
	return remote_signs;
}

void *kpx_tls_quic_cred(const struct kpx_tls *t)
{
	return t->quic_cred;
}

struct kpx_tls *kpx_tls_load(const struct kpx_options *o, char *err, size_t errlen)
{
	struct kpx_tls *t = calloc(1, sizeof(*t));
	size_t n = 0;

	pthread_once(&index_once, make_index);
	while (o->certs != NULL && o->certs[n] != NULL)
		n++;
	if (t == NULL) {
		snprintf(err, errlen, "out of memory loading certificates");
		return NULL;
	}
	atomic_init(&t->refs, 1);
	if (ssl_set_index < 0 || (t->ctx = calloc(n, sizeof(*t->ctx))) == NULL ||
	    (t->leaf = calloc(n, sizeof(*t->leaf))) == NULL ||
	    (t->refused = calloc(n, sizeof(*t->refused))) == NULL ||
	    (t->refused_ski = calloc(n, sizeof(*t->refused_ski))) == NULL) {
		snprintf(err, errlen, "out of memory loading certificates");
		goto err;
	}
	static char *const http11[] = {"http/1.1", NULL};
	if (kpx_alpn_wire(o->alpn != NULL ? o->alpn : http11, &t->alpn, &t->alpn_len, err, errlen) <
	    0)
		goto err;
	for (; t->n < n; t->n++) {
		ERR_clear_error();
		t->ctx[t->n] =
		    make_ctx(o, t, o->certs[t->n], o->keys[t->n], &t->leaf[t->n], err, errlen);
		if (t->ctx[t->n] == NULL)
			goto err;
	}
	if (o->quic_listen != NULL && load_quic(o, t, err, errlen) < 0)
		goto err;
	return t;
err:
	kpx_tls_unref(t); /* frees the contexts made so far */
	return NULL;
}

/* ---- publishing ---- */

void kpx_tls_publish(struct kpx_tls *t)
{
	pthread_mutex_lock(&cur_mu);
	struct kpx_tls *old = cur;
	cur = t;
	atomic_fetch_add_explicit(&cur_gen, 1, memory_order_release);
	pthread_mutex_unlock(&cur_mu);
	kpx_tls_unref(old);
}

struct kpx_tls *kpx_tls_current(uint64_t *gen)
{
	pthread_mutex_lock(&cur_mu);
	struct kpx_tls *t = cur;
	if (t != NULL)
		kpx_tls_ref(t);
	*gen = atomic_load_explicit(&cur_gen, memory_order_relaxed);
	pthread_mutex_unlock(&cur_mu);
	return t;
}

uint64_t kpx_tls_generation(void)
{
	return atomic_load_explicit(&cur_gen, memory_order_acquire);
}

SSL *kpx_tls_ssl_new(struct kpx_tls *t)
{
	SSL *ssl = SSL_new(t->ctx[0]);
	if (ssl == NULL)
		return NULL;
	kpx_tls_ref(t);
	if (SSL_set_ex_data(ssl, ssl_set_index, t) != 1) {
		kpx_tls_unref(t);
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

size_t kpx_tls_count(const struct kpx_tls *t)
{
	return t->n;
}

EVP_PKEY *kpx_tls_key(const struct kpx_tls *t, size_t i)
{
	return i < t->n ? SSL_CTX_get0_privatekey(t->ctx[i]) : NULL;
}

void kpx_tls_refuse(struct kpx_tls *t, size_t i, const char *ski_hex)
{
	if (i >= t->n)
		return;
	/* The SKI is written before the flag that makes readers look at it. */
	snprintf(t->refused_ski[i], sizeof(t->refused_ski[i]), "%s", ski_hex);
	atomic_store_explicit(&t->refused[i], true, memory_order_release);
}
