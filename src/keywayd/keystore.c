/*
 * keystore.c - loading *.key files under a directory and indexing them by SKI
 * and RSA modulus digest (see keystore.h).
 *
 * Files are found, read and decoded by kw_keyfile (recursive walk, no
 * symlinked directory followed, permissions checked on the open fd, buffers
 * wiped); a file reached twice (a symlink next to its target, as in
 * Kubernetes secret volumes) is loaded once.
 */
#include "keystore.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>

#include "keyway/err.h"
#include "keyway/keyfile.h"
#include "keyway/keyid.h"
#include "pkcs11.h"

#define MAX_KEYS (1u << 24)

struct kwd_keystore {
	uint64_t id;
	size_t count;
	struct kwd_key *keys;
	/* Open addressing, linear probing; a slot holds key index + 1, 0 = empty. */
	uint32_t *ski_slots;
	uint32_t *digest_slots;
	size_t mask;             /* table size - 1 (a power of two) */
	struct kwd_p11_set *p11; /* the token keys' set, referenced while they are served */
};

static atomic_uint_fast64_t next_id = 1;

/* Loader state while walking. */
struct loader {
	const struct kwd_keystore_options *opts;
	struct kwd_keystore *ks;
	size_t cap;
	struct file_id {
		dev_t dev;
		ino_t ino;
	} * files; /* per key, parallel to ks->keys, to tell "same file twice" */
	char *err;
	size_t errlen;
};

static void set_err(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct loader *ld, const char *fmt, ...)
{
	va_list ap;
	if (ld->err == NULL || ld->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(ld->err, ld->errlen, fmt, ap);
	va_end(ap);
}

static void key_cleanup(struct kwd_key *k)
{
	EVP_PKEY_free(k->pkey); /* OpenSSL wipes the private components */
	free(k->path);
	free(k->label);
	memset(k, 0, sizeof(*k));
}

/* check_type fills type and bits, or refuses the key naming file and type. */
static int check_type(struct loader *ld, const char *path, const EVP_PKEY *pkey,
                      enum kw_key_type *type, unsigned *bits)
{
	int b = EVP_PKEY_get_bits(pkey);
	*bits = b > 0 ? (unsigned)b : 0;
	*type = (enum kw_key_type)kw_key_type_of(pkey);

	if (*type == KW_KEY_RSA) {
		if (*bits < 2048 || *bits > 4096) {
			set_err(ld, "%s: RSA key of %u bits is not supported (2048 to 4096 bits)",
			        path, *bits);
			return -KW_ECONFIG;
		}
		return 0;
	}
	if (*type == KW_KEY_EC) {
		char group[64] = "";
		size_t glen = 0;
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                   sizeof(group), &glen) != 1)
			snprintf(group, sizeof(group), "explicit parameters");
		ERR_clear_error();
		if (strcmp(group, "prime256v1") != 0 && strcmp(group, "secp384r1") != 0 &&
		    strcmp(group, "secp521r1") != 0) {
			set_err(ld, "%s: EC curve %s is not supported (P-256, P-384 or P-521)",
			        path, group);
			return -KW_ECONFIG;
		}
		return 0;
	}
	if (*type == KW_KEY_ED25519)
		return 0;
	const char *name = EVP_PKEY_get0_type_name(pkey);
	set_err(ld, "%s: %s keys are not supported (RSA, ECDSA or Ed25519)", path,
	        name != NULL ? name : "unknown");
	return -KW_ECONFIG;
}

static int add_key(struct loader *ld, const struct kw_keyfile *f, EVP_PKEY *pkey,
                   enum kw_key_type type, unsigned bits)
{
	struct kwd_keystore *ks = ld->ks;
	struct kwd_key k = {.pkey = pkey, .type = type, .bits = bits};

	const char *path = f->path;

