/*
 * keyway/buf.h - a growable byte buffer with a read offset.
 *
 * Data lives in [data + off, data + len). Consumers advance off; producers
 * append at len. kw_buf_compact moves unread bytes to the front.
 *
 * A buffer marked secret (kw_buf_set_secret) carries key results -- decrypted
 * premaster blocks, signatures: every byte it stops holding is wiped at once,
 * when consumed, left behind by a compaction or dropped by a reset, not only
 * when the storage is freed.
 */
#include <stdbool.h>
#ifndef KEYWAY_BUF_H
#define KEYWAY_BUF_H

#include <stddef.h>
#include <stdint.h>

struct kw_buf {
	uint8_t *data; /* heap storage, NULL until first growth */
	size_t off;    /* first unread byte */
	size_t len;    /* end of written bytes */
	size_t cap;    /* allocated size */
	bool secret;   /* wipe bytes as soon as they are no longer held */
};

#define KW_BUF_INIT                                                                                \
	{                                                                                          \
		NULL, 0, 0, 0, false                                                               \
	}

/* kw_buf_cleanup frees the storage, wiping it first; the buffer is empty after. */
void kw_buf_cleanup(struct kw_buf *b);
/* kw_buf_reserve makes room for n more bytes after len; 0 or -ENOMEM. */
int kw_buf_reserve(struct kw_buf *b, size_t n);
/* kw_buf_append copies n bytes to the end; 0 or -ENOMEM. */
int kw_buf_append(struct kw_buf *b, const void *p, size_t n);
/*
 * kw_buf_appendf appends printf-formatted text (without its terminating NUL,
 * though one is kept after len), growing the buffer as much as needed: the
 * text is never cut. 0, -ENOMEM or -EINVAL (a bad format).
 */
int kw_buf_appendf(struct kw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* kw_buf_consume marks n unread bytes as read; resets to empty when all are. */
void kw_buf_consume(struct kw_buf *b, size_t n);
/* kw_buf_compact moves the unread bytes to the front. */
void kw_buf_compact(struct kw_buf *b);
/* kw_buf_reset empties the buffer, keeping its storage. */
void kw_buf_reset(struct kw_buf *b);
/* kw_buf_set_secret marks b as carrying key material (see above). */
static inline void kw_buf_set_secret(struct kw_buf *b)
{
	b->secret = true;
}

static inline size_t kw_buf_unread(const struct kw_buf *b)
{
	return b->len - b->off;
}
static inline uint8_t *kw_buf_head(const struct kw_buf *b)
{
	return b->data + b->off;
}
static inline uint8_t *kw_buf_tail(const struct kw_buf *b)
{
	return b->data + b->len;
}

#endif
