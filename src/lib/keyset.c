/*
 * keyset.c - local private keys indexed by SKI (see keyway/keyset.h).
 *
 * A handful of keys (an operator's fallback for the keyservers): an array
 * searched by SKI is plenty.
 */
#include "keyway/keyset.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <pthread.h>

#include "keyway/err.h"
#include "keyway/keyfile.h"
#include "keyway/keyid.h"

#define MAX_KEYS 4096

struct entry {
	uint8_t ski[KW_SKI_LEN];
	EVP_PKEY *pkey;
};

struct kw_keyset {
	atomic_uint refs;
	const char *dir;          /* while loading, for messages */
	struct kw_keyfile *files; /* read by load, parsed (and wiped) by prepare */
	size_t nfiles, capfiles;
	pthread_mutex_t mu; /* guards prepare */
	bool prepared;
	int prepare_rc;
	char prepare_err[512];
	struct entry *keys; /* immutable once prepared */
	size_t n, cap;
};

static int add(struct kw_keyset *ks, EVP_PKEY *pkey, const char *path, char *err, size_t errlen)
{
	uint8_t ski[KW_SKI_LEN];

	if (kw_key_ski(pkey, ski) < 0) {
		snprintf(err, errlen, "%s: cannot compute the key's SKI", path);
		return -KW_ECONFIG;
	}
	for (size_t i = 0; i < ks->n; i++)
		if (memcmp(ks->keys[i].ski, ski, KW_SKI_LEN) == 0)
			return 1; /* the same key twice: the first one serves */
	if (ks->n == MAX_KEYS) {
		snprintf(err, errlen, "%s: more than %d keys", path, MAX_KEYS);
		return -KW_ECONFIG;
	}
	if (ks->n == ks->cap) {
		size_t cap = ks->cap ? 2 * ks->cap : 8;
		struct entry *k = realloc(ks->keys, cap * sizeof(*k));
		if (k == NULL)
			return -ENOMEM;
		ks->keys = k;
		ks->cap = cap;
	}
	memcpy(ks->keys[ks->n].ski, ski, KW_SKI_LEN);
	ks->keys[ks->n].pkey = pkey;
	ks->n++;
	return 0;
}

/* keep_file holds one file read by kw_keyfile_load_dir until prepare decodes it. */
static int keep_file(void *arg, struct kw_keyfile *f, char *err, size_t errlen)
{
	struct kw_keyset *ks = arg;

	if (ks->nfiles == MAX_KEYS) {
		snprintf(err, errlen, "%s: more than %d key files", ks->dir, MAX_KEYS);
		kw_keyfile_cleanup(f);
		return -KW_ECONFIG;
	}
	if (ks->nfiles == ks->capfiles) {
		size_t cap = ks->capfiles ? 2 * ks->capfiles : 8;
		struct kw_keyfile *nf = realloc(ks->files, cap * sizeof(*nf));
		if (nf == NULL) {
			snprintf(err, errlen, "%s: out of memory", ks->dir);
			kw_keyfile_cleanup(f);
			return -ENOMEM;
		}
		ks->files = nf;
		ks->capfiles = cap;
	}
	ks->files[ks->nfiles++] = *f;
	return 0;
}

int kw_keyset_load(const char *dir, struct kw_keyset **out, char *err, size_t errlen)
{
	static const struct kw_keyfile_options flat = {.recursive = false};
	struct kw_keyset *ks = NULL;
	int rc;

	*out = NULL;
	err[0] = '\0';
	if ((ks = calloc(1, sizeof(*ks))) == NULL)
		return -ENOMEM;
	atomic_init(&ks->refs, 1);
	pthread_mutex_init(&ks->mu, NULL);
	ks->dir = dir;
	rc = kw_keyfile_load_dir(dir, &flat, keep_file, ks, err, errlen);
	ks->dir = NULL;
	if (rc == 0) {
		snprintf(err, errlen, "%s: no key files (*.key) in the directory", dir);
		rc = -KW_ECONFIG;
	}
	if (rc < 0) {
		kw_keyset_free(ks);
		return rc;
	}
	*out = ks;
	return 0;
}

int kw_keyset_prepare(struct kw_keyset *ks, OSSL_LIB_CTX *libctx, char *err, size_t errlen)
{
	int rc = 0;

	pthread_mutex_lock(&ks->mu);
	if (ks->prepared) {
		rc = ks->prepare_rc;
		goto out;
	}
	for (size_t i = 0; i < ks->nfiles && rc == 0; i++) {
		EVP_PKEY *pkey = NULL;
		rc = kw_keyfile_parse(&ks->files[i], libctx, &pkey, ks->prepare_err,
		                      sizeof(ks->prepare_err));
		if (rc == 0 && (rc = add(ks, pkey, ks->files[i].path, ks->prepare_err,
		                         sizeof(ks->prepare_err))) != 0)
			EVP_PKEY_free(pkey);
		if (rc > 0)
			rc = 0;
	}
	if (rc == -ENOMEM)
		snprintf(ks->prepare_err, sizeof(ks->prepare_err), "out of memory");
	for (size_t i = 0; i < ks->nfiles; i++)
		kw_keyfile_cleanup(&ks->files[i]);
	ks->nfiles = 0;
	ks->prepared = true;
	ks->prepare_rc = rc;
out:
	if (rc < 0)
		snprintf(err, errlen, "%s", ks->prepare_err);
	pthread_mutex_unlock(&ks->mu);
	return rc;
}

struct kw_keyset *kw_keyset_ref(struct kw_keyset *ks)
{
	if (ks != NULL)
		atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
	return ks;
}

void kw_keyset_free(struct kw_keyset *ks)
{
	if (ks == NULL || atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < ks->n; i++)
		EVP_PKEY_free(ks->keys[i].pkey); /* OpenSSL clears private key material on free */
	for (size_t i = 0; i < ks->nfiles; i++)
		kw_keyfile_cleanup(&ks->files[i]);
	free(ks->files);
	free(ks->keys);
	pthread_mutex_destroy(&ks->mu);
	free(ks);
}

EVP_PKEY *kw_keyset_find(const struct kw_keyset *ks, const uint8_t ski[KW_SKI_LEN])
{
	if (ks == NULL || !ks->prepared)
		return NULL;
	for (size_t i = 0; i < ks->n; i++)
		if (memcmp(ks->keys[i].ski, ski, KW_SKI_LEN) == 0)
			return ks->keys[i].pkey;
	return NULL;
}

size_t kw_keyset_count(const struct kw_keyset *ks)
{
	return ks != NULL && ks->prepared ? ks->n : 0;
}