	if (kw_key_ski(pkey, k.ski) != 0) {
		set_err(ld, "%s: cannot compute the key's SKI", path);
		ERR_clear_error();
		return -KW_ECONFIG;
	}
	if (type == KW_KEY_RSA) {
		if (kw_key_digest(pkey, k.digest) != 0) {
			set_err(ld, "%s: cannot compute the modulus digest", path);
			ERR_clear_error();
			return -KW_ECONFIG;
		}
		k.has_digest = true;
	}
	if (ks->count == MAX_KEYS) {
		set_err(ld, "%s: too many keys", path);
		return -KW_ECONFIG;
	}
	if (ks->count == ld->cap) {
		size_t ncap = ld->cap ? 2 * ld->cap : 16;
		struct kwd_key *n = realloc(ks->keys, ncap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		ks->keys = n;
		struct file_id *fi = realloc(ld->files, ncap * sizeof(*fi));
		if (fi == NULL)
			return -ENOMEM;
		ld->files = fi;
		ld->cap = ncap;
	}
	k.path = strdup(path);
	if (k.path == NULL)
		return -ENOMEM;
	k.index = (unsigned)ks->count;
	ld->files[ks->count].dev = f->dev;
	ld->files[ks->count].ino = f->ino;
	ks->keys[ks->count++] = k;
	return 0;
}

/*
 * add_token_keys adds the keys of set after the files. A token key has no
 * file: its "file id" is unique (dev -1, its position), so dedupe refuses a
 * token key and a file key (or two token keys) with the same SKI, naming both.
 */
static int add_token_keys(struct loader *ld, struct kwd_p11_set *set)
{
	size_t n = kwd_p11_set_count(set);

	for (size_t i = 0; i < n; i++) {
		const struct kwd_p11_key *pk = kwd_p11_set_key(set, i);
		struct kw_keyfile f = {.path = pk->name, .dev = (dev_t)-1, .ino = (ino_t)i};
		int rc;

		EVP_PKEY_up_ref(pk->pub);
		if ((rc = add_key(ld, &f, pk->pub, pk->type, pk->bits)) != 0) {
			EVP_PKEY_free(pk->pub);
			return rc;
		}
		struct kwd_key *k = &ld->ks->keys[ld->ks->count - 1];
		k->p11 = pk;
		k->device = ld->opts->p11_device;
		if (pk->label != NULL && (k->label = strdup(pk->label)) == NULL)
			return -ENOMEM;
	}
	return 0;
}

/* load_file decodes one file kw_keyfile_load_dir read and adds its key (consumes f). */
static int load_file(void *arg, struct kw_keyfile *f, char *err, size_t errlen)
{
	struct loader *ld = arg;
	EVP_PKEY *pkey = NULL;
	enum kw_key_type type;
	unsigned bits;
	int rc;

	if ((rc = kw_keyfile_parse(f, NULL, &pkey, err, errlen)) != 0)
		goto out;
	if ((rc = check_type(ld, f->path, pkey, &type, &bits)) != 0)
		goto out;
	if ((rc = add_key(ld, f, pkey, type, bits)) != 0)
		goto out;
	pkey = NULL; /* owned by the keystore now */
out:
	if (rc == -ENOMEM)
		set_err(ld, "%s: out of memory", f->path);
	EVP_PKEY_free(pkey);
	kw_keyfile_cleanup(f);
	return rc;
}

/* Compare key indices by what they index (qsort_r: no shared state across loads). */
static int cmp_ski(const void *a, const void *b, void *keys)
{
	const struct kwd_key *sort_keys = keys;
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
	int c = memcmp(sort_keys[i].ski, sort_keys[j].ski, KW_SKI_LEN);
	return c != 0 ? c : (i > j) - (i < j);
}

static int cmp_digest(const void *a, const void *b, void *keys)
{
	const struct kwd_key *sort_keys = keys;
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
	int c = memcmp(sort_keys[i].digest, sort_keys[j].digest, KW_DIGEST_LEN);
	return c != 0 ? c : (i > j) - (i < j);
}

/*
 * dedupe drops a key met twice through the same file (a symlink beside its
 * target) and refuses two files holding the same key. Sorting keeps it
 * O(n log n) for large key directories. Renumbers the survivors.
 */
static int dedupe(struct loader *ld)
{
	struct kwd_keystore *ks = ld->ks;
	uint32_t *order = malloc(ks->count * sizeof(*order));
	bool *drop = calloc(ks->count, sizeof(*drop));
	size_t n = 0, m;
	int rc = -ENOMEM;

	if (order == NULL || drop == NULL)
		goto out;
	for (size_t i = 0; i < ks->count; i++)
		order[i] = (uint32_t)i;
	qsort_r(order, ks->count, sizeof(*order), cmp_ski, ks->keys);
	for (size_t i = 1; i < ks->count; i++) {
		const struct kwd_key *a = &ks->keys[order[i - 1]], *b = &ks->keys[order[i]];
		if (memcmp(a->ski, b->ski, KW_SKI_LEN) != 0)
			continue;
		if (ld->files[order[i - 1]].dev == ld->files[order[i]].dev &&
		    ld->files[order[i - 1]].ino == ld->files[order[i]].ino) {
			drop[order[i]] = true; /* order[i] > order[i-1]: keep the first one met */
			continue;
		}
		char hex[2 * KW_SKI_LEN + 1];
		kw_hex(hex, a->ski, KW_SKI_LEN);
		set_err(ld, "%s and %s hold the same key (SKI %s); remove one", a->path, b->path,
		        hex);
		rc = -KW_ECONFIG;
		goto out;
	}
	for (size_t i = 0; i < ks->count; i++) {
		if (drop[i]) {
			key_cleanup(&ks->keys[i]);
			continue;
		}
		ks->keys[n] = ks->keys[i];
		ks->keys[n].index = (unsigned)n;
		n++;
	}
	ks->count = n;

	/* Same modulus, different public exponent: a digest lookup would be ambiguous. */
	m = 0;
	for (size_t i = 0; i < ks->count; i++)
		if (ks->keys[i].has_digest)
			order[m++] = (uint32_t)i;
	qsort_r(order, m, sizeof(*order), cmp_digest, ks->keys);
	for (size_t i = 1; i < m; i++) {
		const struct kwd_key *a = &ks->keys[order[i - 1]], *b = &ks->keys[order[i]];
		if (memcmp(a->digest, b->digest, KW_DIGEST_LEN) == 0) {
			set_err(ld, "%s and %s share the same RSA modulus; remove one", a->path,
			        b->path);
			rc = -KW_ECONFIG;
			goto out;
		}
	}
	rc = 0;
out:
	if (rc == -ENOMEM)
		set_err(ld, "out of memory");
	free(order);
	free(drop);
	return rc;
}

static size_t slot_hash(const uint8_t *id)
{
	/* SKIs and digests are hash outputs: their first bytes are already uniform. */
	uint64_t h;
	memcpy(&h, id, sizeof(h));
	return (size_t)h;
}

static int build_index(struct kwd_keystore *ks)
{
	size_t size = 16;
	while (size < 2 * ks->count)
		size *= 2;
	ks->mask = size - 1;
	ks->ski_slots = calloc(size, sizeof(uint32_t));
	ks->digest_slots = calloc(size, sizeof(uint32_t));
	if (ks->ski_slots == NULL || ks->digest_slots == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < ks->count; i++) {
		const struct kwd_key *k = &ks->keys[i];
		size_t s = slot_hash(k->ski) & ks->mask;
		while (ks->ski_slots[s] != 0)
			s = (s + 1) & ks->mask;
		ks->ski_slots[s] = (uint32_t)i + 1;
		if (!k->has_digest)
			continue;
		s = slot_hash(k->digest) & ks->mask;
		while (ks->digest_slots[s] != 0)
			s = (s + 1) & ks->mask;
		ks->digest_slots[s] = (uint32_t)i + 1;
	}
	return 0;
}

void kwd_keystore_free(struct kwd_keystore *ks)
{
	if (ks == NULL)
		return;
	for (size_t i = 0; i < ks->count; i++)
		key_cleanup(&ks->keys[i]);
	free(ks->keys);
	free(ks->ski_slots);
	free(ks->digest_slots);
	kwd_p11_set_unref(ks->p11);
	free(ks);
}

/* pem_count counts the *.pem files directly in dir and keeps the first name in first:
 * keys written as NAME.pem (OpenSSL's habit) are the usual reason a directory
 * has no *.key file. */
static size_t pem_count(const char *dir, char *first, size_t firstlen)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	struct dirent *e;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len <= 4 || strcmp(e->d_name + len - 4, ".pem") != 0)
			continue;
		if (n++ == 0)
			snprintf(first, firstlen, "%s", e->d_name);
	}
	closedir(d);
	return n;
}

