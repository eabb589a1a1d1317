/*
 * fault_wait.h - for test_*_faults.c programs (built with the loop's fault
 * injection, keyway/loop_fault.h): waiting until an armed fault, hit on
 * another thread's loop, has fired.
 */
#ifndef KW_TEST_FAULT_WAIT_H
#define KW_TEST_FAULT_WAIT_H

#include <stdbool.h>
#include <unistd.h>

#include "keyway/loop_fault.h"

/* fault_wait_fired waits (at most 3 s) until the armed fault made n calls fail. */
static inline bool fault_wait_fired(unsigned n)
{
	for (int i = 0; i < 300 && kw_fault_fired() < n; i++)
		usleep(10000);
	return kw_fault_fired() >= n;
}

#endif
