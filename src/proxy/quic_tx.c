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

#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/quic.h"
#include "stats.h"

/* Recorded packets per batch at most: a 64 KB batch of the smallest 1-RTT packets. */
#define MAX_PENDING 4096

/* One of our contexts: the key it stands for (one reference). */
struct qkey {
	struct kw_quic_key *key;
};

struct kpx_qtx {
	struct kw_quic_engine *engine;
	struct kpx_wmetrics *m;
	size_t n;
	struct kw_quic_pkt pkts[MAX_PENDING];
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

/* wrap makes a context for k (a new reference); NULL when out of memory. */
static void *wrap(struct kw_quic_key *k)
{
	struct qkey *q = malloc(sizeof(*q));
	if (q == NULL)
		return NULL;
	q->key = kw_quic_key_ref(k);
	return (void *)((uintptr_t)q | 1);
}

static void unwrap_free(void *handle)
{
	struct qkey *q = untag(handle);
	kw_quic_key_unref(q->key);
	free(q);
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
	struct kw_quic_key_material km;
	/* ngtcp2 seals a packet in place right after its header; anything else is not ours to
	 * defer. */
	if (tx == NULL || tx->n == MAX_PENDING || dest != aad + aadlen ||
	    noncelen != KW_QUIC_IV_LEN)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	if (dest != plaintext)
		memmove(dest, plaintext, plaintextlen);
	memset(dest + plaintextlen, 0, KW_QUIC_TAG_LEN); /* the tag's room, sealed later */
	/* The packet number is the nonce's low 8 bytes without the IV (RFC 9001 §5.3). */
	kw_quic_key_material(q->key, &km);
	uint64_t pn = 0;
	for (size_t i = 4; i < KW_QUIC_IV_LEN; i++)
		pn = pn << 8 | (uint8_t)(nonce[i] ^ km.iv[i]);
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

static int tx_hp_mask(uint8_t *dest, const ngtcp2_crypto_cipher *hp,
                      const ngtcp2_crypto_cipher_ctx *hp_ctx, const uint8_t *sample)
{
	if (!ours(hp_ctx->native_handle))
		return ngtcp2_crypto_hp_mask_cb(dest, hp, hp_ctx, sample);
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
 * tx_update_key: ngtcp2's key update. The receive side is ngtcp2's; the
 * send side is the next phase of the current engine key (same header-
 * protection key), checked against the IV ngtcp2 derived itself.
 */
static int tx_update_key(ngtcp2_conn *conn, uint8_t *rx_secret, uint8_t *tx_secret,
                         ngtcp2_crypto_aead_ctx *rx_aead_ctx, uint8_t *rx_iv,
                         ngtcp2_crypto_aead_ctx *tx_aead_ctx, uint8_t *tx_iv,
                         const uint8_t *current_rx_secret, const uint8_t *current_tx_secret,
                         size_t secretlen, void *ud)
{
	struct kpx_qtx_conn *tc = ud;
	uint8_t rx_key[64], tx_key[64];
	struct kw_quic_key *next = NULL;
	struct kw_quic_key_material km;

	if (ngtcp2_crypto_update_key(conn, rx_secret, tx_secret, rx_aead_ctx, rx_key, rx_iv,
	                             tx_aead_ctx, tx_key, tx_iv, current_rx_secret,
	                             current_tx_secret, secretlen) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	memset(rx_key, 0, sizeof(rx_key));
	memset(tx_key, 0, sizeof(tx_key));
	if (tc->key == NULL)
		return 0; /* not an engine connection: ngtcp2's contexts stay */
	ngtcp2_crypto_aead_ctx_free(tx_aead_ctx);
	tx_aead_ctx->native_handle = NULL;
	if (kw_quic_key_next(&next, tc->key) < 0)
		goto fail;
	kw_quic_key_material(next, &km);
	if (memcmp(km.iv, tx_iv, KW_QUIC_IV_LEN) != 0) {
		kw_error("QUIC key update: the engine's next key differs from ngtcp2's");
		goto fail;
	}
	if ((tx_aead_ctx->native_handle = wrap(next)) == NULL)
		goto fail;
	kw_quic_key_unref(tc->key);
	tc->key = next;
	return 0;
fail:
	kw_quic_key_unref(next);
	ngtcp2_crypto_aead_ctx_free(rx_aead_ctx);
	rx_aead_ctx->native_handle = NULL;
	return NGTCP2_ERR_CALLBACK_FAILURE;
}

void kpx_qtx_callbacks(ngtcp2_callbacks *cb)
{
	cb->encrypt = tx_encrypt;
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

/* install_tx_key installs the 1-RTT send key as the engine's. */
static int install_tx_key(ngtcp2_conn *conn, struct kpx_qtx_conn *tc, const uint8_t *secret,
                          size_t secretlen)
{
	int cipher = cipher_of(conn);
	struct kw_quic_key *k = NULL;
	struct kw_quic_key_material km;
	ngtcp2_crypto_aead_ctx aead_ctx = {0};
	ngtcp2_crypto_cipher_ctx hp_ctx = {0};

	if (cipher < 0 || kw_quic_key_new(&k, (enum kw_quic_cipher)cipher, secret, secretlen) < 0)
		return -1;
	kw_quic_key_material(k, &km);
	aead_ctx.native_handle = wrap(k);
	hp_ctx.native_handle = wrap(k);
	if (aead_ctx.native_handle == NULL || hp_ctx.native_handle == NULL ||
	    ngtcp2_conn_install_tx_key(conn, secret, secretlen, &aead_ctx, km.iv, km.iv_len,
	                               &hp_ctx) != 0) {
		if (aead_ctx.native_handle != NULL)
			unwrap_free(aead_ctx.native_handle);
		if (hp_ctx.native_handle != NULL)
			unwrap_free(hp_ctx.native_handle);
		kw_quic_key_unref(k);
		return -1;
	}
	tc->key = k;
	return 0;
}

/* secret_func is ngtcp2's GnuTLS secret hook, but for the 1-RTT send key. */
static int secret_func(gnutls_session_t session, gnutls_record_encryption_level_t gtls_level,
                       const void *rx_secret, const void *tx_secret, size_t secretlen)
{
	ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
	ngtcp2_conn *conn = ref->get_conn(ref);
	struct kpx_qtx_conn *tc = ref->user_data;
	ngtcp2_crypto_level level =
	    ngtcp2_crypto_gnutls_from_gnutls_record_encryption_level(gtls_level);

	if (rx_secret != NULL && ngtcp2_crypto_derive_and_install_rx_key(
	                             conn, NULL, NULL, NULL, level, rx_secret, secretlen) != 0)
		return -1;
	if (tx_secret == NULL)
		return 0;
	if (level == NGTCP2_CRYPTO_LEVEL_APPLICATION && cipher_of(conn) >= 0)
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
	/* The engine never blocks, so the monotonic clock (vDSO, no system call, unlike the
	 * thread CPU clock) measures the worker's CPU time in it. */
	uint64_t t0 = kw_now_ns();
	size_t ok = kw_quic_engine_run(tx->engine, tx->pkts, tx->n);
	kpx_add(&tx->m->quic_engine_cpu_ns, kw_now_ns() - t0);
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
	if (cur == tx)
		cur = NULL;
	kw_quic_engine_free(tx->engine);
	free(tx);
}

const char *kpx_qtx_engine_name(const struct kpx_qtx *tx)
{
	return kw_quic_engine_name(tx->engine);
}
