/*
 * keyway/loop_fault.h - fault injection for the event loop, for tests only.
 *
 * Declared here, defined only where loop.c is compiled with
 * KW_FAULT_INJECTION, which only test programs do (tests/CMakeLists.txt
 * compiles loop.c into every tests/unit/.../test_*_faults.c, whose objects
 * take precedence over libkeyway's loop.o). libkeyway itself, and so every
 * installed program, is built without it.
 *
 * Armed, it makes chosen calls of kw_timer_start_at/_ms/_us (KW_FAULT_TIMER)
 * and of kw_io_start, kw_io_start_exclusive and kw_io_modify
 * (KW_FAULT_IO) fail with -ENOMEM, as they can when memory runs out: a
 * timer call fails after stopping the timer, an I/O call before touching
 * epoll (kw_io_modify only when the interest set changes, the only case that
 * reaches epoll). Counting is process-wide, over every loop and thread.
 */
#ifndef KEYWAY_LOOP_FAULT_H
#define KEYWAY_LOOP_FAULT_H

#define KW_FAULT_TIMER 0x1u
#define KW_FAULT_IO 0x2u

/*
 * kw_fault_arm counts, from now on, the calls of the kinds in mask: the nth
 * one (1 for the next) and the count - 1 after it fail. It replaces any
 * earlier arming and resets the counters below.
 */
void kw_fault_arm(unsigned mask, unsigned nth, unsigned count);
/* kw_fault_disarm stops injecting; the counters keep their values. */
void kw_fault_disarm(void);
/* kw_fault_calls is how many calls of the armed kinds were seen since arming. */
unsigned kw_fault_calls(void);
/* kw_fault_fired is how many of them were made to fail. */
unsigned kw_fault_fired(void);

#endif
