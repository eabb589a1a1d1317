/* test_buf.c - the byte buffer: append, consume, and formatted appends that never cut. */
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
	test_appendf_grows();
	CHECK_DONE();
}
