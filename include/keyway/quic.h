/*
 * keyway/quic.h - QUIC packet protection as an offload engine (RFC 9001 §5).
 *
 * Four parts, each usable alone:
 *  - keys: RFC 9001 §5.1-5.2 derivations and reference-counted key objects
 *    that count their packets against §6.6's limits;
 *  - engines: seal (AEAD, then header protection) and open (remove header
 *    protection, reconstruct the packet number, AEAD open) over a batch of
 *    packets, synchronously, on the calling thread ("evp", "ipsec-mb");
 *  - the connection table and classifier: what a datagram needs (crypto,
 *    pass, a Version Negotiation answer, drop), every verdict counted;
 *  - the pool: crypto cores fed by bounded rings, core selection, per-
 *    connection completion order, "full" answers and a wake-up descriptor.
 *
 * Errors follow keyway/err.h: 0 or a count on success, -errno or -KW_E*.
 */
#ifndef KEYWAY_QUIC_H
#define KEYWAY_QUIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- keys ---------------------------------------------------------------- */

enum kw_quic_cipher {
	KW_QUIC_CIPHER_AES_128_GCM,       /* SHA-256, 32-byte secrets, AES-128 header protection */
	KW_QUIC_CIPHER_AES_256_GCM,       /* SHA-384, 48-byte secrets, AES-256 header protection */
	KW_QUIC_CIPHER_CHACHA20_POLY1305, /* SHA-256, 32-byte secrets, ChaCha20 header protection */
	KW_QUIC_CIPHER_COUNT
};

#define KW_QUIC_SECRET_MAX 48 /* SHA-384 */
#define KW_QUIC_KEY_MAX 32
#define KW_QUIC_IV_LEN 12
#define KW_QUIC_TAG_LEN 16
#define KW_QUIC_SAMPLE_LEN 16
#define KW_QUIC_CID_MAX 20
#define KW_QUIC_V1 0x00000001u
#define KW_QUIC_INITIAL_SECRET_LEN 32

/* kw_quic_cipher_parse maps "aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"; -EINVAL otherwise.
 */
int kw_quic_cipher_parse(const char *name);
/* kw_quic_cipher_name is the inverse of kw_quic_cipher_parse. */
const char *kw_quic_cipher_name(enum kw_quic_cipher c);
/* kw_quic_secret_len is the length of c's traffic secrets (its hash's output): 32 or 48. */
size_t kw_quic_secret_len(enum kw_quic_cipher c);

/*
 * kw_quic_expand_label writes HKDF-Expand-Label(secret, label, "", out_len)
 * of TLS 1.3 (HkdfLabel with the "tls13 " prefix and an empty context) to
 * out, with OpenSSL's HKDF in expand-only mode and digest md ("SHA256",
 * "SHA384"). Returns 0 or -KW_ECRYPTO (-EINVAL for a label over 249 bytes).
 */
int kw_quic_expand_label(uint8_t *out, size_t out_len, const char *md, const uint8_t *secret,
                         size_t secret_len, const char *label);

/* The Initial secrets of one client Destination Connection ID (RFC 9001 §5.2, QUIC v1). */
struct kw_quic_initial {
	uint8_t initial[KW_QUIC_INITIAL_SECRET_LEN]; /* HKDF-Extract(v1 salt, dcid) */
	uint8_t client[KW_QUIC_INITIAL_SECRET_LEN];  /* "client in" */
	uint8_t server[KW_QUIC_INITIAL_SECRET_LEN];  /* "server in" */
};

/* kw_quic_initial_secrets derives out from dcid (0..20 bytes). Returns 0, -EINVAL or -KW_ECRYPTO.
 */
int kw_quic_initial_secrets(struct kw_quic_initial *out, const uint8_t *dcid, size_t dcid_len);

/*
 * A packet-protection key: the AEAD key, IV and header-protection key of one
 * traffic secret. Reference counted and immutable once made, so that packets
 * queued on crypto cores keep it alive after the stack let go of it (a stack
 * drops Initial keys while packets protected under them are still queued).
 * Engines attach their per-key contexts to it; they go with the last
 * reference. The packet counters are atomic: any thread may use a key.
 */
struct kw_quic_key;

