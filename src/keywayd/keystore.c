/*
 * keystore.c - loading *.key files under a directory and indexing them by SKI
 * and RSA modulus digest (see keystore.h).
 *
 * The walk uses openat/fdopendir relative to the parent directory's fd and
 * never follows a symlinked directory, so symlink loops cannot recurse; a
 * file reached twice (a symlink next to its target, as in Kubernetes secret
 * volumes) is loaded once. Permissions are checked with fstat on the opened
 * fd, the file is read into memory, parsed there and the buffer is wiped.
 */
#include "keystore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keyway/err.h"
#include "keyway/keyid.h"

#define MAX_DEPTH 32           /* deeper trees are surely a mistake */
#define MAX_KEY_FILE (1 << 20) /* a key file is a few KB; refuse anything huge */
#define MAX_KEYS (1u << 24)

struct kwd_keystore {
	atomic_uint refs;
	uint64_t id;
	size_t count;
	struct kwd_key *keys;
	/* Open addressing, linear probing; a slot holds key index + 1, 0 = empty. */
	uint32_t *ski_slots;
	uint32_t *digest_slots;
	size_t mask; /* table size - 1 (a power of two) */
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
	memset(k, 0, sizeof(*k));
}

static int pw_refuse(char *buf, int size, int rwflag, void *u)
{
	*(int *)u = 1;
	return -1;
}

static bool contains(const uint8_t *p, size_t n, const char *s)
{
	return memmem(p, n, s, strlen(s)) != NULL;
}

/*
 * parse_key decodes a private key from buf. PEM if it has a BEGIN line
 * (PKCS#8, PKCS#1 or SEC1 inside), DER otherwise. Returns 0, -KW_ECONFIG with
 * err set, or -ENOMEM.
 */
static int parse_key(struct loader *ld, const char *path, const uint8_t *buf, size_t len,
                     EVP_PKEY **out)
{
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	int asked_password = 0;
	int rc = -KW_ECONFIG;

	*out = NULL;
	if (len > INT_MAX)
		goto bad;
	bio = BIO_new_mem_buf(buf, (int)len);
	if (bio == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (contains(buf, len, "-----BEGIN ")) {
		pkey = PEM_read_bio_PrivateKey(bio, NULL, pw_refuse, &asked_password);
		if (asked_password || contains(buf, len, "-----BEGIN ENCRYPTED PRIVATE KEY") ||
		    contains(buf, len, "Proc-Type: 4,ENCRYPTED"))
			goto encrypted;
	} else {
		const unsigned char *p = buf;
		X509_SIG *p8 = d2i_X509_SIG(NULL, &p, (long)len);
		bool is_p8 = p8 != NULL && p == buf + len;
		X509_SIG_free(p8);
		if (is_p8)
			goto encrypted;
		p = buf;
		pkey = d2i_AutoPrivateKey(NULL, &p, (long)len);
	}
	if (pkey == NULL)
		goto bad;
	*out = pkey;
	pkey = NULL;
	rc = 0;
	goto out;

encrypted:
	set_err(
	    ld,
	    "%s: encrypted keys are not supported; decrypt with openssl pkey -in %s -out NEWFILE",
	    path, path);
	goto out;
bad:
	set_err(ld, "%s: not a private key (expected PEM or DER PKCS#8, PKCS#1 RSA or SEC1 EC)",
	        path);
out:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return rc;
}

/* check_type fills type and bits, or refuses the key naming file and type. */
static int check_type(struct loader *ld, const char *path, const EVP_PKEY *pkey,
                      enum kwd_key_type *type, unsigned *bits)
{
	int b = EVP_PKEY_get_bits(pkey);
	*bits = b > 0 ? (unsigned)b : 0;

	if (EVP_PKEY_is_a(pkey, "RSA")) {
		if (*bits < 2048 || *bits > 4096) {
			set_err(ld, "%s: RSA key of %u bits is not supported (2048 to 4096 bits)",
			        path, *bits);
			return -KW_ECONFIG;
		}
		*type = KWD_KEY_RSA;
		return 0;
	}
	if (EVP_PKEY_is_a(pkey, "EC")) {
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
		*type = KWD_KEY_EC;
		return 0;
	}
	if (EVP_PKEY_is_a(pkey, "ED25519")) {
		*type = KWD_KEY_ED25519;
		return 0;
	}
	const char *name = EVP_PKEY_get0_type_name(pkey);
	set_err(ld, "%s: %s keys are not supported (RSA, ECDSA or Ed25519)", path,
	        name != NULL ? name : "unknown");
	return -KW_ECONFIG;
}

/* read_all reads the opened file into a fresh buffer; the caller wipes it. */
static int read_all(struct loader *ld, const char *path, int fd, off_t size, uint8_t **out,
                    size_t *outlen)
{
	size_t cap = (size_t)size + 1, len = 0;
	uint8_t *buf = malloc(cap);

	*out = NULL;
	if (buf == NULL)
		return -ENOMEM;
	for (;;) {
		/* Read one byte past the expected size to notice a file that grew. */
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			set_err(ld, "%s: read: %s", path, strerror(e));
			OPENSSL_cleanse(buf, cap);
			free(buf);
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == cap) {
			OPENSSL_cleanse(buf, cap);
			free(buf);
			set_err(ld, "%s: file changed while being read", path);
			return -KW_ECONFIG;
		}
	}
	*out = buf;
	*outlen = len;
	return 0;
}