/* no_keys_err says that dir has no key to serve, and how to fix the common case. */
static void no_keys_err(struct loader *ld, const char *dir)
{
	char first[256];
	size_t pems = pem_count(dir, first, sizeof(first));

	if (pems == 0) {
		set_err(ld, "no *.key files under %s", dir);
		return;
	}
	size_t stem = strlen(first) - 4;
	set_err(ld,
	        "no *.key files under %s, but %zu *.pem file%s (%s%s): keywayd loads only *.key; "
	        "fix: rename the private keys to NAME.key, e.g. mv %s/%s %s/%.*s.key",
	        dir, pems, pems == 1 ? "" : "s", first, pems == 1 ? "" : ", ...", dir, first, dir,
	        (int)stem, first);
}

int kwd_keystore_load(const char *dir, const struct kwd_keystore_options *opts,
                      struct kwd_keystore **out, char *err, size_t errlen)
{
	static const struct kwd_keystore_options defaults = {0};
	struct loader ld = {.opts = opts != NULL ? opts : &defaults, .err = err, .errlen = errlen};
	int rc;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	ld.ks = calloc(1, sizeof(*ld.ks));
	if (ld.ks == NULL)
		return -ENOMEM;
	ld.ks->id = atomic_fetch_add(&next_id, 1);

