/*
 * keyway/tls.h - OpenSSL context helpers shared by keywayd, the keyless
 * client and the tools.
 */
#ifndef KEYWAY_TLS_H
#define KEYWAY_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/*
 * kw_tls_server_ctx builds a TLS 1.2+1.3 server context from a certificate
 * chain file and key file, requiring and verifying client certificates
 * against client_ca (if non-NULL). Offers gokeyless' TLS 1.2 suites
 * (ECDHE-{ECDSA,RSA}-AES256-GCM-SHA384) and the AES-GCM ones besides.
 * On failure returns NULL and writes the reason (file, what failed) to err.
 */
SSL_CTX *kw_tls_server_ctx(const char *cert, const char *key, const char *client_ca, char *err,
                           size_t errlen);

/*
 * kw_tls_client_ctx builds a client context that verifies the server against
 * ca and presents cert/key (each may be NULL: no client certificate / no
 * verification is never allowed — ca is required). NULL + err on failure.
 */
SSL_CTX *kw_tls_client_ctx(const char *cert, const char *key, const char *ca, char *err,
                           size_t errlen);

/* kw_tls_err_string drains the OpenSSL error queue into out ("" if empty). */
void kw_tls_err_string(char *out, size_t outlen);

/*
 * kw_tls_err_explain drains the OpenSSL error queue after a file of `what`
 * ("certificate", "private key", "CA certificate") failed to load, and puts
 * in out what is wrong in plain words and the fix, without OpenSSL's reason
 * strings (those go to the debug log): "No such file or directory; fix:
 * check the path", "not a PEM certificate (no -----BEGIN line); fix: ...".
 */
void kw_tls_err_explain(char *out, size_t outlen, const char *what);

#endif
