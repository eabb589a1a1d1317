/*
 * pkcs11.h - private keys on PKCS#11 tokens: RFC 7512 URIs (parsed by
 * p11-kit), modules loaded with dlopen and called directly, the keys of each
 * URI found and indexed by the SKI / modulus digest of their public half,
 * and the keyless operations run on the token.
 *
 * A kwd_p11_set is what the --pkcs11 URIs select at one load (start-up or
 * SIGHUP): its tokens (module + slot, the login, a pool of sessions; shared
 * with the previous set when it serves the same token) and their keys. It is
 * reference-counted: the keystore serving it and every device job in flight
 * hold a reference, so a reload never pulls a token out from under an
 * operation. Operations block on the token and must run on a device thread
 * (device.h), never on a worker's loop.
 */
#ifndef KEYWAYD_PKCS11_H
#define KEYWAYD_PKCS11_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyway/keytype.h"
#include "keyway/opcodes.h"
#include "keyway/protocol.h"

struct kwd_p11_token;
struct kwd_p11_set;

struct kwd_p11_options {
	const char *module;      /* --pkcs11-module; a URI's module-path wins */
	const char *const *uris; /* --pkcs11, in order */
	size_t nuris;
	bool allow_group_readable; /* pin-source files readable by group/others */
	unsigned max_sessions;     /* sessions per token; 0 = the token's own limit */
};

/* One private key on a token and what identifies it to clients. */
struct kwd_p11_key {
	struct kwd_p11_token *token;
	unsigned long handle; /* CK_OBJECT_HANDLE of the private key */
	EVP_PKEY *pub;        /* public key, built from the token's attributes */
	enum kw_key_type type;
	unsigned bits; /* modulus or field size */
	uint8_t ski[KW_SKI_LEN];
	bool has_digest; /* RSA only */
	uint8_t digest[KW_DIGEST_LEN];
	uint8_t *modulus; /* RSA: n, (bits + 7) / 8 bytes big-endian */
	char *label;      /* CKA_LABEL; NULL when the object has none */
	char *name;       /* "pkcs11:token=T;object=L;id=%.." for messages */
};

/*
 * kwd_p11_load loads the modules, logs in to every token the URIs select and
 * reads their private keys. Refused with a sentence in err (the PIN never in
 * it): a URI p11-kit cannot parse, no module (neither --pkcs11-module nor
 * module-path), a module that cannot be loaded or initialised, no token
 * matching, a wrong PIN, a pin-source file that cannot be read or is
 * readable by others, no private key selected, a key whose public half
 * cannot be found or whose type keywayd cannot serve. Returns 0 with *out
 * (one reference), -KW_ECONFIG or -ENOMEM.
 */
int kwd_p11_load(const struct kwd_p11_options *o, struct kwd_p11_set **out, char *err,
                 size_t errlen);

/*
 * kwd_p11_set_ref takes a reference; kwd_p11_set_unref drops one (NULL ok).
 * The last one tears the set down (sessions closed, modules finalised when
 * unused) on a thread of its own, so a worker dropping an old generation
 * never waits on a token; kwd_p11_wait_teardowns waits for those to end
 * (before exit).
 */
struct kwd_p11_set *kwd_p11_set_ref(struct kwd_p11_set *s);
void kwd_p11_set_unref(struct kwd_p11_set *s);
void kwd_p11_wait_teardowns(void);

size_t kwd_p11_set_count(const struct kwd_p11_set *s);
const struct kwd_p11_key *kwd_p11_set_key(const struct kwd_p11_set *s, size_t i);

/*
 * kwd_p11_run runs the key opcode d on key with in (the length already
 * checked by kw_opcode_check), writing the result as a file key's would be
 * (DER ECDSA, a k-byte raw RSA block) into out. It borrows one of the
 * token's sessions, waiting while all are busy (device threads only).
 * Returns KW_ERR_NONE, KW_ERR_CRYPTO (the token refused the input) or
 * KW_ERR_INTERNAL (the token, a session or the login failed; the session is
 * dropped and a new one opened next time).
 */
enum kw_proto_error kwd_p11_run(const struct kwd_p11_key *key, const struct kw_opcode_desc *d,
                                const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                                size_t *out_len);

/* kwd_p11_rv_name names a CK_RV for messages ("CKR_PIN_INCORRECT", or hex). */
const char *kwd_p11_rv_name(unsigned long rv, char *buf, size_t len);

#endif