/*
 * kw_quic_key_new derives a key from a traffic secret of cipher c
 * (secret_len must be kw_quic_secret_len(c)) and returns it in *out with one
 * reference. Returns 0, -EINVAL, -ENOMEM or -KW_ECRYPTO.
 */
int kw_quic_key_new(struct kw_quic_key **out, enum kw_quic_cipher c, const uint8_t *secret,
                    size_t secret_len);
/*
 * kw_quic_key_next makes the key of the next key phase (RFC 9001 §6: secret
 * "quic ku", same header-protection key) with one reference in *out.
 */
int kw_quic_key_next(struct kw_quic_key **out, const struct kw_quic_key *k);
struct kw_quic_key *kw_quic_key_ref(struct kw_quic_key *k);
/* kw_quic_key_unref drops one reference; the last one wipes the key and frees it. NULL is fine. */
void kw_quic_key_unref(struct kw_quic_key *k);

/* The derived material, for tools and tests (read-only views into the key). */
struct kw_quic_key_material {
	enum kw_quic_cipher cipher;
	const uint8_t *key, *iv, *hp;
	size_t key_len, iv_len, hp_len;
};
void kw_quic_key_material(const struct kw_quic_key *k, struct kw_quic_key_material *out);

/*
 * Packet counts against RFC 9001 §6.6: sealed counts packets protected under
 * the key (confidentiality limit 2^23 for AES-GCM; ChaCha20 has none below
 * 2^62), failed counts packets that failed authentication (integrity limit
 * 2^52 for AES-GCM, 2^36 for ChaCha20). must_update: the sender has to move
 * to the next key phase before sealing more; must_close: the integrity limit
 * was reached and the connection has to close (AEAD_LIMIT_REACHED).
 */
struct kw_quic_key_usage {
	uint64_t sealed, failed;
	uint64_t seal_limit, fail_limit;
	bool must_update, must_close;
};
void kw_quic_key_usage(const struct kw_quic_key *k, struct kw_quic_key_usage *out);
/* kw_quic_key_set_limits lowers the limits (tests: reaching 2^23 takes too long). 0 keeps one. */
void kw_quic_key_set_limits(struct kw_quic_key *k, uint64_t seal_limit, uint64_t fail_limit);

/* ---- packets and engines --------------------------------------------------- */

enum kw_quic_dir { KW_QUIC_DIR_SEAL, KW_QUIC_DIR_OPEN };

/*
 * One packet of a batch. The submitter owns the structure and the buffer;
 * an engine or the pool writes only buf[0, len + tag) and the result fields.
 *
 * Seal: buf holds the unprotected header [0, hdr_len) (up to and including
 * the truncated packet number, whose length comes from buf[0]'s low bits;
 * a long header's Length field already counts the tag) followed by the
 * payload [hdr_len, len); buf must have room for len + 16 bytes. pn is the
 * full packet number of the nonce. On success the protected packet is
 * buf[0, len + 16) and out_len = len + 16.
 *
 * Open: buf[0, len) is one protected packet (a long header's Length decides
 * where it ends: see kw_quic_header_parse), pn_offset where its packet
 * number starts, largest_pn the largest packet number received in its space
 * (UINT64_MAX: none yet). On success buf holds the unprotected header
 * [0, hdr_len), the plaintext [hdr_len, hdr_len + out_len), pn the full
 * packet number. On an authentication failure (-KW_ECRYPTO after header
 * protection came off) or -KW_ENOKEY, hdr_len, pn and the unprotected
 * header buf[0, hdr_len) are set all the same (a stack asking for the
 * header-protection mask alone gets it from them); hdr_len stays as given
 * when header protection could not be removed. The rest of buf is
 * unspecified on failure.
 *
 * key is the key (seal; open of long headers and of short headers whose key
 * phase bit is 0); key1 opens short headers whose key phase bit is 1 (NULL:
 * such packets fail with -KW_ENOKEY). The pool holds its own references
 * while a packet is queued; the caller's pointers must not be dereferenced
 * after completion unless the caller holds a reference.
 */
