/*
 * audit.h - the --audit-log: every KWD_AUDIT_INTERVAL_NS, one key=value line
 * per (client identity, key SKI, operation) with the requests, denials and
 * failures of the interval; nothing at all for an idle interval.
 *
 * Each worker counts into its own table (struct kwd_audit_tab) with no lock
 * and no atomic on the request path. At every interval boundary its loop hands
 * the table's entries over to the log (one mutex, once per interval), and the
 * main thread, a little after the boundary, merges what every worker handed in
 * and writes the lines. A table handed in late lands in the next interval's
 * lines: nothing is lost or counted twice.
 */
#ifndef KEYWAYD_AUDIT_H
#define KEYWAYD_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyway/loop.h"
#include "keyway/protocol.h"

#define KWD_AUDIT_INTERVAL_NS 10000000000ull /* 10 s */

struct kwd_audit;
struct kwd_audit_tab;

/*
 * kwd_audit_open opens path for appending (created 0640), or standard output
 * for "-". 0 with *out, or -errno with the file and the fix in err.
 */
int kwd_audit_open(struct kwd_audit **out, const char *path, char *err, size_t errlen);

/* kwd_audit_reopen reopens the file (after log rotation, on SIGHUP); 0 or -errno, logged. */
int kwd_audit_reopen(struct kwd_audit *a);

/* kwd_audit_start arms the writer in loop (the main thread's), aligned on the boundaries. */
int kwd_audit_start(struct kwd_audit *a, struct kw_loop *loop);

/* kwd_audit_flush writes what has been handed in now (the writer's timer, and at exit). */
void kwd_audit_flush(struct kwd_audit *a);

/*
 * kwd_audit_free stops the writer, writes what was handed in and closes the
 * file; the loop it was started in must still exist. NULL ok.
 */
void kwd_audit_free(struct kwd_audit *a);

/* kwd_audit_next_boundary is the first interval boundary after now_ns (CLOCK_MONOTONIC). */
uint64_t kwd_audit_next_boundary(uint64_t now_ns);

/* ---- a worker's table ---- */

/* kwd_audit_tab_new makes an empty table for one worker; 0 or -ENOMEM. */
int kwd_audit_tab_new(struct kwd_audit_tab **out);
void kwd_audit_tab_free(struct kwd_audit_tab *t);

/*
 * kwd_audit_note counts one key request of client (its identity's name) on
 * the key ski (NULL: no such key) needing op (KWD_ACL_SIGN or KWD_ACL_DECRYPT),
 * denied by the ACL or failed otherwise. Owner thread only. A table that
 * cannot grow drops the note and counts it, reported in the next lines.
 */
void kwd_audit_note(struct kwd_audit_tab *t, const char *client, const uint8_t *ski, unsigned op,
                    bool denied, bool failed);

/* kwd_audit_hand_in moves t's counts to a for its next lines (owner thread; t is emptied). */
void kwd_audit_hand_in(struct kwd_audit *a, struct kwd_audit_tab *t);

#endif
