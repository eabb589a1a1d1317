/*
 * keygen.h - test keys generated at run time and written in the formats
 * keywayd accepts, into a private temporary directory.
 */
#ifndef KEYWAY_TEST_KEYGEN_H
#define KEYWAY_TEST_KEYGEN_H

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

enum key_format { FMT_PKCS8_PEM, FMT_TRAD_PEM, FMT_DER, FMT_PUBKEY_PEM };

static inline EVP_PKEY *gen_rsa(unsigned bits)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
}

static inline EVP_PKEY *gen_ec(const char *curve)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}

static inline EVP_PKEY *gen_named(const char *type)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, type);
}

/* join returns dir/name in a static rotating buffer (enough for one statement). */
static inline const char *join(const char *dir, const char *name)
{
	static char bufs[4][4096];
	static int next;
	char *b = bufs[next++ & 3];
	snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
	return b;
}

static inline FILE *open_mode(const char *path, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return NULL;
	(void)fchmod(fd, mode); /* umask may have narrowed it */
	return fdopen(fd, "wb");
}

/* write_key writes key to path in fmt with the given mode; 0 on success. */
static inline int write_key(const char *path, EVP_PKEY *key, enum key_format fmt, mode_t mode)
{
	FILE *f = open_mode(path, mode);
	int ok = 0;
	if (f == NULL)
		return -1;
	switch (fmt) {
	case FMT_PKCS8_PEM:
		ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
		break;
	case FMT_TRAD_PEM: {
		BIO *b = BIO_new_fp(f, BIO_NOCLOSE);
		ok = b != NULL &&
		     PEM_write_bio_PrivateKey_traditional(b, key, NULL, NULL, 0, NULL, NULL);
		BIO_free(b);
		break;
	}
	case FMT_DER: {
		unsigned char *der = NULL;
		int len = i2d_PrivateKey(key, &der);
		ok = len > 0 && fwrite(der, 1, (size_t)len, f) == (size_t)len;
		OPENSSL_clear_free(der, len > 0 ? (size_t)len : 0);
		break;
	}
	case FMT_PUBKEY_PEM:
		ok = PEM_write_PUBKEY(f, key);
		break;
	}
	if (fclose(f) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

static inline int write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = open_mode(path, mode);
	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static inline char *make_tmpdir(void)
{
	char tmpl[] = "/tmp/kwtest-XXXXXX";
	char *d = mkdtemp(tmpl);
	return d != NULL ? strdup(d) : NULL;
}

static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline void rm_tree(char *dir)
{
	if (dir != NULL)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

#endif