	struct kw_keyfile_options kf = {
	    .recursive = true,
	    .allow_group_readable = ld.opts->allow_group_readable,
	    .mode_fix = " or pass --allow-group-readable-keys",
	};
	if (dir != NULL && (rc = kw_keyfile_load_dir(dir, &kf, load_file, &ld, err, errlen)) < 0)
		goto err;
	if (ld.ks->count == 0 && dir != NULL) {
		no_keys_err(&ld, dir);
		rc = -KW_ECONFIG;
		goto err;
	}
	if (ld.opts->p11 != NULL) {
		ld.ks->p11 = kwd_p11_set_ref(ld.opts->p11);
		if ((rc = add_token_keys(&ld, ld.opts->p11)) != 0) {
			if (rc == -ENOMEM)
				set_err(&ld, "out of memory");
			goto err;
		}
	}
	if (ld.ks->count == 0) {
		set_err(&ld, "no key to serve");
		rc = -KW_ECONFIG;
		goto err;
	}
	if ((rc = dedupe(&ld)) != 0)
		goto err;
	if ((rc = build_index(ld.ks)) != 0) {
		set_err(&ld, "out of memory");
		goto err;
	}
	free(ld.files);
	*out = ld.ks;
	return 0;
err:
	free(ld.files);
	kwd_keystore_free(ld.ks);
	return rc;
}

uint64_t kwd_keystore_id(const struct kwd_keystore *ks)
{
	return ks->id;
}

size_t kwd_keystore_count(const struct kwd_keystore *ks)
{
	return ks->count;
}

const struct kwd_key *kwd_keystore_at(const struct kwd_keystore *ks, size_t i)
{
	return i < ks->count ? &ks->keys[i] : NULL;
}

const struct kwd_key *kwd_keystore_find_ski(const struct kwd_keystore *ks,
                                            const uint8_t ski[KW_SKI_LEN])
{
	for (size_t s = slot_hash(ski) & ks->mask; ks->ski_slots[s] != 0; s = (s + 1) & ks->mask) {
		const struct kwd_key *k = &ks->keys[ks->ski_slots[s] - 1];
		if (memcmp(k->ski, ski, KW_SKI_LEN) == 0)
			return k;
	}
	return NULL;
}

const struct kwd_key *kwd_keystore_find_digest(const struct kwd_keystore *ks,
                                               const uint8_t digest[KW_DIGEST_LEN])
{
	for (size_t s = slot_hash(digest) & ks->mask; ks->digest_slots[s] != 0;
	     s = (s + 1) & ks->mask) {
		const struct kwd_key *k = &ks->keys[ks->digest_slots[s] - 1];
		if (memcmp(k->digest, digest, KW_DIGEST_LEN) == 0)
			return k;
	}
	return NULL;
}
