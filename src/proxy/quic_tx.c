/*
 * quic_tx.c - deferred 1-RTT send protection on Keyway's engine (see
 * quic_tx.h for the scheme).
 *
 * Telling the engine's contexts from GnuTLS's: ngtcp2 hands its callbacks
 * the opaque native_handle of each context. Ours are pointers to struct
 * qkey with the lowest bit set; GnuTLS's handles are malloc'ed and so
 * even. Everything else goes to ngtcp2's stock GnuTLS callbacks.
 */
#include "quic_tx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/quic.h"
#include "quic_const.h"
#include "quic_rxbatch.h"
#include "stats.h"

/* Recorded packets per batch at most: a 64 KB batch of the smallest 1-RTT packets. */
#define MAX_PENDING 4096

/* One of our contexts: the key it stands for (one reference), and for a receive context the
 * connection it receives for (hp_mask has no direction: send contexts have NULL). */
struct qkey {
	struct kw_quic_key *key;
	struct kpx_qtx_conn *rx;
};

/* A receive scratch: a whole UDP payload, opened in place. */
#define RX_MAX 65536

/* The last packet the header-protection callback opened (or found pre-opened in the
 * receive batch: ent), for the decrypt callback. */
struct opened {
	bool valid;
	struct kpx_rxb_ent *ent; /* the batch's entry; NULL: opened alone into rxbuf */
	const uint8_t *pt;       /* the plaintext */
	const uint8_t *ct;       /* its ciphertext in the datagram, and length (tag included) */
	size_t ct_len;
	uint64_t pn;
	struct kw_quic_key *key; /* the key the engine used (one reference; NULL: none) */
	int status;
	size_t hdr_len, out_len;
};

struct kpx_qtx {
	struct kw_quic_engine *engine;     /* inline runs, and packets opened alone */
	struct kw_quic_pool *pool;         /* --quic-sched other than inline: batches go here */
	size_t pool_ok;                    /* packets of the current pool run that succeeded */
	uint64_t pool_cpu_ns, pool_cpu_at; /* the crypto threads' CPU counted so far, and when */
	struct kpx_wmetrics *m;
	size_t n;
	struct kw_quic_pkt pkts[MAX_PENDING];
	const uint8_t *win; /* the datagram being read (kpx_qtx_rx_window) */
	size_t win_len;
	struct opened op;
	struct kpx_rxb *rxb; /* the receive batch (kpx_qtx_rx_add) */
	uint8_t rxbuf[RX_MAX];
};

/* The worker thread's state: the encrypt callback has no user data. */
static _Thread_local struct kpx_qtx *cur;

static bool ours(const void *handle)
{
	return ((uintptr_t)handle & 1) != 0;
}

static struct qkey *untag(const void *handle)
{
	return (struct qkey *)((uintptr_t)handle & ~(uintptr_t)1);
}

/* wrap_rx makes a context for k (a new reference), receiving for rx (NULL: sending); NULL
 * when out of memory. */
static void *wrap_rx(struct kw_quic_key *k, struct kpx_qtx_conn *rx)
{
	struct qkey *q = malloc(sizeof(*q));
	if (q == NULL)
		return NULL;
	q->key = kw_quic_key_ref(k);
	q->rx = rx;
	return (void *)((uintptr_t)q | 1);
}

/* pn_of is the packet number in nonce under k's IV: its low 8 bytes (RFC 9001 §5.3). */
static uint64_t pn_of(const struct kw_quic_key *k, const uint8_t *nonce)
{
	struct kw_quic_key_material km;
	kw_quic_key_material(k, &km);
	uint64_t pn = 0;
	for (size_t i = 4; i < KW_QUIC_IV_LEN; i++)
		pn = pn << 8 | (uint8_t)(nonce[i] ^ km.iv[i]);
	return pn;
}

static void unwrap_free(void *handle)
{
	struct qkey *q = untag(handle);
	kw_quic_key_unref(q->key);
	free(q);
}

