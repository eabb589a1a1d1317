/* test_tls.c - the keyserver link's contexts: mutual TLS over a socketpair, refusals, errors. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "check.h"
#include "pki.h"
#include "tls_pair.h"
#include "keyway/tls.h"
#include "keywayd/keygen.h"

static char *dir;

static SSL_CTX *server_ctx(const char *client_ca)
{
	char err[512];
	SSL_CTX *c = kw_tls_server_ctx(join(dir, "server.pem"), join(dir, "server.key"),
	                               client_ca ? join(dir, client_ca) : NULL, err, sizeof(err));
	if (c == NULL)
		fprintf(stderr, "server context: %s\n", err);
	CHECK(c != NULL);
	return c;
}

static SSL_CTX *client_ctx(bool with_cert, const char *ca)
{
	char err[512];
	SSL_CTX *c = kw_tls_client_ctx(with_cert ? join(dir, "client.pem") : NULL,
	                               with_cert ? join(dir, "client.key") : NULL, join(dir, ca),
	                               err, sizeof(err));
	if (c == NULL)
		fprintf(stderr, "client context: %s\n", err);
	CHECK(c != NULL);
	return c;
}

/* The result of one handshake between two contexts. */
struct outcome {
	int server_ok, client_ok; /* 1: handshake done; 0: failed */
	long client_verify;       /* the client's verification of the server */
	char server_peer[64];     /* the client certificate's CN seen by the server, or "" */
	int server_version;
};

static struct outcome handshake(SSL_CTX *sctx, SSL_CTX *cctx)
{
	struct outcome o = {0};
	struct tls_pair p;
	tls_pair_open(&p, sctx, cctx);
	bool ok = tls_pair_handshake(&p);
	o.server_ok = p.server_done;
	o.client_ok = p.client_done;
	o.client_verify = SSL_get_verify_result(p.client);
	X509 *peer = SSL_get1_peer_certificate(p.server);
	if (peer != NULL)
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
		                          o.server_peer, sizeof(o.server_peer));
	X509_free(peer);
	o.server_version = SSL_version(p.server);
	if (ok) {
		/* The link carries data both ways. */
		char buf[8] = {0};
		CHECK_EQ(SSL_write(p.client, "ping", 4), 4);
		CHECK_EQ(SSL_read(p.server, buf, sizeof(buf)), 4);
		CHECK(memcmp(buf, "ping", 4) == 0);
		CHECK_EQ(SSL_write(p.server, "pong", 4), 4);
		CHECK_EQ(SSL_read(p.client, buf, sizeof(buf)), 4);
		CHECK(memcmp(buf, "pong", 4) == 0);
	}
	ERR_clear_error();
	tls_pair_close(&p);
	return o;
}

