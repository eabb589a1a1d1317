/* test_buf.c - the byte buffer: append, consume, and formatted appends that never cut. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "keyway/buf.h"

static void test_append_consume(void)
{
	struct kw_buf b = KW_BUF_INIT;
	CHECK_EQ(kw_buf_append(&b, "hello", 5), 0);
	CHECK_EQ(kw_buf_unread(&b), 5);
	kw_buf_consume(&b, 2);
	CHECK(memcmp(kw_buf_head(&b), "llo", 3) == 0);
	kw_buf_consume(&b, 3); /* everything read: back to empty */
	CHECK_EQ(b.off, 0);
	CHECK_EQ(b.len, 0);
	kw_buf_cleanup(&b);
	CHECK(b.data == NULL && b.cap == 0);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* A secret buffer wipes what it stops holding at once: consumed, compacted, reset. */
static void test_secret_wipes(void)
{
	struct kw_buf b = KW_BUF_INIT;
	kw_buf_set_secret(&b);
	CHECK_EQ(kw_buf_append(&b, "premaster-secret", 16), 0);
	kw_buf_consume(&b, 10);
	CHECK(all_zero(b.data, 10));
	CHECK(memcmp(kw_buf_head(&b), "secret", 6) == 0);
	kw_buf_compact(&b);
	CHECK(memcmp(b.data, "secret", 6) == 0);
	CHECK(all_zero(b.data + 6, 10)); /* the tail the move left behind */
	kw_buf_reset(&b);
	CHECK(all_zero(b.data, 16));
	CHECK_EQ(kw_buf_append(&b, "abc", 3), 0);
	kw_buf_consume(&b, 3); /* all read */
	CHECK(all_zero(b.data, 3));
	kw_buf_cleanup(&b);

	/* An ordinary buffer keeps the old bytes (no cost on the hot path). */
	struct kw_buf o = KW_BUF_INIT;
	CHECK_EQ(kw_buf_append(&o, "abc", 3), 0);
	kw_buf_consume(&o, 3);
	CHECK(memcmp(o.data, "abc", 3) == 0);
	kw_buf_cleanup(&o);
}

static void test_appendf_grows(void)
{
	struct kw_buf b = KW_BUF_INIT;
	static char big[3001];
	memset(big, 'y', 3000);
	CHECK_EQ(kw_buf_appendf(&b, "<%s>%d", big, 42), 0);
	CHECK_EQ(kw_buf_unread(&b), 3004);
	CHECK(memcmp(kw_buf_tail(&b) - 3, ">42", 3) == 0);
	kw_buf_cleanup(&b);
}

int main(void)
{
	test_append_consume();
	test_secret_wipes();
	test_appendf_grows();
	CHECK_DONE();
}