/* ---- running batches: inline or on the crypto threads ---- */

/* Sample the crypto threads' CPU time at most this often (it costs a system call each). */
#define POOL_CPU_EVERY_NS 100000000u

static void pool_done(void *arg, struct kw_quic_pkt *pkts, size_t n)
{
	struct kpx_qtx *tx = arg;
	for (size_t i = 0; i < n; i++)
		tx->pool_ok += pkts[i].status == 0;
}

/* pool_cpu adds the crypto threads' CPU time since the last sample to the engine's. */
static void pool_cpu(struct kpx_qtx *tx, bool now)
{
	uint64_t t = kw_now_ns();
	if (!now && t - tx->pool_cpu_at < POOL_CPU_EVERY_NS)
		return;
	struct kw_quic_pool_stats st;
	kw_quic_pool_stats(tx->pool, &st);
	if (st.core_cpu_ns > tx->pool_cpu_ns)
		kpx_add(&tx->m->quic_engine_cpu_ns, st.core_cpu_ns - tx->pool_cpu_ns);
	tx->pool_cpu_ns = st.core_cpu_ns;
	tx->pool_cpu_at = t;
}

/*
 * run_batch protects or opens pkts[0, n): inline through the worker's
 * engine, or handed to the crypto threads and waited for (the batch's
 * datagrams are sent, or read, right after, so nothing else could use the
 * wait). Returns how many succeeded; every status is set.
 */
static size_t run_batch(void *arg, struct kw_quic_pkt *pkts, size_t n)
{
	struct kpx_qtx *tx = arg;
	if (tx->pool == NULL) {
		/* The engine never blocks, so the monotonic clock (vDSO, no system call, unlike
		 * the thread CPU clock) measures the worker's CPU time in it. */
		uint64_t t0 = kw_now_ns();
		size_t ok = kw_quic_engine_run(tx->engine, pkts, n);
		kpx_add(&tx->m->quic_engine_cpu_ns, kw_now_ns() - t0);
		return ok;
	}
	size_t off = 0;
	tx->pool_ok = 0;
	while (off < n || kw_quic_pool_inflight(tx->pool) > 0) {
		int rc = off < n ? kw_quic_pool_submit(tx->pool, pkts + off, n - off) : -EAGAIN;
		if (rc > 0) {
			off += (size_t)rc;
			continue;
		}
		if (rc != -EAGAIN) { /* not a "full" answer: these packets cannot be run */
			for (; off < n; off++)
				pkts[off].status = rc;
			continue;
		}
		if (kw_quic_pool_poll(tx->pool) == 0)
			kw_quic_pool_wait(tx->pool, 100);
	}
	pool_cpu(tx, false);
	return tx->pool_ok;
}

/* ---- the callbacks ---- */

static int tx_encrypt(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                      const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *plaintext,
                      size_t plaintextlen, const uint8_t *nonce, size_t noncelen,
                      const uint8_t *aad, size_t aadlen)
{
	if (!ours(aead_ctx->native_handle))
		return ngtcp2_crypto_encrypt_cb(dest, aead, aead_ctx, plaintext, plaintextlen,
		                                nonce, noncelen, aad, aadlen);
	struct kpx_qtx *tx = cur;
	struct qkey *q = untag(aead_ctx->native_handle);
	/* ngtcp2 seals a packet in place right after its header; anything else is not ours to
	 * defer. */
	if (tx == NULL || tx->n == MAX_PENDING || dest != aad + aadlen ||
	    noncelen != KW_QUIC_IV_LEN)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	if (dest != plaintext)
		memmove(dest, plaintext, plaintextlen);
	memset(dest + plaintextlen, 0, KW_QUIC_TAG_LEN); /* the tag's room, sealed later */
	uint64_t pn = pn_of(q->key, nonce);
	struct kw_quic_pkt *p = &tx->pkts[tx->n++];
	memset(p, 0, sizeof(*p));
	p->buf = (uint8_t *)aad;
	p->len = aadlen + plaintextlen;
	p->hdr_len = aadlen;
	p->pn = pn;
	p->key = kw_quic_key_ref(q->key);
	p->dir = KW_QUIC_DIR_SEAL;
	return 0;
}