struct kw_quic_pkt {
	/* --- request --- */
	uint8_t *buf;
	size_t len;          /* seal: header + payload; open: the protected packet */
	size_t hdr_len;      /* seal: unprotected header length (in); open: out */
	size_t pn_offset;    /* open: where the packet number starts */
	uint64_t pn;         /* seal: full packet number (in); open: reconstructed (out) */
	uint64_t largest_pn; /* open: largest received in this packet number space */
	struct kw_quic_key *key, *key1;
	uint64_t conn; /* connection identity: ordering and core selection */
	uint8_t dir;   /* enum kw_quic_dir */
	/* --- result --- */
	int status;       /* 0, -KW_ECRYPTO (authentication), -EINVAL, -KW_ENOKEY, -KW_ECANCELED */
	bool must_update; /* seal: the key reached its confidentiality limit (see usage) */
	size_t out_len;   /* seal: protected length; open: plaintext length */
	void *user;       /* the submitter's */
};

struct kw_quic_engine;

/*
 * kw_quic_engine_new makes an engine instance by name ("evp", "ipsec-mb",
 * or "auto": ipsec-mb when this build and CPU have it, else evp). An
 * instance belongs to one thread at a time; any number may exist (up to 64
 * at once: each owns a slot in the keys' per-engine context table).
 * Returns 0, -ENOENT (unknown or unavailable here), -EBUSY (64 instances
 * exist), -ENOMEM or -KW_ECRYPTO.
 */
int kw_quic_engine_new(struct kw_quic_engine **out, const char *name);
void kw_quic_engine_free(struct kw_quic_engine *e);
/* kw_quic_engine_name is "evp" or "ipsec-mb". */
const char *kw_quic_engine_name(const struct kw_quic_engine *e);
/* kw_quic_engine_available tells whether kw_quic_engine_new(name) can succeed here. */
bool kw_quic_engine_available(const char *name);

/*
 * kw_quic_engine_run protects or unprotects n packets (each by its dir) and
 * writes each one's status; returns how many succeeded. Never allocates per
 * packet: per-key contexts are made on a key's first use by this instance.
 */
size_t kw_quic_engine_run(struct kw_quic_engine *e, struct kw_quic_pkt *pkts, size_t n);

/* What an engine did apart from its fast path (counted since kw_quic_engine_new). */
struct kw_quic_engine_stats {
	uint64_t sealed, opened, failed;
	uint64_t hp_fallback;   /* ipsec-mb: header-protection masks computed through EVP */
	uint64_t aead_fallback; /* ipsec-mb: AEAD operations done through EVP (ChaCha20) */
	uint64_t key_setups;    /* per-key contexts made */
};
void kw_quic_engine_stats(const struct kw_quic_engine *e, struct kw_quic_engine_stats *out);

/* ---- headers --------------------------------------------------------------- */

/*
 * kw_quic_pn_decode reconstructs a full packet number from its truncated
 * value of pn_len bytes and the largest received (RFC 9000 §A.3;
 * UINT64_MAX: none received, which decodes as if it were -1).
 */
uint64_t kw_quic_pn_decode(uint64_t largest_pn, uint64_t truncated, unsigned pn_len);

/* The protected-packet layout of one QUIC packet found by kw_quic_header_parse. */
struct kw_quic_header {
	bool long_header;
	uint8_t type;     /* long: 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry */
	uint32_t version; /* long headers */
	const uint8_t *dcid, *scid;
	uint8_t dcid_len, scid_len;
	const uint8_t *token; /* Initial */
	size_t token_len;
	size_t pn_offset; /* protected packets: where the packet number starts */
	size_t pkt_len;   /* this packet's length (long: up to its Length; short: all) */
};

/*
 * kw_quic_header_parse reads the invariant and v1 fields of the packet at
 * p[0, len): short headers with a dcid_len-byte connection ID. Returns 0, or
 * -EINVAL for anything malformed or truncated (never reads past len).
 * Version Negotiation (version 0) and Retry have no pn_offset (0).
 */
int kw_quic_header_parse(struct kw_quic_header *h, const uint8_t *p, size_t len, size_t dcid_len);

/* ---- connection table and classifier ------------------------------------- */

/* Encryption levels: which keys protect a packet (RFC 9001 §4). */
enum kw_quic_level {
	KW_QUIC_LEVEL_INITIAL,
	KW_QUIC_LEVEL_0RTT,
	KW_QUIC_LEVEL_HANDSHAKE,
	KW_QUIC_LEVEL_1RTT,
	KW_QUIC_LEVEL_COUNT
};