static int add_key(struct loader *ld, const char *path, const struct stat *st, EVP_PKEY *pkey,
                   enum kwd_key_type type, unsigned bits)
{
	struct kwd_keystore *ks = ld->ks;
	struct kwd_key k = {.pkey = pkey, .type = type, .bits = bits};

	if (kw_key_ski(pkey, k.ski) != 0) {
		set_err(ld, "%s: cannot compute the key's SKI", path);
		ERR_clear_error();
		return -KW_ECONFIG;
	}
	if (type == KWD_KEY_RSA) {
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
		struct file_id *f = realloc(ld->files, ncap * sizeof(*f));
		if (f == NULL)
			return -ENOMEM;
		ld->files = f;
		ld->cap = ncap;
	}
	k.path = strdup(path);
	if (k.path == NULL)
		return -ENOMEM;
	k.index = (unsigned)ks->count;
	ld->files[ks->count].dev = st->st_dev;
	ld->files[ks->count].ino = st->st_ino;
	ks->keys[ks->count++] = k;
	return 0;
}

static int load_file(struct loader *ld, int dirfd, const char *name, const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	EVP_PKEY *pkey = NULL;
	enum kwd_key_type type;
	unsigned bits;
	struct stat st;
	int rc;
	/* O_NONBLOCK: a FIFO named x.key must not hang the loader. */
	int fd = openat(dirfd, name, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		rc = -errno;
		set_err(ld, "%s: open: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		set_err(ld, "%s: stat: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = 0; /* a directory or device named *.key is not a key file */
		goto out;
	}
	if ((st.st_mode & 077) != 0 && !ld->opts->allow_group_readable) {
		set_err(ld,
		        "%s: readable by group or others (mode %04o); chmod 600 %s or pass "
		        "--allow-group-readable-keys",
		        path, (unsigned)(st.st_mode & 07777), path);
		rc = -KW_ECONFIG;
		goto out;
	}
	if (st.st_size > MAX_KEY_FILE) {
		set_err(ld, "%s: too large for a key file (%lld bytes)", path,
		        (long long)st.st_size);
		rc = -KW_ECONFIG;
		goto out;
	}
	if ((rc = read_all(ld, path, fd, st.st_size, &buf, &len)) != 0)
		goto out;
	if ((rc = parse_key(ld, path, buf, len, &pkey)) != 0)
		goto out;
	if ((rc = check_type(ld, path, pkey, &type, &bits)) != 0)
		goto out;
	if ((rc = add_key(ld, path, &st, pkey, type, bits)) != 0)
		goto out;
	pkey = NULL; /* owned by the keystore now */
out:
	if (rc == -ENOMEM)
		set_err(ld, "%s: out of memory", path);
	EVP_PKEY_free(pkey);
	if (buf != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	close(fd);
	return rc;
}

static bool is_key_name(const char *name)
{
	size_t n = strlen(name);
	return n > 4 && strcmp(name + n - 4, ".key") == 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * walk_dir loads the keys of the directory open as fd (consumed), in name
 * order so indices and "duplicate" messages are stable.
 */
static int walk_dir(struct loader *ld, int fd, const char *path, int depth)
{
	DIR *d = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	char *sub = NULL;
	int rc = 0;

	if (depth > MAX_DEPTH) {
		close(fd);
		set_err(ld, "%s: directories nested too deeply", path);
		return -KW_ECONFIG;
	}
	d = fdopendir(fd);
	if (d == NULL) {
		rc = -errno;
		close(fd);
		set_err(ld, "%s: %s", path, strerror(-rc));
		return rc;
	}
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (e == NULL) {
			if (errno != 0) {
				rc = -errno;
				set_err(ld, "%s: readdir: %s", path, strerror(-rc));
				goto out;
			}
			break;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 32;
			char **nn = realloc(names, ncap * sizeof(*nn));
			if (nn == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			names = nn;
			cap = ncap;
		}
		if ((names[n] = strdup(e->d_name)) == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);

	for (size_t i = 0; i < n && rc == 0; i++) {
		struct stat st;
		free(sub);
		if (asprintf(&sub, "%s/%s", path, names[i]) < 0) {
			sub = NULL;
			rc = -ENOMEM;
			break;
		}
		if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno == ENOENT)
				continue; /* removed while we walked */
			rc = -errno;
			set_err(ld, "%s: stat: %s", sub, strerror(-rc));
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int cfd = openat(dirfd(d), names[i],
			                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd < 0) {
				rc = -errno;
				set_err(ld, "%s: %s", sub, strerror(-rc));
				break;
			}
			rc = walk_dir(ld, cfd, sub, depth + 1);
		} else if ((S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) && is_key_name(names[i])) {
			rc = load_file(ld, dirfd(d), names[i], sub);
		}
	}
	if (rc == -ENOMEM)
		set_err(ld, "%s: out of memory", path);
out:
	free(sub);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
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

static void keystore_free(struct kwd_keystore *ks)
{
	if (ks == NULL)
		return;
	for (size_t i = 0; i < ks->count; i++)
		key_cleanup(&ks->keys[i]);
	free(ks->keys);
	free(ks->ski_slots);
	free(ks->digest_slots);
	free(ks);
}

int kwd_keystore_load(const char *dir, const struct kwd_keystore_options *opts,
                      struct kwd_keystore **out, char *err, size_t errlen)
{
	static const struct kwd_keystore_options defaults = {0};
	struct loader ld = {.opts = opts != NULL ? opts : &defaults, .err = err, .errlen = errlen};
	int rc, fd;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	ld.ks = calloc(1, sizeof(*ld.ks));
	if (ld.ks == NULL)
		return -ENOMEM;
	atomic_init(&ld.ks->refs, 1);
	ld.ks->id = atomic_fetch_add(&next_id, 1);

	/* The top directory itself may be a symlink: the operator named it. */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		set_err(&ld, "%s: %s", dir, strerror(-rc));
		goto err;
	}
	/* Strip trailing slashes so file names in messages read dir/x.key. */
	size_t dl = strlen(dir);
	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	char *top = strndup(dir, dl);
	if (top == NULL) {
		close(fd);
		rc = -ENOMEM;
		goto err;
	}
	rc = walk_dir(&ld, fd, top, 0);
	free(top);
	if (rc != 0)
		goto err;
	if (ld.ks->count == 0) {
		set_err(&ld, "no *.key files under %s", dir);
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
	keystore_free(ld.ks);
	return rc;
}

struct kwd_keystore *kwd_keystore_ref(struct kwd_keystore *ks)
{
	if (ks != NULL)
		atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
	return ks;
}

void kwd_keystore_unref(struct kwd_keystore *ks)
{
	if (ks == NULL)
		return;
	if (atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_release) != 1)
		return;
	atomic_thread_fence(memory_order_acquire);
	keystore_free(ks);
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
