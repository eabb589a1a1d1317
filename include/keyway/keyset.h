/*
 * keyway/keyset.h - a directory of local private keys indexed by SKI: the
 * keyless client's fallback keys, used when no keyserver answers in time.
 *
 * Two steps, as the provider needs them: kw_keyset_load reads the files into
 * memory (in the privileged parent, before a fork or chroot, where no key
 * may be decoded yet), kw_keyset_prepare decodes them where they are used
 * (once; any thread, any number of times). Once prepared the set is
 * immutable, so any thread may look keys up; it is reference counted so
 * every backend that uses it can hold it. Files named *.key directly in the
 * directory are read (PEM or DER, unencrypted); a key file readable by group
 * or others is refused, as keywayd refuses it. File contents are wiped once
 * decoded, keys freed when the last reference goes.
 */
#ifndef KEYWAY_KEYSET_H
#define KEYWAY_KEYSET_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyway/protocol.h"

struct kw_keyset;

/*
 * kw_keyset_load reads every *.key file of dir. 0, or a negative code with a
 * sentence naming the file and the fix in err (-KW_ECONFIG: a bad file, a
 * directory without keys; -errno: the directory cannot be read).
 */
int kw_keyset_load(const char *dir, struct kw_keyset **out, char *err, size_t errlen);

/*
 * kw_keyset_prepare decodes the keys read by kw_keyset_load with libctx
 * (NULL: the default one), the first time it is called; later calls return
 * the first one's result. 0, or -KW_ECONFIG with the file and the reason in
 * err. Until it succeeds kw_keyset_find finds nothing.
 */
int kw_keyset_prepare(struct kw_keyset *ks, OSSL_LIB_CTX *libctx, char *err, size_t errlen);

/* kw_keyset_ref takes a reference (NULL ok) and returns ks. */
struct kw_keyset *kw_keyset_ref(struct kw_keyset *ks);

/* kw_keyset_free drops a reference; the last one frees the keys. NULL ok. */
void kw_keyset_free(struct kw_keyset *ks);

/* kw_keyset_find returns the key with this SKI (owned by ks) or NULL; thread-safe once prepared. */
EVP_PKEY *kw_keyset_find(const struct kw_keyset *ks, const uint8_t ski[KW_SKI_LEN]);

/* kw_keyset_count is the number of keys held (0 until prepared). */
size_t kw_keyset_count(const struct kw_keyset *ks);

#endif
