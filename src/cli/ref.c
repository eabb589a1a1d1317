/*
 * ref.c - `keyway ref --cert CERT.pem`: print the "KEYWAY KEY" reference
 * PEM block naming the key of CERT, for applications that only read PEM
 * key files (nginx, HAProxy). The block carries the public key and a
 * keyway: URI with the key's SKI; append it to the certificate file or
 * keep it in its own file.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "commands.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/keyref.h"

static const char usage[] = "usage: keyway ref --cert CERT.pem\n\n"
                            "Print the KEYWAY KEY reference PEM block for CERT's key.";

int kw_cli_ref(const struct subcommand *sc, int argc, char **argv)
{
	char *cert = NULL, *uri_cert = NULL;
	struct kw_option opts[] = {
	    KW_OPT_STR("cert", &cert, "FILE", "the key's certificate (or public key), PEM or DER",
	               .required = true),
	    KW_OPT_STR("uri-cert", &uri_cert, "PATH",
	               "the certificate path written in the URI (default: CERT's absolute path)"),
	    KW_OPT_END,
	};
	char abs[PATH_MAX];
	EVP_PKEY *pub = NULL;
	char *uri = NULL, *pem = NULL;
	uint8_t ski[KW_SKI_LEN];
	int rc;

	if (!kw_cli_options(opts, argc, argv, "ref", usage, &rc))
		return rc;
	rc = 1;
	int lrc = kw_load_public_key(cert, &pub);
	if (lrc < 0) {
		fprintf(stderr, "keyway ref: %s: %s\n", cert,
		        lrc == -KW_ECRYPTO ? "not a certificate or key (PEM or DER)"
		                           : kw_strerror(lrc));
		goto out;
	}
	if (!EVP_PKEY_is_a(pub, "RSA") && !EVP_PKEY_is_a(pub, "EC") &&
	    !EVP_PKEY_is_a(pub, "ED25519")) {
		fprintf(stderr, "keyway ref: %s: keyless serves RSA, EC and Ed25519 keys only\n",
		        cert);
		goto out;
	}
	if (uri_cert == NULL) {
		if (realpath(cert, abs) == NULL) {
			fprintf(stderr, "keyway ref: %s: %s\n", cert, kw_strerror(-errno));
			goto out;
		}
		uri_cert = abs;
	} else if (uri_cert[0] != '/') {
		fprintf(stderr, "keyway ref: --uri-cert must be an absolute path\n");
		rc = KW_CLI_EXIT_USAGE;
		goto out;
	}
	if (kw_key_ski(pub, ski) < 0 || (uri = kw_keyref_uri(ski, uri_cert)) == NULL ||
	    kw_keyref_pem(uri, pub, &pem) < 0) {
		fprintf(stderr, "keyway ref: %s: cannot encode the reference\n", cert);
		goto out;
	}
	fputs(pem, stdout);
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	if (uri_cert == abs)
		uri_cert = NULL;
	free(pem);
	free(uri);
	EVP_PKEY_free(pub);
	kw_config_free(opts);
	return rc;
}
