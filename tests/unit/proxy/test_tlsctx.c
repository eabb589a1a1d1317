/*
 * test_tlsctx.c - the proxy's certificate sets: SNI picks the certificate
 * naming the server (wildcards too, else the first), ALPN, no tickets
 * without --resumption, references held by connections, publishing, and
 * the load errors.
 */
#include <string.h>

#include "check.h"
#include "pki.h"
#include "tls_pair.h"
#include "tlsctx.h"
#include "keyway/err.h"
#include "keyway/tls.h"
#include "keywayd/keygen.h"

static char *dir;
static SSL_CTX *client_ctx;

/* make_certs writes ca.pem, a.pem/a.key (a.test) and b.pem/b.key (b.test, *.wild.test). */
static void make_certs(void)
{
	EVP_PKEY *cak = pki_genkey();
	X509 *ca = pki_mkcert(cak, "test CA", NULL, NULL, NULL);

	fixture_write_pem(dir, "ca.pem", ca, NULL, 0);
	pki_issue(dir, "a", "a", ca, cak, "DNS:a.test");
	pki_issue(dir, "b", "b", ca, cak, "DNS:b.test,DNS:*.wild.test");
	X509_free(ca);
	EVP_PKEY_free(cak);
}

/* load1 loads a set of one certificate with o's ALPN list alpn (NULL: the default). */
static struct kpx_tls *load1(const char *cert, const char *key, char **alpn, char *err)
{
	char *certs[] = {(char *)cert, NULL}, *keys[] = {(char *)key, NULL};
	struct kpx_options o = {.certs = certs, .keys = keys, .alpn = alpn};
	return kpx_tls_load(&o, err, 512);
}

/* serve handshakes with t under sni (NULL: none), offering alpn; returns the CN served. */
static const char *serve(struct kpx_tls *t, const char *sni, const char *alpn_wire, char *alpn_out)
{
	static char cn[64];
	struct tls_pair p;

	cn[0] = '\0';
	tls_pair_attach(&p, kpx_tls_ssl_new(t), SSL_new(client_ctx));
	if (sni != NULL)
		SSL_set_tlsext_host_name(p.client, sni);
	if (alpn_wire != NULL)
		SSL_set_alpn_protos(p.client, (const unsigned char *)alpn_wire,
		                    (unsigned)strlen(alpn_wire));
	CHECK(tls_pair_handshake(&p));
	CHECK_EQ(SSL_get_verify_result(p.client), X509_V_OK);
	X509 *peer = SSL_get0_peer_certificate(p.client);
	if (peer != NULL)
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
		                          sizeof(cn));
	if (alpn_out != NULL) {
		const unsigned char *sel = NULL;
		unsigned len = 0;
		SSL_get0_alpn_selected(p.client, &sel, &len);
		memcpy(alpn_out, sel != NULL ? (const char *)sel : "", len);
		alpn_out[len] = '\0';
	}
	/* Without --resumption the server sends no ticket. */
	CHECK_EQ(SSL_CTX_get_num_tickets(SSL_get_SSL_CTX(p.server)), 0);
	tls_pair_close(&p);
	return cn;
}

static void test_sni(void)
{
	char *certs[] = {(char *)join(dir, "a.pem"), (char *)join(dir, "b.pem"), NULL};
	char *keys[] = {(char *)join(dir, "a.key"), (char *)join(dir, "b.key"), NULL};
	char *alpn[] = {"h2", "http/1.1", NULL};
	struct kpx_options o = {.certs = certs, .keys = keys, .alpn = alpn};
	char err[512], sel[256];

	struct kpx_tls *t = kpx_tls_load(&o, err, sizeof(err));
	if (t == NULL)
		fprintf(stderr, "load: %s\n", err);
	CHECK(t != NULL);
	if (t == NULL)
		return;
	CHECK_EQ(kpx_tls_count(t), 2);
	CHECK(strcmp(serve(t, "a.test", NULL, NULL), "a") == 0);
	CHECK(strcmp(serve(t, "b.test", NULL, NULL), "b") == 0);
	CHECK(strcmp(serve(t, "x.wild.test", NULL, NULL), "b") == 0);
	CHECK(strcmp(serve(t, "y.x.wild.test", NULL, NULL), "a") == 0); /* one label only */
	CHECK(strcmp(serve(t, "unknown.test", NULL, NULL), "a") == 0);
	CHECK(strcmp(serve(t, NULL, NULL, NULL), "a") == 0);

	/* ALPN: the server's preference among the client's offers; none in common, none. */
	serve(t, "b.test", "\x08http/1.1\x02h2", sel);
	CHECK(strcmp(sel, "h2") == 0);
	serve(t, "b.test", "\x08http/1.1", sel);
	CHECK(strcmp(sel, "http/1.1") == 0);
	serve(t, "b.test", "\x06spdy/3", sel);
	CHECK(strcmp(sel, "") == 0);

	/* A connection keeps its set alive after every other reference is gone. */
	SSL *ssl = kpx_tls_ssl_new(t);
	kpx_tls_unref(t);
	CHECK(SSL_get_SSL_CTX(ssl) != NULL && SSL_CTX_get0_certificate(SSL_get_SSL_CTX(ssl)));
	SSL_free(ssl);
}

