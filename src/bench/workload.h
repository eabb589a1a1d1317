/*
 * workload.h - what keyway-bench sends and how it checks the answers: a few
 * precomputed requests per operation (random digests, Ed25519 messages,
 * RSA-encrypted secrets, ping payloads) and a check of each answer, with
 * full signature verification against the public key when asked.
 */
#ifndef KWB_WORKLOAD_H
#define KWB_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyway/protocol.h"

enum kwb_op {
	KWB_OP_PING,
	KWB_OP_RSA_PKCS1_SHA256,
	KWB_OP_RSA_PSS_SHA256,
	KWB_OP_ECDSA_SHA256,
	KWB_OP_ED25519,
	KWB_OP_RSA_DECRYPT,
};

/* The --op names, indexed by enum kwb_op, NULL-terminated. */
extern const char *const kwb_op_names[];

#define KWB_NPAYLOADS 16
#define KWB_MAX_PAYLOAD 1024 /* an RSA-8192 block */
#define KWB_SECRET_LEN 48    /* a TLS 1.2 premaster secret */

struct kwb_workload {
	enum kwb_op op;
	EVP_PKEY *key; /* public key (owned); NULL for ping without --key */
	size_t len;    /* payload length */
	uint8_t data[KWB_NPAYLOADS][KWB_MAX_PAYLOAD];
	uint8_t secret[KWB_NPAYLOADS][KWB_SECRET_LEN];
	struct kw_msg msgs[KWB_NPAYLOADS]; /* ready to submit; point into data */
};

/*
 * kwb_workload_init prepares the requests for op; key (ownership taken, NULL
 * allowed for ping) must suit it. 0, or -EINVAL/-KW_ECRYPTO with a reason
 * in err.
 */
int kwb_workload_init(struct kwb_workload *w, enum kwb_op op, EVP_PKEY *key, char *err,
                      size_t errlen);
void kwb_workload_cleanup(struct kwb_workload *w);

/*
 * kwb_check checks the answer p/len to request i: shape always (echo, block
 * and signature sizes, decrypted secret); the signature itself when verify.
 * 0, -KW_EPROTO (wrong answer) or -KW_ECRYPTO (signature does not verify).
 */
int kwb_check(const struct kwb_workload *w, unsigned i, const uint8_t *p, size_t len, bool verify);

#endif
