/* buf.c - growable byte buffer (see keyway/buf.h). */
#include "keyway/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

void kw_buf_cleanup(struct kw_buf *b)
{
	if (b->data != NULL) {
		/* Buffers carry plaintext signatures and decrypted blocks: wipe them. */
		OPENSSL_cleanse(b->data, b->cap);
		free(b->data);
	}
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

/* wipe clears [from, to) of a secret buffer's storage. */
static void wipe(struct kw_buf *b, size_t from, size_t to)
{
	if (b->secret && b->data != NULL && to > from)
		OPENSSL_cleanse(b->data + from, to - from);
}

int kw_buf_reserve(struct kw_buf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return 0;
	if (b->off > 0 && b->cap - kw_buf_unread(b) >= n) {
		kw_buf_compact(b);
		return 0;
	}
	size_t need = b->len + n;
	if (need < b->len)
		return -ENOMEM;
	size_t cap = b->cap ? b->cap : 1024;
	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	uint8_t *p = malloc(cap);
	if (p == NULL)
		return -ENOMEM;
	if (b->data != NULL) {
		memcpy(p, b->data, b->len);
		OPENSSL_cleanse(b->data, b->cap);
		free(b->data);
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int kw_buf_append(struct kw_buf *b, const void *p, size_t n)
{
	int rc = kw_buf_reserve(b, n);
	if (rc < 0)
		return rc;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void kw_buf_consume(struct kw_buf *b, size_t n)
{
	if (n >= kw_buf_unread(b)) {
		wipe(b, 0, b->len);
		b->off = b->len = 0;
		return;
	}
	wipe(b, b->off, b->off + n);
	b->off += n;
}

void kw_buf_compact(struct kw_buf *b)
{
	if (b->off == 0)
		return;
	size_t n = kw_buf_unread(b);
	memmove(b->data, b->data + b->off, n);
	wipe(b, n, b->len);
	b->off = 0;
	b->len = n;
}

void kw_buf_reset(struct kw_buf *b)
{
	wipe(b, 0, b->len);
	b->off = b->len = 0;
}

int kw_buf_appendf(struct kw_buf *b, const char *fmt, ...)
{
	for (size_t want = 256;;) {
		if (kw_buf_reserve(b, want) < 0)
			return -ENOMEM;
		size_t room = b->cap - b->len;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf((char *)kw_buf_tail(b), room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -EINVAL;
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return 0;
		}
		want = (size_t)n + 1;
	}
}