static void test_publish(void)
{
	char err[512], sel[256];
	uint64_t gen = 0;
	struct kpx_tls *t1 = load1(join(dir, "a.pem"), join(dir, "a.key"), NULL, err);
	struct kpx_tls *t2 = load1(join(dir, "a.pem"), join(dir, "a.key"), NULL, err);

	CHECK(t1 != NULL && t2 != NULL);
	uint64_t g0 = kpx_tls_generation();
	kpx_tls_publish(t1);
	CHECK_EQ(kpx_tls_generation(), g0 + 1);
	struct kpx_tls *cur = kpx_tls_current(&gen);
	CHECK(cur == t1);
	CHECK_EQ(gen, g0 + 1);
	/* One certificate: any name gets it; the default ALPN list is http/1.1. */
	CHECK(strcmp(serve(cur, "b.test", "\x02h2\x08http/1.1", sel), "a") == 0);
	CHECK(strcmp(sel, "http/1.1") == 0);
	kpx_tls_publish(t2);
	CHECK_EQ(kpx_tls_generation(), g0 + 2);
	/* The old set lives on while held. */
	CHECK_EQ(kpx_tls_count(cur), 1);
	kpx_tls_unref(cur);
	cur = kpx_tls_current(&gen);
	CHECK(cur == t2);
	kpx_tls_unref(cur);
	kpx_tls_publish(NULL);
	CHECK(kpx_tls_current(&gen) == NULL);
	kpx_tls_unref(NULL);
}

static void test_errors(void)
{
	char err[512], want[1024];
	char *bad[] = {"h2", "", NULL};

	CHECK(load1(join(dir, "missing.pem"), join(dir, "a.key"), NULL, err) == NULL);
	snprintf(want, sizeof(want),
	         "cannot load the certificate chain %s: No such file or directory; fix: check "
	         "the path",
	         join(dir, "missing.pem"));
	CHECK(strcmp(err, want) == 0);

	CHECK(load1(join(dir, "b.pem"), join(dir, "a.key"), NULL, err) == NULL);
	snprintf(want, sizeof(want),
	         "the private key %s does not match the certificate in %s; fix: give each "
	         "--cert with its own --key, in the same order",
	         join(dir, "a.key"), join(dir, "b.pem"));
	if (strcmp(err, want) != 0)
		fprintf(stderr, "got  %s\nwant %s\n", err, want);
	CHECK(strcmp(err, want) == 0); /* whole: no OpenSSL reason appended */

	CHECK(load1(join(dir, "a.pem"), join(dir, "a.key"), bad, err) == NULL);
	CHECK(strcmp(err, "--alpn '': a protocol name is 1 to 255 bytes; fix: e.g. --alpn "
	                  "http/1.1") == 0);
}

static void test_alpn_wire(void)
{
	char *names[] = {"h2", "http/1.1", NULL}, long_name[257], err[512];
	char *too_long[] = {long_name, NULL};
	unsigned char *w = NULL;
	size_t len = 0;

	CHECK_EQ(kpx_alpn_wire(names, &w, &len, err, sizeof(err)), 0);
	CHECK_EQ(len, 12);
	CHECK(w != NULL && memcmp(w, "\x02h2\x08http/1.1", 12) == 0);
	free(w);
	memset(long_name, 'p', 256);
	long_name[256] = '\0';
	CHECK_EQ(kpx_alpn_wire(too_long, &w, &len, err, sizeof(err)), -KW_ECONFIG);
	long_name[255] = '\0';
	CHECK_EQ(kpx_alpn_wire(too_long, &w, &len, err, sizeof(err)), 0);
	CHECK(len == 256 && w[0] == 255);
	free(w);
}

int main(void)
{
	char err[512];
	dir = make_tmpdir();
	CHECK(dir != NULL);
	make_certs();
	client_ctx = kw_tls_client_ctx(NULL, NULL, join(dir, "ca.pem"), err, sizeof(err));
	CHECK(client_ctx != NULL);
	test_sni();
	test_publish();
	test_errors();
	test_alpn_wire();
	SSL_CTX_free(client_ctx);
	rm_tree(dir);
	CHECK_DONE();
}
