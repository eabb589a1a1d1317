/*
 * quic_rxbatch.h - batched receive decryption for --quic-crypto engine:
 * the short-header (1-RTT) packets of one receive batch (a recvmmsg call,
 * each buffer possibly a GRO run of datagrams) opened by the engine in one
 * run, before ngtcp2 reads any of them; then looked up and checked in
 * ngtcp2's header-protection and decrypt callbacks.
 *
 * Why a check and not trust: the batch is opened with each connection's
 * keys and largest packet number as they were before the batch, while
 * ngtcp2 reads the datagrams one after the other and may meanwhile update
 * keys, decode a packet number against a newer largest one, drop a packet,
 * or read a datagram from a copy (a handshake step's held datagrams). A
 * pre-opened result is used only when ngtcp2 asks for exactly what the
 * engine did: the same packet bytes at the same address (header
 * protection), then the same key object, packet number, ciphertext
 * (address and length) and unprotected header (AEAD). Anything else is
 * opened alone, as before batching, so correctness never depends on the
 * batch.
 *
 * No ngtcp2 here: the module is the table and the checks (unit-tested).
 */
#ifndef KPX_QUIC_RXBATCH_H
#define KPX_QUIC_RXBATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyway/quic.h"

/* Scratch for the copies: a whole recvmmsg batch (16 buffers of 64 KB). */
#define KPX_RXB_SCRATCH (16u << 16)
/* Packets per batch at most: 16 buffers of GRO runs of ~40 full-sized datagrams each. */
#define KPX_RXB_MAX 1024

/* One pre-opened packet. */
struct kpx_rxb_ent {
	const void *owner;  /* the connection it was opened for */
	const uint8_t *pkt; /* the protected packet where ngtcp2 reads it, and its length */
	size_t len;
	uint8_t *buf; /* the opened copy: unprotected header [0, hdr_len), then plaintext */
	struct kw_quic_key *key; /* the key the engine chose by key phase (a reference; or NULL) */
	uint64_t pn;             /* the packet number the engine decoded */
	int status;              /* the engine's: 0, -KW_ECRYPTO (authentication), ... */
	size_t hdr_len, out_len; /* hdr_len > pn_offset once header protection came off */
	bool taken;              /* its outcome was ngtcp2's answer (the caller sets it) */
};

struct kpx_rxb {
	size_t n;    /* entries */
	size_t hint; /* where the next lookup starts: ngtcp2 reads in batch order */
	size_t used; /* scratch bytes used */
	size_t cap;
	uint8_t *scratch;
	struct kw_quic_pkt pkts[KPX_RXB_MAX];
	struct kpx_rxb_ent ent[KPX_RXB_MAX];
};

/* kpx_rxb_new makes a batch with scratch bytes of room for copies; NULL when out of memory. */
struct kpx_rxb *kpx_rxb_new(size_t scratch);
void kpx_rxb_free(struct kpx_rxb *b); /* NULL ok */

/*
 * kpx_rxb_add queues the protected short-header packet pkt[0, len) (its
 * packet number at pn_offset) of connection owner, to be opened with key
 * (key phase 0) and key1 (phase 1) against largest_pn. The caller keeps
 * the keys alive until kpx_rxb_run. false when the batch is full (the
 * packet is then simply opened alone later).
 */
bool kpx_rxb_add(struct kpx_rxb *b, const void *owner, const uint8_t *pkt, size_t len,
                 size_t pn_offset, uint64_t largest_pn, struct kw_quic_key *key,
                 struct kw_quic_key *key1);
/*
 * What opens a batch: an engine run inline, or the crypto threads' pool
 * (waited for); returns how many packets succeeded, every status set.
 */
typedef size_t (*kpx_rxb_runner)(void *arg, struct kw_quic_pkt *pkts, size_t n);
/* kpx_rxb_run opens every queued packet with one call of run; returns how many opened. */
size_t kpx_rxb_run(struct kpx_rxb *b, kpx_rxb_runner run, void *arg);

/*
 * kpx_rxb_find is the entry of the packet pkt[0, len) pre-opened for owner
 * whose header protection came off (hdr_len > pn_offset), or NULL.
 */
struct kpx_rxb_ent *kpx_rxb_find(struct kpx_rxb *b, const void *owner, const uint8_t *pkt,
                                 size_t len, size_t pn_offset);
/*
 * kpx_rxb_matches tells whether AEAD-opening ciphertext[0, ct_len) under
 * key with packet number pn and associated data aad[0, aadlen) is what the
 * engine did for e: only then is e's outcome (plaintext or authentication
 * failure) the answer.
 */
bool kpx_rxb_matches(const struct kpx_rxb_ent *e, const struct kw_quic_key *key, uint64_t pn,
                     const uint8_t *ciphertext, size_t ct_len, const uint8_t *aad, size_t aadlen);

/* kpx_rxb_unused counts the entries never taken (what the batch opened for nothing). */
size_t kpx_rxb_unused(const struct kpx_rxb *b);
/* kpx_rxb_clear forgets every entry and drops their key references. */
void kpx_rxb_clear(struct kpx_rxb *b);

#endif
