/*
 * keyfile.c - finding, reading and decoding private key files (see
 * keyway/keyfile.h).
 *
 * The walk uses openat/fdopendir relative to the parent directory's fd and
 * never follows a symlinked directory, so symlink loops cannot recurse.
 * Permissions are checked with fstat on the opened fd, the file is read into
 * memory, parsed there and the buffer is wiped.
 */
#include "keyway/keyfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keyway/err.h"

#define MAX_DEPTH 32           /* deeper trees are surely a mistake */
#define MAX_KEY_FILE (1 << 20) /* a key file is a few KB; refuse anything huge */

int kw_pem_no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag;
	if (u != NULL)
		*(int *)u = 1;
	return -1;
}

bool kw_keyfile_name_ok(const char *name)
{
	size_t n = strlen(name);
	return n > 4 && strcmp(name + n - 4, ".key") == 0;
}

void kw_keyfile_cleanup(struct kw_keyfile *f)
{
	if (f == NULL)
		return;
	if (f->data != NULL)
		OPENSSL_cleanse(f->data, f->len);
	free(f->data);
	free(f->path);
	memset(f, 0, sizeof(*f));
}

/* read_all reads the opened file into f->data, noticing a file that grew. */
static int read_all(int fd, off_t size, struct kw_keyfile *f, char *err, size_t errlen)
{
	size_t cap = (size_t)size + 1;

	if ((f->data = malloc(cap)) == NULL)
		return -ENOMEM;
	for (;;) {
		/* Read one byte past the expected size to notice a file that grew. */
		ssize_t n = read(fd, f->data + f->len, cap - f->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;
			snprintf(err, errlen, "%s: read: %s", f->path, kw_strerror(rc));
			return rc;
		}
		if (n == 0)
			return 0;
		f->len += (size_t)n;
		if (f->len == cap) {
			snprintf(err, errlen, "%s: file changed while being read", f->path);
			return -KW_ECONFIG;
		}
	}
}

int kw_keyfile_read(int dirfd, const char *name, const char *path,
                    const struct kw_keyfile_options *opts, struct kw_keyfile *out, char *err,
                    size_t errlen)
{
	struct kw_keyfile f = {0};
	struct stat st;
	int rc;
	/* O_NONBLOCK: a FIFO named x.key must not hang the loader. */
	int fd = openat(dirfd, name, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, kw_strerror(rc));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: stat: %s", path, kw_strerror(rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = 1; /* a directory or device named *.key is not a key file */
		goto out;
	}
	if ((st.st_mode & 077) != 0 && !opts->allow_group_readable) {
		snprintf(err, errlen, "%s: readable by group or others (mode %04o); chmod 600 %s%s",
		         path, (unsigned)(st.st_mode & 07777), path,
		         opts->mode_fix != NULL ? opts->mode_fix : "");
		rc = -KW_ECONFIG;
		goto out;
	}
	if (st.st_size > MAX_KEY_FILE) {
		snprintf(err, errlen, "%s: too large for a key file (%lld bytes)", path,
		         (long long)st.st_size);
		rc = -KW_ECONFIG;
		goto out;
	}
	f.dev = st.st_dev;
	f.ino = st.st_ino;
	if ((f.path = strdup(path)) == NULL)
		rc = -ENOMEM;
	else
		rc = read_all(fd, st.st_size, &f, err, errlen);
out:
	close(fd);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", path);
	if (rc == 0)
		*out = f;
	else
		kw_keyfile_cleanup(&f);
	return rc;
}

static bool contains(const unsigned char *p, size_t n, const char *s)
{
	return memmem(p, n, s, strlen(s)) != NULL;
}

/* is_encrypted_der tells a DER EncryptedPrivateKeyInfo (PKCS#8) from a plain key. */
static bool is_encrypted_der(const unsigned char *buf, size_t len)
{
	const unsigned char *p = buf;
	X509_SIG *p8 = d2i_X509_SIG(NULL, &p, (long)len);
	bool is_p8 = p8 != NULL && p == buf + len;
	X509_SIG_free(p8);
	return is_p8;
}

