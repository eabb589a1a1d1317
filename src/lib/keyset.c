/*
 * keyset.c - local private keys indexed by SKI (see keyway/keyset.h).
 *
 * A handful of keys (an operator's fallback for the keyservers): an array
 * searched by SKI is plenty.
 */
#include "keyway/keyset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <pthread.h>

#include "keyway/err.h"
#include "keyway/keyid.h"

#define MAX_KEY_FILE (1u << 20)
#define MAX_KEYS 4096

struct entry {
	uint8_t ski[KW_SKI_LEN];
	EVP_PKEY *pkey;
};

struct file {
	char *path;
	unsigned char *data; /* wiped once parsed */
	size_t len;
};

struct kw_keyset {
	atomic_uint refs;
	struct file *files; /* read by load, parsed (and wiped) by prepare */
	size_t nfiles;
	pthread_mutex_t mu; /* guards prepare */
	bool prepared;
	int prepare_rc;
	char prepare_err[512];
	struct entry *keys; /* immutable once prepared */
	size_t n, cap;
};

static int refuse_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag;
	*(int *)u = 1;
	return -1; /* never prompt: an encrypted key is refused */
}

/* read_file reads one opened key file: 0, 1 (not a regular file: skipped), or an error (err). */
static int read_file(int fd, const char *path, struct file *f, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) != 0) {
		int rc = -errno;
		snprintf(err, errlen, "%s: stat: %s", path, kw_strerror(rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode))
		return 1;
	if ((st.st_mode & 077) != 0) {
		snprintf(err, errlen, "%s: readable by group or others (mode %04o); chmod 600 %s",
		         path, (unsigned)(st.st_mode & 07777), path);
		return -KW_ECONFIG;
	}
	if (st.st_size > MAX_KEY_FILE) {
		snprintf(err, errlen, "%s: too large for a key file (%lld bytes)", path,
		         (long long)st.st_size);
		return -KW_ECONFIG;
	}
	if ((f->path = strdup(path)) == NULL || (f->data = malloc((size_t)st.st_size + 1)) == NULL)
		return -ENOMEM;
	while (f->len < (size_t)st.st_size) {
		ssize_t r = read(fd, f->data + f->len, (size_t)st.st_size - f->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int rc = -errno;
			snprintf(err, errlen, "%s: read: %s", path, kw_strerror(rc));
			return rc;
		}
		if (r == 0)
			break;
		f->len += (size_t)r;
	}
	return 0;
}

static void file_wipe(struct file *f)
{
	if (f->data != NULL)
		OPENSSL_cleanse(f->data, f->len);
	free(f->data);
	f->data = NULL;
	f->len = 0;
}

/* parse_key turns a file's bytes into a private key; 0 or -KW_ECONFIG with err set. */
static int parse_key(const struct file *f, OSSL_LIB_CTX *libctx, EVP_PKEY **out, char *err,
                     size_t errlen)
{
	BIO *bio = NULL;
	int asked = 0, rc = -KW_ECONFIG;

	*out = NULL;
	if ((bio = BIO_new_mem_buf(f->data, (int)f->len)) == NULL)
		return -ENOMEM;
	if (f->len > 11 && memmem(f->data, f->len, "-----BEGIN ", 11) != NULL) {
		*out = PEM_read_bio_PrivateKey_ex(bio, NULL, refuse_password, &asked, libctx, NULL);
	} else {
		const unsigned char *p = f->data;
		*out = d2i_AutoPrivateKey_ex(NULL, &p, (long)f->len, libctx, NULL);
	}
	if (*out != NULL) {
		rc = 0;
	} else if (asked) {
		snprintf(err, errlen,
		         "%s: encrypted keys are not supported; decrypt with openssl pkey -in %s "
		         "-out NEWFILE",
		         f->path, f->path);
	} else {
		snprintf(
		    err, errlen,
		    "%s: not a private key (expected PEM or DER PKCS#8, PKCS#1 RSA or SEC1 EC)",
		    f->path);
	}
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}

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

static bool is_key_name(const char *name)
{
	size_t n = strlen(name);
	return n > 4 && strcmp(name + n - 4, ".key") == 0;
}

int kw_keyset_load(const char *dir, struct kw_keyset **out, char *err, size_t errlen)
{
	struct kw_keyset *ks = NULL;
	DIR *d = NULL;
	size_t cap = 0;
	int rc = 0;

	*out = NULL;
	err[0] = '\0';
	if ((ks = calloc(1, sizeof(*ks))) == NULL)
		return -ENOMEM;
	atomic_init(&ks->refs, 1);
	pthread_mutex_init(&ks->mu, NULL);
	if ((d = opendir(dir)) == NULL) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot read the directory: %s", dir, kw_strerror(rc));
		goto err;
	}
	for (struct dirent *de; (de = readdir(d)) != NULL;) {
		char path[PATH_MAX];
		if (!is_key_name(de->d_name))
			continue;
		if (ks->nfiles == MAX_KEYS) {
			snprintf(err, errlen, "%s: more than %d key files", dir, MAX_KEYS);
			rc = -KW_ECONFIG;
			goto err;
		}
		if (ks->nfiles == cap) {
			size_t ncap = cap ? 2 * cap : 8;
			struct file *f = realloc(ks->files, ncap * sizeof(*f));
			if (f == NULL) {
				rc = -ENOMEM;
				goto err;
			}
			ks->files = f;
			cap = ncap;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		/* O_NONBLOCK: a FIFO named x.key must not hang the loader. */
		int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: cannot open: %s", path, kw_strerror(rc));
			goto err;
		}
		struct file *f = &ks->files[ks->nfiles];
		memset(f, 0, sizeof(*f));
		rc = read_file(fd, path, f, err, errlen);
		close(fd);
		if (rc != 0) {
			file_wipe(f);
			free(f->path);
		} else {
			ks->nfiles++;
		}
		if (rc < 0)
			goto err;
	}
	if (ks->nfiles == 0) {
		snprintf(err, errlen, "%s: no key files (*.key) in the directory", dir);
		rc = -KW_ECONFIG;
		goto err;
	}
	closedir(d);
	*out = ks;
	return 0;
err:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", dir);
	if (d != NULL)
		closedir(d);
	kw_keyset_free(ks);
	return rc;
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
		rc = parse_key(&ks->files[i], libctx, &pkey, ks->prepare_err,
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
		file_wipe(&ks->files[i]);
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
	for (size_t i = 0; i < ks->nfiles; i++) {
		file_wipe(&ks->files[i]);
		free(ks->files[i].path);
	}
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
