/*
 * trust.h - what client certificates keywayd trusts: the --client-ca
 * certificates and, with --client-crl, their revocation lists.
 *
 * Once --client-crl is given every CA in --client-ca must have a CRL signed
 * by it in that file, so no CA is left unchecked by mistake, and OpenSSL
 * checks each client certificate against its issuer's CRL
 * (X509_V_FLAG_CRL_CHECK). The digest over both files tells a reload whether
 * the trust changed, in which case open connections are verified again.
 */
#ifndef KEYWAYD_TRUST_H
#define KEYWAYD_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define KWD_TRUST_DIGEST_LEN 32

/*
 * kwd_trust_apply installs the CRLs of crl_file (NULL: none) in ctx's
 * certificate store, whose CAs came from ca_file, and computes digest over
 * both files as read. 0, or -KW_ECONFIG/-errno with the file, what is wrong
 * and the fix in err.
 */
int kwd_trust_apply(SSL_CTX *ctx, const char *ca_file, const char *crl_file,
                    uint8_t digest[KWD_TRUST_DIGEST_LEN], char *err, size_t errlen);

/*
 * kwd_trust_no_resumption makes sure ctx keeps no session cache and issues no
 * session tickets (TLS 1.2 or 1.3), so a client whose certificate was revoked
 * cannot resume a session; 0, or -1 if OpenSSL would not have it.
 */
int kwd_trust_no_resumption(SSL_CTX *ctx);

#endif
