/*
 * key.h - the layout of struct kw_quic_key, shared by key.c and the engines
 * of src/quic (it stays opaque outside).
 *
 * Engines keep their per-key contexts in the key's slot table: an engine
 * instance owns one slot index for its lifetime, and a generation number
 * tells its contexts from those a former owner of the index left behind.
 * Only the owning instance's thread touches a slot; the last unref frees
 * whatever the slots hold.
 */
#ifndef KW_QUIC_KEY_H
#define KW_QUIC_KEY_H

#include <stdatomic.h>

#include "keyway/quic.h"

#define KW_QUIC_SLOTS 64

struct kw_quic_key_slot {
	uint64_t gen;              /* owner's generation; 0: empty */
	void (*free)(void *state); /* how to free state */
	void *state;               /* the engine's contexts for this key */
};

struct kw_quic_key {
	_Atomic unsigned refs;
	enum kw_quic_cipher cipher;
	size_t secret_len, key_len, hp_len;
	uint8_t secret[KW_QUIC_SECRET_MAX]; /* kept for "quic ku" */
	uint8_t key[KW_QUIC_KEY_MAX];
	uint8_t iv[KW_QUIC_IV_LEN];
	uint8_t hp[KW_QUIC_KEY_MAX];
	_Atomic uint64_t sealed, failed;
	uint64_t seal_limit, fail_limit;
	struct kw_quic_key_slot slot[KW_QUIC_SLOTS];
};

/* kw_quic_key_count_seal adds n sealed packets; returns true if the limit is reached. */
bool kw_quic_key_count_seal(struct kw_quic_key *k, uint64_t n);
/* kw_quic_key_count_fail adds n packets that failed authentication. */
void kw_quic_key_count_fail(struct kw_quic_key *k, uint64_t n);

#endif