/* Packet number spaces (RFC 9000 §12.3): 0-RTT and 1-RTT share the application one. */
enum kw_quic_space { KW_QUIC_SPACE_INITIAL, KW_QUIC_SPACE_HANDSHAKE, KW_QUIC_SPACE_APP };

/*
 * One connection of the table (the seed's "state table" entry): its keys per
 * level and direction (1-RTT receive keys per key phase), the largest packet
 * number received per space, and whether it negotiated grease_quic_bit
 * (RFC 9287: the fixed bit may be clear). The table owns one reference to
 * every key set here.
 */
struct kw_quic_conn {
	uint64_t id; /* the connection's identity: kw_quic_pkt.conn */
	uint8_t cid[KW_QUIC_CID_MAX];
	uint8_t cid_len;
	struct kw_quic_key *rx[KW_QUIC_LEVEL_COUNT][2]; /* [level][key phase] */
	struct kw_quic_key *tx[KW_QUIC_LEVEL_COUNT];
	uint64_t largest_pn[3]; /* by enum kw_quic_space; UINT64_MAX: none yet */
	bool grease_quic_bit;
};

/*
 * The connection table, keyed by connection ID with a per-table random hash
 * seed (connection IDs are chosen by peers). Short headers are looked up
 * with the table's fixed cid_len; long headers with the DCID they carry.
 * A table belongs to one thread.
 */
struct kw_quic_table;

/* kw_quic_table_new makes a table for up to max connections. Returns 0, -EINVAL or -ENOMEM. */
int kw_quic_table_new(struct kw_quic_table **out, size_t cid_len, size_t max);
/* kw_quic_table_free drops every connection's key references. NULL is fine. */
void kw_quic_table_free(struct kw_quic_table *t);
/*
 * kw_quic_table_add adds a connection for cid (copied) with no keys and
 * returns it in *out (valid until removed). Returns 0, -EEXIST, -ENOSPC or
 * -EINVAL (cid longer than 20 bytes).
 */
int kw_quic_table_add(struct kw_quic_table *t, const uint8_t *cid, size_t cid_len, uint64_t id,
                      struct kw_quic_conn **out);
/* kw_quic_table_find returns the connection of cid, or NULL. */
struct kw_quic_conn *kw_quic_table_find(struct kw_quic_table *t, const uint8_t *cid,
                                        size_t cid_len);
/* kw_quic_table_remove removes cid's connection and drops its keys; -ENOENT if absent. */
int kw_quic_table_remove(struct kw_quic_table *t, const uint8_t *cid, size_t cid_len);
/*
 * kw_quic_conn_set_key installs k (taking a reference; NULL clears) as
 * c's receive key of level and key phase, or its send key (dir SEAL; phase
 * ignored), dropping the one it replaces.
 */
void kw_quic_conn_set_key(struct kw_quic_conn *c, enum kw_quic_level level, enum kw_quic_dir dir,
                          unsigned phase, struct kw_quic_key *k);
/*
 * kw_quic_conn_received records pn, opened at level, as received: the
 * largest per space is what the next packet numbers are decoded against.
 */
void kw_quic_conn_received(struct kw_quic_conn *c, enum kw_quic_level level, uint64_t pn);

enum kw_quic_verdict {
	KW_QUIC_VERDICT_NEEDS_CRYPTO, /* protected: open it (conn and keys in the class) */
	KW_QUIC_VERDICT_PASS,    /* unprotected: Retry, Version Negotiation; to the stack as is */
	KW_QUIC_VERDICT_SEND_VN, /* unknown version in a datagram of >= 1200 bytes: answer with VN
	                          */
	KW_QUIC_VERDICT_DROP,    /* see enum kw_quic_drop */
	KW_QUIC_VERDICT_COUNT
};

enum kw_quic_drop {
	KW_QUIC_DROP_NONE,
	KW_QUIC_DROP_MALFORMED,    /* a header that does not parse (truncated, bad lengths) */
	KW_QUIC_DROP_NO_SAMPLE,    /* too short for a header-protection sample (RFC 9001 §5.4.2) */
	KW_QUIC_DROP_UNKNOWN_CONN, /* no connection with that DCID (and not a client Initial) */
	KW_QUIC_DROP_FIXED_BIT,    /* fixed bit clear without grease_quic_bit */
	KW_QUIC_DROP_NO_KEY,       /* the connection has no receive key at that level */
	KW_QUIC_DROP_SMALL_INITIAL, /* a new client Initial in a datagram under 1200 bytes */
	KW_QUIC_DROP_SMALL_UNKNOWN, /* unknown version in a datagram under 1200 bytes */
	KW_QUIC_DROP_COUNT
};