static void test_mutual(void)
{
	SSL_CTX *sctx = server_ctx("ca.pem"), *cctx = client_ctx(true, "ca.pem");
	struct outcome o = handshake(sctx, cctx);
	CHECK(o.server_ok && o.client_ok);
	CHECK_EQ(o.client_verify, X509_V_OK);
	CHECK(strcmp(o.server_peer, "client") == 0);
	CHECK(o.server_version >= TLS1_2_VERSION);
	/* TLS 1.2 at least; a long-lived link keeps no sessions. */
	CHECK_EQ(SSL_CTX_get_min_proto_version(sctx), TLS1_2_VERSION);
	CHECK_EQ(SSL_CTX_get_min_proto_version(cctx), TLS1_2_VERSION);
	CHECK_EQ(SSL_CTX_get_session_cache_mode(sctx), SSL_SESS_CACHE_OFF);
	CHECK_EQ(SSL_CTX_get_num_tickets(sctx), 0);
	CHECK_EQ(SSL_CTX_get_verify_mode(sctx), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	CHECK_EQ(SSL_CTX_get_verify_mode(cctx), SSL_VERIFY_PEER);

	/* TLS 1.2 alone works too, with gokeyless' suite. */
	SSL_CTX *c12 = client_ctx(true, "ca.pem");
	SSL_CTX_set_max_proto_version(c12, TLS1_2_VERSION);
	SSL_CTX_set_cipher_list(c12, "ECDHE-ECDSA-AES256-GCM-SHA384");
	o = handshake(sctx, c12);
	CHECK(o.server_ok && o.client_ok);
	CHECK_EQ(o.server_version, TLS1_2_VERSION);
	SSL_CTX_free(c12);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

static void test_refused(void)
{
	SSL_CTX *sctx = server_ctx("ca.pem");

	/* A client without a certificate is refused by a server that wants one. */
	SSL_CTX *anon = client_ctx(false, "ca.pem");
	struct outcome o = handshake(sctx, anon);
	CHECK(!o.server_ok);
	CHECK(o.server_peer[0] == '\0');

	/* A client certificate from another CA is refused. */
	SSL_CTX *other = server_ctx("other-ca.pem"), *cctx = client_ctx(true, "ca.pem");
	o = handshake(other, cctx);
	CHECK(!o.server_ok);

	/* The client refuses a server its CA did not issue. */
	SSL_CTX *wrong = client_ctx(true, "other-ca.pem");
	o = handshake(sctx, wrong);
	CHECK(!o.client_ok);
	/* The server sends its chain up to the test CA (built from its verify store). */
	CHECK_EQ(o.client_verify, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);

	/* Without a client CA the server asks for no certificate. */
	SSL_CTX *open = server_ctx(NULL);
	CHECK_EQ(SSL_CTX_get_verify_mode(open), SSL_VERIFY_NONE);
	o = handshake(open, anon);
	CHECK(o.server_ok && o.client_ok);

	SSL_CTX_free(open);
	SSL_CTX_free(wrong);
	SSL_CTX_free(cctx);
	SSL_CTX_free(other);
	SSL_CTX_free(anon);
	SSL_CTX_free(sctx);
}

#define CHECK_PREFIX(s, prefix)                                                                    \
	do {                                                                                       \
		if (strncmp((s), (prefix), strlen(prefix)) != 0)                                   \
			fprintf(stderr, "got \"%s\"\nwant \"%s...\"\n", (s), (prefix));            \
		CHECK(strncmp((s), (prefix), strlen(prefix)) == 0);                                \
	} while (0)

/* Bad files: NULL and an error naming the file and what failed. */
static void test_errors(void)
{
	char err[512], want[1024];

	CHECK(kw_tls_client_ctx(NULL, NULL, NULL, err, sizeof(err)) == NULL);
	CHECK(strcmp(err, "a CA file is required to verify the keyserver") == 0);

	CHECK(kw_tls_server_ctx(join(dir, "missing.pem"), join(dir, "server.key"), NULL, err,
	                        sizeof(err)) == NULL);
	snprintf(want, sizeof(want), "cannot load TLS certificate chain '%s'",
	         join(dir, "missing.pem"));
	CHECK_PREFIX(err, want);

	CHECK(kw_tls_server_ctx(join(dir, "server.pem"), join(dir, "client.key"), NULL, err,
	                        sizeof(err)) == NULL);
	/* OpenSSL's key loading already compares the key with the certificate. */
	snprintf(want, sizeof(want), "cannot load TLS private key '%s': ", join(dir, "client.key"));
	CHECK_PREFIX(err, want);
	CHECK(strstr(err, "mismatch") != NULL);

	CHECK(kw_tls_server_ctx(join(dir, "server.pem"), join(dir, "server.key"),
	                        join(dir, "missing.pem"), err, sizeof(err)) == NULL);
	snprintf(want, sizeof(want), "cannot load client CA '%s'", join(dir, "missing.pem"));
	CHECK_PREFIX(err, want);

	CHECK(kw_tls_client_ctx(join(dir, "client.pem"), join(dir, "server.key"),
	                        join(dir, "ca.pem"), err, sizeof(err)) == NULL);
	snprintf(want, sizeof(want), "cannot load client key '%s': ", join(dir, "server.key"));
	CHECK_PREFIX(err, want);
	CHECK(strstr(err, "mismatch") != NULL);
	CHECK(ERR_peek_error() == 0); /* the queue was drained into the message */
}

/* The error queue becomes its reasons, each once, in order. */
static void test_err_string(void)
{
	char out[256];
	ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
	ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
	ERR_raise(ERR_LIB_SSL, SSL_R_NO_CERTIFICATE_ASSIGNED);
	kw_tls_err_string(out, sizeof(out));
	CHECK(strcmp(out, "certificate verify failed; no certificate assigned") == 0);
	CHECK(ERR_peek_error() == 0);
	kw_tls_err_string(out, sizeof(out));
	CHECK(strcmp(out, "") == 0);
}

int main(void)
{
	dir = pki_make_tmp();
	CHECK(dir != NULL);
	test_mutual();
	test_refused();
	test_errors();
	test_err_string();
	rm_tree(dir);
	CHECK_DONE();
}
