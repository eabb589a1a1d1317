/*
 * acl.h - per-client key authorization (--acl FILE).
 *
 * One rule a line, '#' starts a comment:
 *
 *     allow CLIENT KEYS [OPS]
 *
 * CLIENT is spki:HEX (SHA-256 of the client certificate's SubjectPublicKeyInfo,
 * DER), dns:NAME (a DNS subjectAltName, case-insensitive), cn:NAME (the subject
 * commonName, exact), uid:N (a Unix-socket peer, SO_PEERCRED) or *; KEYS is a
 * comma-separated list of SKIs in hex, label:NAME (a token key's label) or *;
 * OPS is a comma-separated list of sign and decrypt, sign when left out.
 *
 * An ACL is immutable once loaded and owned by the generation serving it
 * (gen.h), so a SIGHUP reload swaps whole rule sets and every request is
 * checked against the set current when its batch started.
 */
#ifndef KEYWAYD_ACL_H
#define KEYWAYD_ACL_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "keystore.h"
#include "keyway/protocol.h"

/* What a request needs: the ACL's OPS. */
enum { KWD_ACL_SIGN = 1u, KWD_ACL_DECRYPT = 2u };

/* The verdict on a request; the denials index the metrics' reason label. */
enum kwd_acl_verdict {
	KWD_ACL_ALLOW = -1,
	KWD_ACL_DENY_CLIENT = 0, /* no rule names this client */
	KWD_ACL_DENY_KEY,        /* rules name the client, none of them this key */
	KWD_ACL_DENY_OP,         /* a rule names client and key, not this operation */
	KWD_ACL_NREASON,
};

/* kwd_acl_reason_name is the metrics label of a denial: client, key, operation. */
const char *kwd_acl_reason_name(enum kwd_acl_verdict v);

struct kwd_acl;

/*
 * kwd_acl_load reads path. A malformed line is refused with "PATH:LINE: what
 * is wrong; fix: ..." in err. Returns 0 with *out owned by the caller, or
 * -KW_ECONFIG/-errno.
 */
int kwd_acl_load(const char *path, struct kwd_acl **out, char *err, size_t errlen);

/* kwd_acl_free frees acl. NULL ok. */
void kwd_acl_free(struct kwd_acl *acl);

/* kwd_acl_count is the number of rules. */
size_t kwd_acl_count(const struct kwd_acl *acl);

/* kwd_acl_op_of is what opcode needs: KWD_ACL_DECRYPT for the RSA decryptions, else sign. */
unsigned kwd_acl_op_of(uint8_t opcode);

/* kwd_acl_check decides whether id may use key for op (KWD_ACL_SIGN or KWD_ACL_DECRYPT). */
enum kwd_acl_verdict kwd_acl_check(const struct kwd_acl *acl, const struct kwd_identity *id,
                                   const struct kwd_key *key, unsigned op);

/*
 * kwd_acl_request finds the key a request m names (*key; NULL for a request
 * that is not a key operation or names no known key) and, with acl (NULL: no
 * --acl), decides whether id may use it. A request naming no known key is
 * left to the executor, which answers it as such.
 */
enum kwd_acl_verdict kwd_acl_request(const struct kwd_acl *acl, const struct kwd_identity *id,
                                     const struct kwd_keystore *ks, const struct kw_msg *m,
                                     const struct kwd_key **key);

#endif
