/* test_log_limit.c - kw_log_limit: one line per interval, the ones held back counted. */
#include "check.h"
#include "keyway/log.h"

int main(void)
{
	struct kw_log_limit l = KW_LOG_LIMIT_INIT(1000);
	unsigned long held = 99;

	/* The first line passes at any time, with nothing held back. */
	CHECK(kw_log_limit_pass(&l, 5, &held));
	CHECK_EQ(held, 0);
	/* Within the interval: held back and counted. */
	CHECK(!kw_log_limit_pass(&l, 6, &held));
	CHECK(!kw_log_limit_pass(&l, 1004, &held));
	/* At the interval's end the next passes and reports both. */
	CHECK(kw_log_limit_pass(&l, 1005, &held));
	CHECK_EQ(held, 2);
	/* The count starts again from that line. */
	CHECK(!kw_log_limit_pass(&l, 1500, &held));
	CHECK(kw_log_limit_pass(&l, 2005, &held));
	CHECK_EQ(held, 1);
	CHECK_DONE();
}