int kw_keyfile_parse(const struct kw_keyfile *f, OSSL_LIB_CTX *libctx, EVP_PKEY **out, char *err,
                     size_t errlen)
{
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	int asked = 0, rc = -KW_ECONFIG;
	bool encrypted = false;

	*out = NULL;
	if (f->len > INT_MAX)
		goto bad;
	if (contains(f->data, f->len, "-----BEGIN ")) {
		if ((bio = BIO_new_mem_buf(f->data, (int)f->len)) == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		pkey =
		    PEM_read_bio_PrivateKey_ex(bio, NULL, kw_pem_no_password, &asked, libctx, NULL);
		encrypted = asked ||
		            contains(f->data, f->len, "-----BEGIN ENCRYPTED PRIVATE KEY") ||
		            contains(f->data, f->len, "Proc-Type: 4,ENCRYPTED");
	} else if (!(encrypted = is_encrypted_der(f->data, f->len))) {
		const unsigned char *p = f->data;
		pkey = d2i_AutoPrivateKey_ex(NULL, &p, (long)f->len, libctx, NULL);
	}
	if (encrypted) {
		snprintf(
		    err, errlen,
		    "%s: encrypted keys are not supported; decrypt with openssl pkey -in %s -out "
		    "NEWFILE",
		    f->path, f->path);
		goto out;
	}
	if (pkey == NULL)
		goto bad;
	*out = pkey;
	pkey = NULL;
	rc = 0;
	goto out;
bad:
	snprintf(err, errlen,
	         "%s: not a private key (expected PEM or DER PKCS#8, PKCS#1 RSA or SEC1 EC)",
	         f->path);
out:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return rc;
}

/* The walk's state. */
struct walk {
	const struct kw_keyfile_options *opts;
	kw_keyfile_fn fn;
	void *arg;
	int count; /* files handed to fn */
	char *err;
	size_t errlen;
};

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* list_names reads the names of d (but . and ..) into a sorted array, even on failure. */
static int list_names(DIR *d, const char *path, char ***out, size_t *outn, char *err, size_t errlen)
{
	size_t cap = 0;
	int rc = 0;

	*out = NULL;
	*outn = 0;
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (e == NULL) {
			rc = -errno;
			if (rc != 0)
				snprintf(err, errlen, "%s: readdir: %s", path, kw_strerror(rc));
			break;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (*outn == cap) {
			size_t ncap = cap ? 2 * cap : 32;
			char **nn = realloc(*out, ncap * sizeof(*nn));
			if (nn == NULL)
				return -ENOMEM;
			*out = nn;
			cap = ncap;
		}
		if (((*out)[*outn] = strdup(e->d_name)) == NULL)
			return -ENOMEM;
		(*outn)++;
	}
	if (rc == 0 && *outn > 0)
		qsort(*out, *outn, sizeof(**out), cmp_names);
	return rc;
}

static int walk_dir(struct walk *w, int fd, const char *path, int depth);

/* walk_entry handles one entry of the directory open as dfd. */
static int walk_entry(struct walk *w, int dfd, const char *name, const char *path, int depth)
{
	struct stat st;
	int rc;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno == ENOENT)
			return 0; /* removed while we walked */
		rc = -errno;
		snprintf(w->err, w->errlen, "%s: stat: %s", path, kw_strerror(rc));
		return rc;
	}
	if (S_ISDIR(st.st_mode)) {
		if (!w->opts->recursive)
			return 0;
		int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0) {
			rc = -errno;
			snprintf(w->err, w->errlen, "%s: %s", path, kw_strerror(rc));
			return rc;
		}
		return walk_dir(w, cfd, path, depth + 1);
	}
	if ((!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) || !kw_keyfile_name_ok(name))
		return 0;
	struct kw_keyfile f;
	rc = kw_keyfile_read(dfd, name, path, w->opts, &f, w->err, w->errlen);
	if (rc != 0)
		return rc > 0 ? 0 : rc;
	w->count++;
	return w->fn(w->arg, &f, w->err, w->errlen);
}

/* walk_dir hands fn the key files of the directory open as fd (consumed), in name order. */
static int walk_dir(struct walk *w, int fd, const char *path, int depth)
{
	DIR *d = NULL;
	char **names = NULL, *sub = NULL;
	size_t n = 0;
	int rc;

	if (depth > MAX_DEPTH) {
		close(fd);
		snprintf(w->err, w->errlen, "%s: directories nested too deeply", path);
		return -KW_ECONFIG;
	}
	if ((d = fdopendir(fd)) == NULL) {
		rc = -errno;
		close(fd);
		snprintf(w->err, w->errlen, "%s: %s", path, kw_strerror(rc));
		return rc;
	}
	rc = list_names(d, path, &names, &n, w->err, w->errlen);
	for (size_t i = 0; i < n && rc == 0; i++) {
		free(sub);
		if (asprintf(&sub, "%s/%s", path, names[i]) < 0) {
			sub = NULL;
			rc = -ENOMEM;
			break;
		}
		rc = walk_entry(w, dirfd(d), names[i], sub, depth);
	}
	if (rc == -ENOMEM)
		snprintf(w->err, w->errlen, "%s: out of memory", path);
	free(sub);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

int kw_keyfile_load_dir(const char *dir, const struct kw_keyfile_options *opts, kw_keyfile_fn fn,
                        void *arg, char *err, size_t errlen)
{
	struct walk w = {.opts = opts, .fn = fn, .arg = arg, .err = err, .errlen = errlen};
	int rc;

	err[0] = '\0';
	/* The top directory itself may be a symlink: the operator named it. */
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot read the directory: %s", dir, kw_strerror(rc));
		return rc;
	}
	/* Strip trailing slashes so file names in messages read dir/x.key. */
	size_t dl = strlen(dir);
	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	char *top = strndup(dir, dl);
	if (top == NULL) {
		close(fd);
		snprintf(err, errlen, "%s: out of memory", dir);
		return -ENOMEM;
	}
	rc = walk_dir(&w, fd, top, 0);
	free(top);
	return rc < 0 ? rc : w.count;
}
