/* test_sched.c - the core selection policies on given queue lengths. */
#include "check.h"

#include "keyway/quic.h"

int main(void)
{
	unsigned q[4] = {4, 1, 4, 0};
	bool room[4] = {true, true, true, true};

	/* sjbsq(4): its own core unless it holds 4, then onward; all at 4: full. */
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_SJBSQ, 4, 1, q, room, 4), 1);
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_SJBSQ, 4, 2, q, room, 4), 3);
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_SJBSQ, 4, 4, q, room, 4), 1);
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_SJBSQ, 2, 0, q, room, 4), 1);
	unsigned full[4] = {4, 4, 4, 4};
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_SJBSQ, 4, 0, full, room, 4), -1);
	/* hash: sticky whatever the queues; only a full ring refuses. */
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_HASH, 4, 6, full, room, 4), 2);
	room[2] = false;
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_HASH, 4, 6, full, room, 4), -1);
	/* jsq: the shortest queue with room; sjbsq skips a core without room. */
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_JSQ, 4, 0, q, room, 4), 3);
	room[3] = false;
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_JSQ, 4, 0, q, room, 4), 1);
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_SJBSQ, 4, 3, q, room, 4), 1);
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_INLINE, 4, 0, q, room, 4), -1);
	CHECK_EQ(kw_quic_sched_pick(KW_QUIC_SCHED_JSQ, 4, 0, q, room, 0), -1);
	CHECK_DONE();
}