/* ---- receiving ---- */

static void op_clear(struct kpx_qtx *tx)
{
	kw_quic_key_unref(tx->op.key);
	memset(&tx->op, 0, sizeof(tx->op));
}

/* in_window tells whether p[0, len) lies in the datagram being read. */
static bool in_window(const struct kpx_qtx *tx, const uint8_t *p, size_t len)
{
	return tx->win != NULL && p >= tx->win && len <= tx->win_len &&
	       (size_t)(p - tx->win) <= tx->win_len - len;
}

/*
 * open_copy opens a copy of the protected packet pkt[0, len) whose packet
 * number starts at pn_offset through the engine (key for key phase 0, key1
 * for 1) and records the outcome in tx->op. Returns -1 when the header
 * protection could not even be removed (no mask to give ngtcp2).
 */
static int open_copy(struct kpx_qtx *tx, const uint8_t *pkt, size_t len, size_t pn_offset,
                     uint64_t largest_pn, struct kw_quic_key *key, struct kw_quic_key *key1)
{
	struct kw_quic_pkt p = {0};

	op_clear(tx);
	memcpy(tx->rxbuf, pkt, len);
	p.buf = tx->rxbuf;
	p.len = len;
	p.pn_offset = pn_offset;
	p.largest_pn = largest_pn;
	p.key = key;
	p.key1 = key1;
	p.dir = KW_QUIC_DIR_OPEN;
	uint64_t t0 = kw_now_ns();
	kw_quic_engine_run(tx->engine, &p, 1);
	kpx_add(&tx->m->quic_engine_cpu_ns, kw_now_ns() - t0);
	/* hdr_len is set once the header is unprotected, whatever the AEAD said. */
	if (p.hdr_len <= pn_offset)
		return -1;
	struct kw_quic_key *used = (tx->rxbuf[0] & 0x04) ? key1 : key;
	tx->op = (struct opened){
	    .valid = true,
	    .pt = tx->rxbuf + p.hdr_len,
	    .ct = pkt + p.hdr_len,
	    .ct_len = len - p.hdr_len,
	    .pn = p.pn,
	    .key = used != NULL ? kw_quic_key_ref(used) : NULL,
	    .status = p.status,
	    .hdr_len = p.hdr_len,
	    .out_len = p.out_len,
	};
	return 0;
}

/* use_entry makes the batch's pre-opened entry e the packet the decrypt callback checks. */
static void use_entry(struct kpx_qtx *tx, struct kpx_rxb_ent *e)
{
	op_clear(tx);
	tx->op = (struct opened){
	    .valid = true,
	    .ent = e,
	    .pt = e->buf + e->hdr_len,
	    .ct = e->pkt + e->hdr_len,
	    .ct_len = e->len - e->hdr_len,
	    .pn = e->pn,
	    .key = e->key != NULL ? kw_quic_key_ref(e->key) : NULL,
	    .status = e->status,
	    .hdr_len = e->hdr_len,
	    .out_len = e->out_len,
	};
}

/*
 * rx_hp_mask opens the short-header packet whose sample ngtcp2 points at
 * (in the datagram it reads: the packet runs to the datagram's end) with
 * the connection's newest keys of both phases, and answers the mask the
 * engine removed: the XOR of the protected and unprotected first byte and
 * packet number (the only mask bytes ngtcp2 uses).
 */