/* What the classifier found about one packet of a datagram. */
struct kw_quic_class {
	enum kw_quic_verdict verdict;
	enum kw_quic_drop drop;
	enum kw_quic_level level;  /* NEEDS_CRYPTO */
	struct kw_quic_conn *conn; /* NEEDS_CRYPTO: NULL for a new client Initial */
	struct kw_quic_header h;   /* parsed fields; h.pkt_len is where the next packet starts */
};

/* Every verdict and drop reason counted by the table's classifier. */
struct kw_quic_table_stats {
	uint64_t verdict[KW_QUIC_VERDICT_COUNT];
	uint64_t drop[KW_QUIC_DROP_COUNT];
};

/*
 * kw_quic_classify classifies the packet at the start of dgram[0, len)
 * (len is what is left of the datagram: coalesced packets follow at
 * out->h.pkt_len; after a DROP or a short header nothing follows) and
 * counts the verdict. dgram_len is the whole datagram's size, for the
 * 1200-byte rules. Never reads outside dgram[0, len); any input is a verdict.
 * Returns out->verdict.
 */
enum kw_quic_verdict kw_quic_classify(struct kw_quic_table *t, const uint8_t *dgram, size_t len,
                                      size_t dgram_len, struct kw_quic_class *out);
/*
 * kw_quic_class_pkt fills pkt to open the NEEDS_CRYPTO packet c found at
 * buf (a writable copy of the classified bytes) with its connection's keys
 * and largest packet number (the caller passes keys itself when c->conn is
 * NULL).
 */
void kw_quic_class_pkt(const struct kw_quic_class *c, uint8_t *buf, struct kw_quic_pkt *pkt);
/* kw_quic_table_stats copies the counters. */
void kw_quic_table_stats(const struct kw_quic_table *t, struct kw_quic_table_stats *out);

/* ---- the pool: crypto cores ------------------------------------------------ */

/*
 * Core selection (which crypto core gets a job):
 *  - sjbsq: the seed's SJBSQ(K): start at hash(connection), take the first
 *    core, probing onward, that holds fewer than K unfinished jobs; when all
 *    hold K, the pool answers "full" and the caller waits;
 *  - hash: always hash(connection) (sticky), full when its ring is;
 *  - jsq: the core with the fewest unfinished jobs;
 *  - inline: no crypto cores: the caller's thread runs each job at submit.
 */
enum kw_quic_sched {
	KW_QUIC_SCHED_INLINE,
	KW_QUIC_SCHED_SJBSQ,
	KW_QUIC_SCHED_HASH,
	KW_QUIC_SCHED_JSQ,
	KW_QUIC_SCHED_COUNT
};

/* kw_quic_sched_parse maps "inline", "sjbsq", "hash", "jsq"; -EINVAL otherwise. */
int kw_quic_sched_parse(const char *name);
const char *kw_quic_sched_name(enum kw_quic_sched s);

/*
 * kw_quic_sched_pick applies policy s to n cores: queue[i] is core i's
 * unfinished jobs, room[i] whether its ring takes one more, start the
 * connection's hash. Returns the core, or -1 when the answer is "full".
 */
int kw_quic_sched_pick(enum kw_quic_sched s, unsigned bound, uint64_t start, const unsigned *queue,
                       const bool *room, unsigned n);

/*
 * Completion: called on the pool's owner thread from kw_quic_pool_poll (or
 * kw_quic_pool_free), once for every job - a run of consecutive packets of
 * one submit with the same conn - with each packet's status set. Jobs of
 * one connection complete in the order they were submitted. done may
 * submit more packets; it must not poll or free the pool.
 */
typedef void (*kw_quic_done_fn)(void *arg, struct kw_quic_pkt *pkts, size_t n);

