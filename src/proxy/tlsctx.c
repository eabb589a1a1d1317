/*
 * tlsctx.c - the proxy's server SSL_CTX (the key comes from keys.c).
 *
 * Resumption off (the default, and what the benchmarks compare) means no
 * tickets at all -- SSL_CTX_set_num_tickets(0), because OpenSSL sends two
 * TLS 1.3 tickets even with SSL_OP_NO_TICKET -- and no session cache.
 */
#include "tlsctx.h"

#include "keys.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "keyway/tls.h"

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";
	unsigned char *sel = NULL;
	unsigned char sellen = 0;
	if (SSL_select_next_proto(&sel, &sellen, h1, sizeof(h1) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* e.g. h2 only: go on without ALPN */
	*out = sel;
	*outlen = sellen;
	return SSL_TLSEXT_ERR_OK;
}

static void set_err(char *err, size_t errlen, const char *what, const char *file)
{
	char detail[256];
	kw_tls_err_string(detail, sizeof(detail));
	snprintf(err, errlen, "%s %s%s%s", what, file, detail[0] ? ": " : "", detail);
}

SSL_CTX *kpx_tls_ctx(const struct kpx_options *o, EVP_PKEY **key_out, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = NULL;

	if (ctx == NULL) {
		set_err(err, errlen, "cannot make a TLS context", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
		set_err(err, errlen, "cannot load the certificate chain", o->cert);
		goto err;
	}
	if ((key = kpx_load_key(o, err, errlen)) == NULL)
		goto err;
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		set_err(err, errlen, "the private key does not match the certificate in", o->cert);
		goto err;
	}
	if (o->resumption_off) {
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	} else {
		static const unsigned char sid_ctx[] = "keyway-proxy";
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
		SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	}
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	/*
	 * Read whole socket buffers instead of each record's header and body
	 * apart: a handshake and its request take 4 reads instead of 8. The
	 * connection code reads until SSL_read wants more, so data buffered
	 * inside the SSL never waits for an epoll event that will not come.
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (!o->async_off && o->notify == KPX_NOTIFY_CALLBACK)
		SSL_CTX_set_async_callback(ctx, kpx_conn_async_cb);
	*key_out = key;
	return ctx;
err:
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	return NULL;
}