static int rx_hp_mask(uint8_t *dest, struct qkey *q, const uint8_t *sample)
{
	struct kpx_qtx *tx = cur;
	struct kpx_qtx_conn *tc = q->rx;
	const size_t pn_offset = 1 + KPX_QUIC_SCID_LEN;

	if (tx == NULL || !in_window(tx, sample, KW_QUIC_SAMPLE_LEN) ||
	    (size_t)(sample - tx->win) < pn_offset + 4)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	const uint8_t *pkt = sample - 4 - pn_offset;
	size_t len = tx->win_len - (size_t)(pkt - tx->win);
	if (pkt[0] & 0x80)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	/* Pre-opened with the receive batch: the same bytes at the same place for the same
	 * connection give the same mask (one header-protection key per connection). */
	struct kpx_rxb_ent *e = kpx_rxb_find(tx->rxb, tc, pkt, len, pn_offset);
	const uint8_t *hdr = tx->rxbuf;
	if (e != NULL) {
		use_entry(tx, e);
		hdr = e->buf;
	} else if (len > RX_MAX ||
	           open_copy(tx, pkt, len, pn_offset, tc->rx_next - 1, tc->rx[0], tc->rx[1]) < 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	memset(dest, 0, NGTCP2_HP_SAMPLELEN);
	dest[0] = pkt[0] ^ hdr[0];
	for (size_t i = pn_offset; i < tx->op.hdr_len; i++)
		dest[1 + i - pn_offset] = pkt[i] ^ hdr[i];
	return 0;
}

static int rx_decrypt(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                      const ngtcp2_crypto_aead_ctx *aead_ctx, const uint8_t *ciphertext,
                      size_t ciphertextlen, const uint8_t *nonce, size_t noncelen,
                      const uint8_t *aad, size_t aadlen)
{
	if (!ours(aead_ctx->native_handle))
		return ngtcp2_crypto_decrypt_cb(dest, aead, aead_ctx, ciphertext, ciphertextlen,
		                                nonce, noncelen, aad, aadlen);
	struct kpx_qtx *tx = cur;
	struct qkey *q = untag(aead_ctx->native_handle);
	if (tx == NULL || noncelen != KW_QUIC_IV_LEN || aadlen < 2)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	uint64_t pn = pn_of(q->key, nonce);
	struct opened *op = &tx->op;
	bool same = op->valid &&
	            (op->ent != NULL ? kpx_rxb_matches(op->ent, q->key, pn, ciphertext,
	                                               ciphertextlen, aad, aadlen)
	                             : op->key == q->key && op->pn == pn && op->ct == ciphertext &&
	                                   op->ct_len == ciphertextlen);
	/* ngtcp2 chose another key or decoded another packet number than the engine did (or,
	 * for a pre-opened packet, anything differs): open this packet again (from the datagram,
	 * right before its ciphertext) with its choice. */
	if (!same) {
		const uint8_t *pkt = ciphertext - aadlen;
		size_t pn_len = (size_t)(aad[0] & 3) + 1;
		if (!in_window(tx, pkt, aadlen + ciphertextlen) ||
		    aadlen + ciphertextlen > RX_MAX ||
		    open_copy(tx, pkt, aadlen + ciphertextlen, aadlen - pn_len, pn - 1, q->key,
		              q->key) < 0 ||
		    op->pn != pn)
			goto fail;
	}
	int status = op->status;
	bool batched = same && op->ent != NULL;
	if (batched)
		op->ent->taken = true;
	if (status == 0 && op->out_len + KW_QUIC_TAG_LEN == ciphertextlen) {
		memcpy(dest, op->pt, op->out_len);
		kpx_add(&tx->m->quic_packets_opened, 1);
		kpx_add(&tx->m->quic_rx_opens[batched ? 0 : 1], 1);
		if (pn + 1 > q->rx->rx_next)
			q->rx->rx_next = pn + 1;
		op_clear(tx);
		return 0;
	}
	op_clear(tx);
	if (status == -KW_ECRYPTO) {
		kpx_add(&tx->m->quic_open_failures, 1);
		return NGTCP2_ERR_DECRYPT;
	}
	return NGTCP2_ERR_CALLBACK_FAILURE;
fail:
	op_clear(tx);
	return NGTCP2_ERR_CALLBACK_FAILURE;
}

void kpx_qtx_rx_add(struct kpx_qtx *tx, struct kpx_qtx_conn *tc, const uint8_t *data, size_t len)
{
	if (tx == NULL || tc == NULL || (data[0] & 0x80))
		return;
	/* A short-header packet runs to the datagram's end. */
	kpx_rxb_add(tx->rxb, tc, data, len, 1 + KPX_QUIC_SCID_LEN, tc->rx_next - 1, tc->rx[0],
	            tc->rx[1]);
}

void kpx_qtx_rx_run(struct kpx_qtx *tx)
{
	if (tx == NULL || tx->rxb->n == 0)
		return;
	kpx_rxb_run(tx->rxb, run_batch, tx);
	kpx_add(&tx->m->quic_rx_batches, 1);
	kpx_add(&tx->m->quic_rx_batch_packets, tx->rxb->n);
}

void kpx_qtx_rx_done(struct kpx_qtx *tx)
{
	if (tx == NULL)
		return;
	op_clear(tx);
	kpx_add(&tx->m->quic_rx_batch_unused, kpx_rxb_unused(tx->rxb));
	kpx_rxb_clear(tx->rxb);
}

void kpx_qtx_rx_window(struct kpx_qtx *tx, const uint8_t *data, size_t len)
{
	if (tx == NULL)
		return;
	tx->win = data;
	tx->win_len = data != NULL ? len : 0;
	op_clear(tx);
}

static int tx_hp_mask(uint8_t *dest, const ngtcp2_crypto_cipher *hp,
                      const ngtcp2_crypto_cipher_ctx *hp_ctx, const uint8_t *sample)
{
	if (!ours(hp_ctx->native_handle))
		return ngtcp2_crypto_hp_mask_cb(dest, hp, hp_ctx, sample);
	struct qkey *q = untag(hp_ctx->native_handle);
	if (q->rx != NULL)
		return rx_hp_mask(dest, q, sample);
	/* The header stays unprotected until the engine seals the packet. */
	memset(dest, 0, NGTCP2_HP_SAMPLELEN);
	return 0;
}

static void tx_delete_aead_ctx(ngtcp2_conn *conn, ngtcp2_crypto_aead_ctx *ctx, void *ud)
{
	if (ours(ctx->native_handle))
		unwrap_free(ctx->native_handle);
	else
		ngtcp2_crypto_delete_crypto_aead_ctx_cb(conn, ctx, ud);
	ctx->native_handle = NULL;
}

static void tx_delete_cipher_ctx(ngtcp2_conn *conn, ngtcp2_crypto_cipher_ctx *ctx, void *ud)
{
	if (ours(ctx->native_handle))
		unwrap_free(ctx->native_handle);
	else
		ngtcp2_crypto_delete_crypto_cipher_ctx_cb(conn, ctx, ud);
	ctx->native_handle = NULL;
}

/*
 * next_key makes the next key phase of k into *out, checked against the IV ngtcp2 derived
 * itself, and replaces ngtcp2's context ctx with one of ours (receiving for rx). 0 or -1.
 */
static int next_key(struct kw_quic_key **out, struct kw_quic_key *k, const uint8_t *iv,
                    ngtcp2_crypto_aead_ctx *ctx, struct kpx_qtx_conn *rx)
{
	struct kw_quic_key *next = NULL;
	struct kw_quic_key_material km;

	if (kw_quic_key_next(&next, k) < 0)
		return -1;
	kw_quic_key_material(next, &km);
	if (memcmp(km.iv, iv, KW_QUIC_IV_LEN) != 0) {
		kw_error("QUIC key update: the engine's next key differs from ngtcp2's");
		kw_quic_key_unref(next);
		return -1;
	}
	void *h = wrap_rx(next, rx);
	if (h == NULL) {
		kw_quic_key_unref(next);
		return -1;
	}
	ngtcp2_crypto_aead_ctx_free(ctx);
	ctx->native_handle = h;
	*out = next;
	return 0;
}

/*
 * tx_update_key: ngtcp2's key update. Each side of an engine connection
 * gets the next phase of its newest engine key (same header-protection
 * key); the receive side keeps the newest key of each phase for the
 * header-protection callback.
 */
static int tx_update_key(ngtcp2_conn *conn, uint8_t *rx_secret, uint8_t *tx_secret,
                         ngtcp2_crypto_aead_ctx *rx_aead_ctx, uint8_t *rx_iv,
                         ngtcp2_crypto_aead_ctx *tx_aead_ctx, uint8_t *tx_iv,
                         const uint8_t *current_rx_secret, const uint8_t *current_tx_secret,
                         size_t secretlen, void *ud)
{
	struct kpx_qtx_conn *tc = ud;
	uint8_t rx_key[64], tx_key[64];
	struct kw_quic_key *rx = NULL, *next = NULL;

	if (ngtcp2_crypto_update_key(conn, rx_secret, tx_secret, rx_aead_ctx, rx_key, rx_iv,
	                             tx_aead_ctx, tx_key, tx_iv, current_rx_secret,
	                             current_tx_secret, secretlen) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	memset(rx_key, 0, sizeof(rx_key));
	memset(tx_key, 0, sizeof(tx_key));
	struct kw_quic_key *rxcur = tc->rx[tc->rx_phase];
	if (rxcur != NULL && next_key(&rx, rxcur, rx_iv, rx_aead_ctx, tc) < 0)
		goto fail;
	if (tc->key != NULL && next_key(&next, tc->key, tx_iv, tx_aead_ctx, NULL) < 0)
		goto fail;
	if (rx != NULL) {
		tc->rx_phase ^= 1;
		kw_quic_key_unref(tc->rx[tc->rx_phase]);
		tc->rx[tc->rx_phase] = rx;
	}
	if (next != NULL) {
		kw_quic_key_unref(tc->key);
		tc->key = next;
	}
	return 0;
fail:
	/* ngtcp2 frees neither context when the callback fails. */
	kw_quic_key_unref(rx);
	if (ours(rx_aead_ctx->native_handle))
		unwrap_free(rx_aead_ctx->native_handle);
	else
		ngtcp2_crypto_aead_ctx_free(rx_aead_ctx);
	rx_aead_ctx->native_handle = NULL;
	if (ours(tx_aead_ctx->native_handle))
		unwrap_free(tx_aead_ctx->native_handle);
	else
		ngtcp2_crypto_aead_ctx_free(tx_aead_ctx);
	tx_aead_ctx->native_handle = NULL;
	return NGTCP2_ERR_CALLBACK_FAILURE;
}

void kpx_qtx_callbacks(ngtcp2_callbacks *cb)
{
	cb->encrypt = tx_encrypt;
	cb->decrypt = rx_decrypt;
	cb->hp_mask = tx_hp_mask;
	cb->update_key = tx_update_key;
	cb->delete_crypto_aead_ctx = tx_delete_aead_ctx;
	cb->delete_crypto_cipher_ctx = tx_delete_cipher_ctx;
}

/* ---- installing the first 1-RTT send key ---- */

static int cipher_of(ngtcp2_conn *conn)
{
	const ngtcp2_crypto_ctx *ctx = ngtcp2_conn_get_crypto_ctx(conn);
	switch ((gnutls_cipher_algorithm_t)(uintptr_t)ctx->aead.native_handle) {
	case GNUTLS_CIPHER_AES_128_GCM:
		return KW_QUIC_CIPHER_AES_128_GCM;
	case GNUTLS_CIPHER_AES_256_GCM:
		return KW_QUIC_CIPHER_AES_256_GCM;
	case GNUTLS_CIPHER_CHACHA20_POLY1305:
		return KW_QUIC_CIPHER_CHACHA20_POLY1305;
	default:
		return -1;
	}
}

/*
 * install_key installs a 1-RTT key (receive: key phase 0) as the engine's,
 * for ngtcp2 to hand back in its callbacks; *out takes this function's
 * reference to the key. Both contexts wrap the same key, each with a
 * reference of its own, dropped when ngtcp2 deletes that context.
 */
static int install_key(ngtcp2_conn *conn, struct kpx_qtx_conn *tc, bool rx, const uint8_t *secret,
                       size_t secretlen, struct kw_quic_key **out)
{
	int cipher = cipher_of(conn);
	struct kw_quic_key *k = NULL;
	struct kw_quic_key_material km;
	ngtcp2_crypto_aead_ctx aead_ctx = {0};
	ngtcp2_crypto_cipher_ctx hp_ctx = {0};

	if (cipher < 0 || kw_quic_key_new(&k, (enum kw_quic_cipher)cipher, secret, secretlen) < 0)
		return -1;
	kw_quic_key_material(k, &km);
	aead_ctx.native_handle = wrap_rx(k, rx ? tc : NULL);
	hp_ctx.native_handle = wrap_rx(k, rx ? tc : NULL);
	int rc = -1;
	if (aead_ctx.native_handle != NULL && hp_ctx.native_handle != NULL)
		rc = rx ? ngtcp2_conn_install_rx_key(conn, secret, secretlen, &aead_ctx, km.iv,
		                                     km.iv_len, &hp_ctx)
		        : ngtcp2_conn_install_tx_key(conn, secret, secretlen, &aead_ctx, km.iv,
		                                     km.iv_len, &hp_ctx);
	if (rc != 0) {
		if (aead_ctx.native_handle != NULL)
			unwrap_free(aead_ctx.native_handle);
		if (hp_ctx.native_handle != NULL)
			unwrap_free(hp_ctx.native_handle);
		kw_quic_key_unref(k);
		return -1;
	}
	*out = k;
	return 0;
}

static int install_tx_key(ngtcp2_conn *conn, struct kpx_qtx_conn *tc, const uint8_t *secret,
                          size_t secretlen)
{
	return install_key(conn, tc, false, secret, secretlen, &tc->key);
}

static int install_rx_key(ngtcp2_conn *conn, struct kpx_qtx_conn *tc, const uint8_t *secret,
                          size_t secretlen)
{
	if (install_key(conn, tc, true, secret, secretlen, &tc->rx[0]) < 0)
		return -1;
	tc->rx_phase = 0;
	return 0;
}

/* secret_func is ngtcp2's GnuTLS secret hook, but for the 1-RTT keys. */
static int secret_func(gnutls_session_t session, gnutls_record_encryption_level_t gtls_level,
                       const void *rx_secret, const void *tx_secret, size_t secretlen)
{
	ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
	ngtcp2_conn *conn = ref->get_conn(ref);
	struct kpx_qtx_conn *tc = ref->user_data;
	ngtcp2_crypto_level level =
	    ngtcp2_crypto_gnutls_from_gnutls_record_encryption_level(gtls_level);

	bool app = level == NGTCP2_CRYPTO_LEVEL_APPLICATION && cipher_of(conn) >= 0;

	if (rx_secret != NULL && app && install_rx_key(conn, tc, rx_secret, secretlen) < 0)
		return -1;
	if (rx_secret != NULL && !app &&
	    ngtcp2_crypto_derive_and_install_rx_key(conn, NULL, NULL, NULL, level, rx_secret,
	                                            secretlen) != 0)
		return -1;
	if (tx_secret == NULL)
		return 0;
	if (app)
		return install_tx_key(conn, tc, tx_secret, secretlen);
	return ngtcp2_crypto_derive_and_install_tx_key(conn, NULL, NULL, NULL, level, tx_secret,
	                                               secretlen) != 0
	           ? -1
	           : 0;
}

void kpx_qtx_configure_session(gnutls_session_t s)
{
	gnutls_handshake_set_secret_function(s, secret_func);
}

void kpx_qtx_conn_cleanup(struct kpx_qtx_conn *tc)
{
	kw_quic_key_unref(tc->key);
	tc->key = NULL;
	for (int i = 0; i < 2; i++) {
		kw_quic_key_unref(tc->rx[i]);
		tc->rx[i] = NULL;
	}
}

/* ---- sealing ---- */

static void drop_all(struct kpx_qtx *tx)
{
	for (size_t i = 0; i < tx->n; i++)
		kw_quic_key_unref(tx->pkts[i].key);
	tx->n = 0;
}

int kpx_qtx_seal(struct kpx_qtx *tx, uint8_t *buf, size_t len, ngtcp2_conn *conn)
{
	if (tx == NULL || tx->n == 0)
		return 0;
	size_t keep = 0;
	/* Only what is sent: a packet recorded for a datagram that was not kept is dropped. */
	for (size_t i = 0; i < tx->n; i++) {
		struct kw_quic_pkt *p = &tx->pkts[i];
		if (p->buf >= buf && p->buf + p->len + KW_QUIC_TAG_LEN <= buf + len)
			tx->pkts[keep++] = *p;
		else
			kw_quic_key_unref(p->key);
	}
	tx->n = keep;
	if (keep == 0)
		return 0;
	for (size_t i = 0; i < tx->n; i++)
		tx->pkts[i].conn = (uintptr_t)conn; /* a pool's core selection */
	size_t ok = run_batch(tx, tx->pkts, tx->n);
	kpx_add(&tx->m->quic_packets_protected, ok);
	kpx_add(&tx->m->quic_protect_batches, 1);
	/* A key at the engine's count limit: move to the next key phase now. ngtcp2's own
	 * max_encryption count stays authoritative and would close the connection later. */
	for (size_t i = 0; i < tx->n; i++) {
		if (tx->pkts[i].status == 0 && tx->pkts[i].must_update) {
			if (ngtcp2_conn_initiate_key_update(conn, kw_now_ns()) == 0)
				kpx_add(&tx->m->quic_key_limit_updates, 1);
			break;
		}
	}
	int rc = ok == tx->n ? 0 : -1;
	if (rc < 0)
		kpx_add(&tx->m->quic_protect_failures, tx->n - ok);
	drop_all(tx);
	return rc;
}

int kpx_qtx_new(struct kpx_qtx **out, struct kpx_worker *w)
{
	struct kpx_qtx *tx = calloc(1, sizeof(*tx));
	if (tx == NULL)
		return -ENOMEM;
	int rc = kw_quic_engine_new(&tx->engine, w->opt->quic_engine);
	if (rc < 0) {
		free(tx);
		return rc;
	}
	tx->rxb = kpx_rxb_new(KPX_RXB_SCRATCH);
	if (tx->rxb == NULL) {
		kpx_qtx_free(tx);
		return -ENOMEM;
	}
	if (w->opt->quic_sched != KW_QUIC_SCHED_INLINE) {
		struct kw_quic_pool_config pc = {
		    .engine = w->opt->quic_engine,
		    .sched = (enum kw_quic_sched)w->opt->quic_sched,
		    .workers = w->opt->quic_crypto_threads,
		    .done = pool_done,
		    .done_arg = tx,
		};
		rc = kw_quic_pool_new(&tx->pool, &pc);
		if (rc < 0) {
			kpx_qtx_free(tx);
			return rc;
		}
	}
	tx->m = &w->m;
	cur = tx;
	*out = tx;
	return 0;
}

void kpx_qtx_free(struct kpx_qtx *tx)
{
	if (tx == NULL)
		return;
	drop_all(tx);
	op_clear(tx);
	if (tx->pool != NULL && tx->m != NULL)
		pool_cpu(tx, true);
	kw_quic_pool_free(tx->pool);
	kpx_rxb_free(tx->rxb);
	if (cur == tx)
		cur = NULL;
	kw_quic_engine_free(tx->engine);
	free(tx);
}

const char *kpx_qtx_engine_name(const struct kpx_qtx *tx)
{
	return kw_quic_engine_name(tx->engine);
}