struct kw_quic_pool_config {
	const char *engine;       /* "evp", "ipsec-mb" or "auto" (NULL: auto) */
	enum kw_quic_sched sched; /* inline: no threads */
	unsigned workers;         /* crypto threads (ignored by inline; default 1) */
	unsigned ring;            /* jobs a core's ring holds, a power of two (default 256) */
	unsigned bound;           /* sjbsq's K (default 4) */
	unsigned max_batch;       /* packets per job at most (default 64) */
	unsigned spin_ns;         /* how long an idle core polls before it sleeps */
	const int *cpus;          /* worker i runs on cpus[i] if not NULL and >= 0 */
	kw_quic_done_fn done;
	void *done_arg;
};

/* Counters of a pool (packets unless said otherwise). */
struct kw_quic_pool_stats {
	uint64_t submitted, completed, canceled;
	uint64_t jobs;         /* jobs submitted */
	uint64_t full;         /* submits that stopped short: "full" answers */
	uint64_t out_of_order; /* jobs that finished before an earlier one of their connection */
	uint64_t host_wakeups; /* completions signalled on the pool's descriptor */
	uint64_t core_wakeups; /* sleeping crypto cores woken by a submit */
	uint64_t core_cpu_ns;  /* CPU time of the crypto cores so far */
};

/*
 * The pool: crypto cores (threads, each with its own engine instance) fed
 * by bounded single-producer rings, a re-sequencer that restores each
 * connection's submission order, and an eventfd for wake-ups. A pool
 * belongs to the thread that made it (submit, poll, wait, free).
 */
struct kw_quic_pool;

/* kw_quic_pool_new starts the cores. Returns 0, -EINVAL, -ENOENT (engine), -ENOMEM or -errno. */
int kw_quic_pool_new(struct kw_quic_pool **out, const struct kw_quic_pool_config *cfg);
/*
 * kw_quic_pool_submit hands pkts[0, n) over, split into jobs at each change
 * of conn and every max_batch packets, and returns how many packets (a
 * prefix) it took: each of those completes exactly once through done. The
 * pool takes references on their keys until then, so the caller may drop
 * its own at once; the packets and buffers stay the caller's, untouched by
 * it until completion. When it can take nothing (sjbsq's bound on every
 * core, a full ring, no free job) it answers -EAGAIN - "full" - without
 * spinning, and arms the wake-up: call kw_quic_pool_poll, and if that
 * completes nothing, wait (kw_quic_pool_wait, or the descriptor after
 * kw_quic_pool_arm).
 */
int kw_quic_pool_submit(struct kw_quic_pool *p, struct kw_quic_pkt *pkts, size_t n);
/*
 * kw_quic_pool_poll delivers finished jobs (done callbacks) and returns how
 * many packets completed. It makes no system call unless a wake-up fired.
 */
int kw_quic_pool_poll(struct kw_quic_pool *p);
/*
 * kw_quic_pool_arm arms the wake-up (the descriptor becomes readable at the
 * next completion), then polls once more so that nothing finishing in
 * between is missed; returns that poll's count. Call it before sleeping on
 * the descriptor when a poll found nothing; an owner that wakes on its own
 * schedule (a timer) need not, and saves the cores a system call each.
 */
int kw_quic_pool_arm(struct kw_quic_pool *p);
/* kw_quic_pool_fd is the eventfd to watch for POLLIN after kw_quic_pool_arm or a full answer. */
int kw_quic_pool_fd(const struct kw_quic_pool *p);
/* kw_quic_pool_wait sleeps until a completion waits or timeout_ms passes (-1: none). */
int kw_quic_pool_wait(struct kw_quic_pool *p, int timeout_ms);
/* kw_quic_pool_inflight counts packets submitted and not yet completed. */
size_t kw_quic_pool_inflight(const struct kw_quic_pool *p);
void kw_quic_pool_stats(const struct kw_quic_pool *p, struct kw_quic_pool_stats *out);
/*
 * kw_quic_pool_pause stops the cores from taking new jobs (true) or lets
 * them go on (false); jobs stay queued. For tests and orderly drains.
 */
void kw_quic_pool_pause(struct kw_quic_pool *p, bool paused);
/*
 * kw_quic_pool_free stops the cores at once (a job being run finishes),
 * completes every packet - run ones with their status, queued ones with
 * -KW_ECANCELED - through done in each connection's order, drops the key
 * references and frees the pool. NULL is fine.
 */
void kw_quic_pool_free(struct kw_quic_pool *p);

#endif
