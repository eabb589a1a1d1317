/*
 * ops.h - executing one keyless request against a keystore.
 *
 * A kwd_signer belongs to one worker thread and caches initialised OpenSSL
 * contexts per (key, operation), so the hot path does no provider fetches;
 * the cache is dropped when the keystore changes.
 */
#ifndef KEYWAYD_OPS_H
#define KEYWAYD_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "keyway/protocol.h"
#include "keystore.h"

#define KWD_RESULT_MAX 1024 /* largest signature/decrypt block (RSA-4096 is 512) with room */

struct kwd_result {
	uint8_t opcode;         /* KW_OP_RESPONSE, KW_OP_PONG or KW_OP_ERROR */
	uint8_t error;          /* enum kw_proto_error; KW_ERR_NONE on success */
	const uint8_t *payload; /* points into buf, or into the request (pong; NULL if it had
				   no payload); for KW_OP_ERROR the one error byte */
	size_t len;
	uint8_t buf[KWD_RESULT_MAX];
};

struct kwd_signer;

int kwd_signer_new(struct kwd_signer **out);
void kwd_signer_free(struct kwd_signer *s);
/* kwd_signer_reset drops the cached contexts (and their key references) now. */
void kwd_signer_reset(struct kwd_signer *s);

/*
 * kwd_execute answers one decoded request (any opcode) following the table in
 * docs/protocol.md: ping -> pong echoing the payload; key operations -> a
 * signature / raw decrypted block, or an error code. Never fails as a
 * function: every outcome is a response in *res. The result buffer is wiped
 * by the caller after it is encoded (kwd_result_cleanse).
 */
void kwd_execute(struct kwd_signer *s, const struct kwd_keystore *ks, const struct kw_msg *req,
		 struct kwd_result *res);

void kwd_result_cleanse(struct kwd_result *res);

#endif
