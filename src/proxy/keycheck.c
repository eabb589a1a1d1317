/*
 * keycheck.c - does a keyserver hold each keyway key?
 *
 * A keyway key loads without a round trip (its public half is local), so a
 * key no keyserver holds shows only when handshakes fail. After the
 * listeners are open, and again after each SIGHUP reload, the main thread
 * sends one keyless signature per keyway key (over a fixed digest, with the
 * key's SKI) through its own keyless backend, on its own loop: nothing
 * waits for the answers. "Key not found" (0x02) means no keyserver holds
 * the key: a warning naming the certificate, the SKI and the keyservers,
 * and with --require-keys the certificate is refused until a reload finds
 * it. No answer is a different warning: the keyservers could not be asked,
 * which says nothing about the key.
 */
#include "keycheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/keytype.h"
#include "keyway/log.h"
#include "keyway/offload.h"
#include "keyway/provider_api.h"

struct kpx_keycheck {
	struct kw_loop *loop;
	const struct kpx_options *o;
	struct kw_backend *b; /* made at the first check */
	bool stopping;        /* answers after kpx_keycheck_free began are dropped */
};

/* One check: the op, and what its answer is about. */
struct probe {
	struct kw_op op;
	struct kpx_keycheck *kc;
	struct kpx_tls *t; /* a reference */
	size_t i;          /* the --cert/--key pair */
	uint8_t msg[32];   /* a fixed digest: what is signed does not matter */
};

static void probe_release(struct kw_op *op)
{
	struct probe *p = (struct probe *)op;
	kpx_tls_unref(p->t);
	free(p);
}

static const char *servers_text(const struct kpx_options *o)
{
	const char *env = getenv("KEYWAY_SERVERS");
	return o->keyless.servers != NULL ? o->keyless.servers
	       : env != NULL              ? env
	                                  : "(the provider's openssl.cnf servers)";
}

static void probe_done(struct kw_op *op, void *arg)
{
	struct probe *p = arg;
	const struct kpx_options *o = p->kc->o;
	const char *cert = o->certs[p->i];
	char hex[2 * KW_SKI_LEN + 1];

	if (p->kc->stopping)
		return;
	kw_hex(hex, op->ski, KW_SKI_LEN);
	if (op->status == 0) {
		kw_debug("--cert %s: a keyserver holds its key (SKI %s)", cert, hex);
	} else if (op->status == -KW_EREMOTE && op->remote_error == KW_ERR_KEY_NOT_FOUND) {
		kw_warn("--cert %s: no keyserver holds its key (SKI %s; asked %s)%s", cert, hex,
		        servers_text(o),
		        o->require_keys ? "; --require-keys: the certificate is not served until a "
		                          "reload (SIGHUP) finds the key"
		                        : "; handshakes on it fail (--require-keys refuses it)");
		if (o->require_keys)
			kpx_tls_refuse(p->t, p->i, hex);
	} else if (op->status == -KW_EREMOTE) {
		kw_warn("--cert %s: checking its key (SKI %s) a keyserver of %s answered \"%s\"",
		        cert, hex, servers_text(o), kw_proto_error_string(op->remote_error));
	} else {
		kw_warn("--cert %s: cannot tell whether a keyserver holds its key (SKI %s): no "
		        "keyserver of %s answered (%s); the key is not known to be missing",
		        cert, hex, servers_text(o), kw_strerror(op->status));
	}
}

/* The keyless opcode of a signature with key, over a 32-byte digest; 0: not a signing key. */
static uint8_t opcode_for(const EVP_PKEY *key)
{
	switch (kw_key_type_of(key)) {
	case KW_KEY_RSA:
		return KW_OP_RSA_SIGN_SHA256;
	case KW_KEY_EC:
		return KW_OP_ECDSA_SIGN_SHA256;
	case KW_KEY_ED25519:
		return KW_OP_ED25519_SIGN;
	}
	return 0;
}

static void check_one(struct kpx_keycheck *kc, struct kpx_tls *t, size_t i)
{
	EVP_PKEY *key = kpx_tls_key(t, i);
	uint8_t opcode = key != NULL ? opcode_for(key) : 0;
	struct probe *p = opcode != 0 ? calloc(1, sizeof(*p)) : NULL;

	if (p == NULL)
		return;
	kw_op_init(&p->op, KW_OPK_ASYM, opcode);
	if (kw_key_ski(key, p->op.ski) != 0) {
		free(p);
		return;
	}
	memset(p->msg, 0x4b, sizeof(p->msg));
	p->op.in = p->msg;
	p->op.in_len = sizeof(p->msg);
	p->op.done = probe_done;
	p->op.done_arg = p;
	p->op.release = probe_release;
	p->kc = kc;
	p->i = i;
	p->t = t;
	kpx_tls_ref(t);
	int rc = kw_backend_submit(kc->b, &p->op);
	if (rc < 0)
		kw_warn("--cert %s: cannot check its key: %s", kc->o->certs[i], kw_strerror(rc));
	kw_op_unref(&p->op); /* the backend holds the op until it answers */
}

struct kpx_keycheck *kpx_keycheck_new(struct kw_loop *loop, const struct kpx_options *o)
{
	struct kpx_keycheck *kc = calloc(1, sizeof(*kc));
	if (kc != NULL) {
		kc->loop = loop;
		kc->o = o;
	}
	return kc;
}

void kpx_keycheck_run(struct kpx_keycheck *kc, struct kpx_tls *t)
{
	const struct kpx_options *o = kc->o;
	char why[512];

	if (!o->keys_remote || o->provider == NULL)
		return;
	if (kc->b == NULL &&
	    kw_provider_keyless_backend(o->provider, kc->loop, &kc->b, why, sizeof(why)) < 0) {
		kw_warn("cannot check that keyservers hold the keys: %s", why);
		return;
	}
	for (size_t i = 0; i < kpx_tls_count(t); i++)
		if (kpx_key_kind(o->keys[i]) == KPX_KEY_KEYWAY)
			check_one(kc, t, i);
}

void kpx_keycheck_free(struct kpx_keycheck *kc)
{
	if (kc == NULL)
		return;
	kc->stopping = true;
	kw_backend_free(kc->b);
	free(kc);
}
