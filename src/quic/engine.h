/*
 * engine.h - what the packet-protection engines of src/quic share: the job
 * one packet becomes inside a batch, and the operations an engine supplies.
 *
 * engine.c does everything that is the same for every engine (checking the
 * packet, nonces, sampling, applying and removing the mask, packet-number
 * reconstruction, counting) and calls the engine for the cryptography over
 * whole chunks of jobs: seal or open the AEAD, then compute the masks.
 */
#ifndef KW_QUIC_ENGINE_H
#define KW_QUIC_ENGINE_H

#include <stdbool.h>

#include "key.h"
#include "keyway/quic.h"

#define KW_QUIC_CHUNK 64      /* jobs handed to an engine at once */
#define KW_QUIC_PKT_MAX 65535 /* a UDP payload */

struct kw_quic_job {
	struct kw_quic_pkt *pkt;
	struct kw_quic_key *key; /* the AEAD key */
	void *aead;              /* the engine's state for key */
	void *hp;                /* the engine's state for the header-protection key */
	uint8_t nonce[KW_QUIC_IV_LEN];
	const uint8_t *aad;
	size_t aad_len;
	uint8_t *data; /* ciphered in place */
	size_t data_len;
	uint8_t *tag;
	const uint8_t *sample;
	uint8_t mask[16]; /* the first 5 bytes are used */
	bool ok;          /* set by seal/open */
};

struct kw_quic_engine;

struct kw_quic_engine_ops {
	const char *name;
	/* available, init and fini may be NULL: always available, nothing to set up. */
	bool (*available)(void);
	int (*init)(struct kw_quic_engine *e);
	void (*fini)(struct kw_quic_engine *e);
	/* key_state_new makes the engine's contexts for k (NULL: out of memory or crypto). */
	void *(*key_state_new)(struct kw_quic_engine *e, const struct kw_quic_key *k);
	/* key_state_free frees them; may run on any thread, after the engine is gone. */
	void (*key_state_free)(void *state);
	/* aead seals or opens (dir) jobs, in place, setting each job's ok. */
	void (*aead)(struct kw_quic_engine *e, struct kw_quic_job *jobs, size_t n,
	             enum kw_quic_dir dir);
	/* masks computes each job's mask from its sample with its hp state. */
	void (*masks)(struct kw_quic_engine *e, struct kw_quic_job *jobs, size_t n);
};

struct kw_quic_engine {
	const struct kw_quic_engine_ops *ops;
	unsigned slot; /* index into every key's slot table */
	uint64_t gen;  /* this instance's generation in that slot */
	struct kw_quic_engine_stats stats;
	void *priv; /* the engine's own */
	struct kw_quic_job jobs[KW_QUIC_CHUNK];
};

extern const struct kw_quic_engine_ops kw_quic_evp_ops;
extern const struct kw_quic_engine_ops kw_quic_imb_ops; /* only with KW_HAVE_IPSEC_MB */

/*
 * The EVP engine's per-key contexts and single-job operations, which the
 * ipsec-mb engine borrows for what its library cannot do.
 */
void *kw_quic_evp_key_new(const struct kw_quic_key *k);
void kw_quic_evp_key_free(void *state);
bool kw_quic_evp_mask(void *state, const uint8_t *sample, uint8_t *mask);
bool kw_quic_evp_aead(void *state, struct kw_quic_job *j, enum kw_quic_dir dir);

#endif
