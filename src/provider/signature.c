/*
 * signature.c - signatures by keyserver: RSA PKCS#1 v1.5, RSA-PSS, ECDSA,
 * Ed25519.
 *
 * The keyless protocol signs digests (Ed25519: whole messages), one opcode
 * per hash. Digest-sign hashes locally and sends the digest; sign() takes
 * the digest as given. RSA-PSS exists only with MGF1 = the signature hash
 * and a salt as long as the hash; asking for anything else fails when it is
 * set. A signature-size query (sig == NULL) answers from the key, never
 * from the keyserver: libssl asks before every signature.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "algorithms.h"
#include "async.h"
#include "context.h"
#include "keyref.h"

/* The most an Ed25519 message may be: what fits in one keyless frame. */
#define MAX_MESSAGE 60000

enum sig_alg { ALG_RSA, ALG_ECDSA, ALG_ED25519 };

struct sig_ctx {
	struct kwp_prov *prov;
	enum sig_alg alg;
	struct kwp_key *key;
	EVP_MD *md;         /* NULL until set (sign() may infer it from the length) */
	int pad;            /* RSA: RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING */
	int saltlen;        /* RSA_PSS_SALTLEN_DIGEST or a byte count */
	EVP_MD *mgf1;       /* NULL: same as md */
	EVP_MD_CTX *mdctx;  /* digest-sign in progress (RSA, ECDSA) */
	unsigned char *msg; /* digest-sign in progress (Ed25519) */
	size_t msg_len;
};

static void *sig_newctx(void *provctx, const char *propq, enum sig_alg alg)
{
	struct sig_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return NULL;
	ctx->prov = provctx;
	ctx->alg = alg;
	ctx->pad = RSA_PKCS1_PADDING;
	ctx->saltlen = RSA_PSS_SALTLEN_DIGEST;
	return ctx;
}

static void *rsa_newctx(void *provctx, const char *propq)
{
	return sig_newctx(provctx, propq, ALG_RSA);
}
static void *ecdsa_newctx(void *provctx, const char *propq)
{
	return sig_newctx(provctx, propq, ALG_ECDSA);
}
static void *ed25519_newctx(void *provctx, const char *propq)
{
	return sig_newctx(provctx, propq, ALG_ED25519);
}

static void reset_message(struct sig_ctx *ctx)
{
	EVP_MD_CTX_free(ctx->mdctx);
	ctx->mdctx = NULL;
	if (ctx->msg != NULL)
		OPENSSL_cleanse(ctx->msg, ctx->msg_len);
	free(ctx->msg);
	ctx->msg = NULL;
	ctx->msg_len = 0;
}

static void sig_freectx(void *vctx)
{
	struct sig_ctx *ctx = vctx;
	if (ctx == NULL)
		return;
	reset_message(ctx);
	EVP_MD_free(ctx->md);
	EVP_MD_free(ctx->mgf1);
	kwp_key_unref(ctx->key);
	free(ctx);
}

static void *sig_dupctx(void *vctx)
{
	struct sig_ctx *src = vctx, *dst = calloc(1, sizeof(*dst));

	if (dst == NULL)
		return NULL;
	*dst = *src;
	dst->mdctx = NULL;
	dst->msg = NULL;
	if (dst->key != NULL)
		(void)kwp_key_ref(dst->key);
	/* Each digest is owned only once its reference is taken: on a failure, drop the
	 * pointers not (yet) referenced and free the ones that are. */
	if (dst->md != NULL && !EVP_MD_up_ref(dst->md)) {
		dst->md = dst->mgf1 = NULL;
		goto err;
	}
	if (dst->mgf1 != NULL && !EVP_MD_up_ref(dst->mgf1)) {
		dst->mgf1 = NULL;
		goto err;
	}
	if (src->mdctx != NULL && ((dst->mdctx = EVP_MD_CTX_new()) == NULL ||
	                           !EVP_MD_CTX_copy_ex(dst->mdctx, src->mdctx)))
		goto err;
	if (src->msg != NULL) {
		if ((dst->msg = malloc(src->msg_len ? src->msg_len : 1)) == NULL)
			goto err;
		memcpy(dst->msg, src->msg, src->msg_len);
	}
	return dst;
err:
	sig_freectx(dst);
	return NULL;
}

/* ---- digests and opcodes ---- */

/*
 * The digests keyless signs, the length of each bare digest, and the opcode
 * of each signature over it (0: keyless has none).
 */
static const struct sig_digest {
	int nid;
	size_t len;
	uint8_t rsa, rsa_pss, ecdsa;
} sig_digests[] = {
    {NID_md5_sha1, 36, KW_OP_RSA_SIGN_MD5SHA1, 0, KW_OP_ECDSA_SIGN_MD5SHA1},
    {NID_sha1, 20, KW_OP_RSA_SIGN_SHA1, 0, KW_OP_ECDSA_SIGN_SHA1},
    {NID_sha224, 28, KW_OP_RSA_SIGN_SHA224, 0, KW_OP_ECDSA_SIGN_SHA224},
    {NID_sha256, 32, KW_OP_RSA_SIGN_SHA256, KW_OP_RSA_PSS_SIGN_SHA256, KW_OP_ECDSA_SIGN_SHA256},
    {NID_sha384, 48, KW_OP_RSA_SIGN_SHA384, KW_OP_RSA_PSS_SIGN_SHA384, KW_OP_ECDSA_SIGN_SHA384},
    {NID_sha512, 64, KW_OP_RSA_SIGN_SHA512, KW_OP_RSA_PSS_SIGN_SHA512, KW_OP_ECDSA_SIGN_SHA512},
};

#define N_SIG_DIGESTS (sizeof(sig_digests) / sizeof(sig_digests[0]))

/* sign_opcode is the opcode signing a nid digest the way ctx signs, or -1. */
static int sign_opcode(const struct sig_ctx *ctx, int nid)
{
	for (size_t i = 0; i < N_SIG_DIGESTS; i++) {
		const struct sig_digest *d = &sig_digests[i];
		if (d->nid != nid)
			continue;
		int op = ctx->alg == ALG_ECDSA               ? d->ecdsa
		         : ctx->pad == RSA_PKCS1_PSS_PADDING ? d->rsa_pss
		                                             : d->rsa;
		return op != 0 ? op : -1;
	}
	return -1;
}

/* nid_for_length guesses a bare digest's hash from its length (sign() with no digest set). */
static int nid_for_length(size_t len)
{
	for (size_t i = 0; i < N_SIG_DIGESTS; i++)
		if (sig_digests[i].len == len)
			return sig_digests[i].nid;
	return NID_undef;
}

static int set_md(struct sig_ctx *ctx, EVP_MD **slot, const char *name)
{
	EVP_MD *md = EVP_MD_fetch(ctx->prov->libctx, name, NULL);
	if (md == NULL) {
		kwp_raise(ctx->prov, KWP_R_UNSUPPORTED, "unknown digest '%s'", name);
		return 0;
	}
	EVP_MD_free(*slot);
	*slot = md;
	return 1;
}

/*
 * check_pss enforces the one PSS the keyless protocol has. The digest may
 * not be known yet (nid NID_undef): then only what is wrong whatever the
 * digest fails; the rest is checked again when signing.
 */
static int check_pss(const struct sig_ctx *ctx, int nid, int mdsize)
{
	if (ctx->alg != ALG_RSA || ctx->pad != RSA_PKCS1_PSS_PADDING)
		return 1;
	if (nid == NID_undef && ctx->md != NULL) {
		nid = EVP_MD_get_type(ctx->md);
		mdsize = EVP_MD_get_size(ctx->md);
	}
	if (ctx->saltlen != RSA_PSS_SALTLEN_DIGEST &&
	    (ctx->saltlen < 0 || (nid != NID_undef && ctx->saltlen != mdsize))) {
		kwp_raise(ctx->prov, KWP_R_UNSUPPORTED,
		          "RSA-PSS salt length must equal the digest length "
		          "(rsa_pss_saltlen:digest): keyless has no other");
		return 0;
	}
	if (ctx->mgf1 != NULL && nid != NID_undef && EVP_MD_get_type(ctx->mgf1) != nid) {
		kwp_raise(ctx->prov, KWP_R_UNSUPPORTED,
		          "RSA-PSS MGF1 digest must be the signature digest: keyless has no other");
		return 0;
	}
	return 1;
}

/* ---- init ---- */

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

static int sig_init(struct sig_ctx *ctx, void *keydata, const OSSL_PARAM params[])
{
	struct kwp_key *key = keydata;
	static const enum kw_key_type want[] = {
	    [ALG_RSA] = KW_KEY_RSA, [ALG_ECDSA] = KW_KEY_EC, [ALG_ED25519] = KW_KEY_ED25519};

	if (key != NULL) {
		if (key->type != want[ctx->alg] || key->spki == NULL) {
			kwp_raise(ctx->prov, KWP_R_UNSUPPORTED_KEY, "key type mismatch");
			return 0;
		}
		(void)kwp_key_ref(key);
		kwp_key_unref(ctx->key);
		ctx->key = key;
	}
	if (ctx->key == NULL) {
		kwp_raise(ctx->prov, KWP_R_INTERNAL, "no key");
		return 0;
	}
	reset_message(ctx);
	return sig_set_ctx_params(ctx, params);
}

static int sig_sign_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
	return sig_init(vctx, keydata, params);
}

static int sig_digest_sign_init(void *vctx, const char *mdname, void *keydata,
                                const OSSL_PARAM params[])
{
	struct sig_ctx *ctx = vctx;

	if (!sig_init(ctx, keydata, params))
		return 0;
	if (ctx->alg == ALG_ED25519) {
		if (mdname != NULL && mdname[0] != '\0') {
			kwp_raise(ctx->prov, KWP_R_UNSUPPORTED, "Ed25519 takes no digest (got %s)",
			          mdname);
			return 0;
		}
		return 1;
	}
	if (!set_md(ctx, &ctx->md, mdname != NULL && mdname[0] != '\0' ? mdname : "SHA256") ||
	    !check_pss(ctx, NID_undef, 0))
		return 0;
	if ((ctx->mdctx = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex2(ctx->mdctx, ctx->md, NULL)) {
		kwp_raise(ctx->prov, KWP_R_INTERNAL, "cannot start the digest");
		return 0;
	}
	return 1;
}

/* ---- signing ---- */

/* remote_sign signs a digest (or the Ed25519 message) and checks the answer's shape. */
static int remote_sign(struct sig_ctx *ctx, int nid, unsigned char *sig, size_t *siglen,
                       size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
	const struct kwp_key *k = ctx->key;
	struct kwp_op *op = NULL;
	const uint8_t *out;
	size_t out_len = 0;
	int opcode = -1, ok = 0;

	if (!check_pss(ctx, nid, (int)tbslen))
		return 0;
	if (ctx->alg == ALG_ED25519)
		opcode = KW_OP_ED25519_SIGN;
	else
		opcode = sign_opcode(ctx, nid);
	if (opcode < 0) {
		kwp_raise(ctx->prov, KWP_R_UNSUPPORTED, "%s with %s is not in the keyless protocol",
		          ctx->alg == ALG_ECDSA               ? "ECDSA"
		          : ctx->pad == RSA_PKCS1_PSS_PADDING ? "RSA-PSS"
		                                              : "RSA PKCS#1",
		          nid == NID_undef ? "this digest" : OBJ_nid2sn(nid));
		return 0;
	}
	if (kwp_key_op(ctx->prov, k, (uint8_t)opcode, tbs, tbslen, &op) < 0)
		return 0;
	out = kwp_op_out(op, &out_len);

	int shape_ok;
	if (ctx->alg == ALG_RSA) {
		shape_ok = out_len == (size_t)k->max_size;
	} else if (ctx->alg == ALG_ED25519) {
		shape_ok = out_len == 64;
	} else {
		const unsigned char *p = out;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)out_len);
		shape_ok = es != NULL && p == out + out_len && out_len <= (size_t)k->max_size;
		ECDSA_SIG_free(es);
	}
	if (!shape_ok) {
		kwp_raise(ctx->prov, KWP_R_BAD_RESPONSE,
		          "keyserver returned a malformed %zu-byte "
		          "signature",
		          out_len);
	} else if (out_len > sigsize) {
		kwp_raise(ctx->prov, KWP_R_BUFFER_TOO_SMALL,
		          "signature of %zu bytes, buffer of %zu", out_len, sigsize);
	} else {
		memcpy(sig, out, out_len);
		*siglen = out_len;
		ok = 1;
	}
	kwp_op_unref(op);
	return ok;
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
	struct sig_ctx *ctx = vctx;
	int nid;

	if (sig == NULL) {
		*siglen = (size_t)ctx->key->max_size;
		return 1;
	}
	if (ctx->alg == ALG_ED25519) {
		kwp_raise(ctx->prov, KWP_R_UNSUPPORTED,
		          "Ed25519 signs messages, not digests: use digest-sign (pkeyutl -rawin)");
		return 0;
	}
	if (ctx->md != NULL) {
		if (tbslen != (size_t)EVP_MD_get_size(ctx->md)) {
			kwp_raise(ctx->prov, KWP_R_UNSUPPORTED,
			          "input of %zu bytes is not a %s digest", tbslen,
			          EVP_MD_get0_name(ctx->md));
			return 0;
		}
		nid = EVP_MD_get_type(ctx->md);
	} else {
		nid = nid_for_length(tbslen);
		/* Without DigestInfo only the 36-byte MD5+SHA-1 form exists for RSA. */
		if (ctx->alg == ALG_RSA && nid != NID_md5_sha1) {
			kwp_raise(ctx->prov, KWP_R_UNSUPPORTED,
			          "set the digest the input was made with (e.g. -pkeyopt "
			          "digest:sha256): keyless signs digests");
			return 0;
		}
	}
	return remote_sign(ctx, nid, sig, siglen, sigsize, tbs, tbslen);
}

static int sig_digest_sign_update(void *vctx, const unsigned char *data, size_t datalen)
{
	struct sig_ctx *ctx = vctx;

	if (ctx->alg != ALG_ED25519)
		return ctx->mdctx != NULL && EVP_DigestUpdate(ctx->mdctx, data, datalen);
	if (datalen > MAX_MESSAGE - ctx->msg_len) {
		kwp_raise(ctx->prov, KWP_R_UNSUPPORTED, "Ed25519 message over %d bytes",
		          MAX_MESSAGE);
		return 0;
	}
	unsigned char *m = realloc(ctx->msg, ctx->msg_len + datalen + 1);
	if (m == NULL)
		return 0;
	ctx->msg = m;
	memcpy(m + ctx->msg_len, data, datalen);
	ctx->msg_len += datalen;
	return 1;
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
	struct sig_ctx *ctx = vctx;
	unsigned char dgst[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (sig == NULL) {
		*siglen = (size_t)ctx->key->max_size;
		return 1;
	}
	if (ctx->alg == ALG_ED25519)
		return remote_sign(ctx, NID_undef, sig, siglen, sigsize,
		                   ctx->msg ? ctx->msg : (const unsigned char *)"", ctx->msg_len);
	if (ctx->mdctx == NULL || !EVP_DigestFinal_ex(ctx->mdctx, dgst, &dlen))
		return 0;
	return remote_sign(ctx, EVP_MD_get_type(ctx->md), sig, siglen, sigsize, dgst, dlen);
}

static int sig_digest_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                           const unsigned char *tbs, size_t tbslen)
{
	struct sig_ctx *ctx = vctx;
	unsigned char dgst[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (sig == NULL) {
		*siglen = (size_t)ctx->key->max_size;
		return 1;
	}
	if (ctx->alg == ALG_ED25519) {
		if (tbslen > MAX_MESSAGE) {
			kwp_raise(ctx->prov, KWP_R_UNSUPPORTED, "Ed25519 message over %d bytes",
			          MAX_MESSAGE);
			return 0;
		}
		return remote_sign(ctx, NID_undef, sig, siglen, sigsize, tbs, tbslen);
	}
	if (ctx->md == NULL || !EVP_Digest(tbs, tbslen, dgst, &dlen, ctx->md, NULL))
		return 0;
	return remote_sign(ctx, EVP_MD_get_type(ctx->md), sig, siglen, sigsize, dgst, dlen);
}

/* ---- parameters ---- */

static int parse_pad(const OSSL_PARAM *p, int *pad)
{
	static const struct {
		const char *name;
		int value;
	} names[] = {
	    {OSSL_PKEY_RSA_PAD_MODE_NONE, RSA_NO_PADDING},
	    {OSSL_PKEY_RSA_PAD_MODE_PKCSV15, RSA_PKCS1_PADDING},
	    {OSSL_PKEY_RSA_PAD_MODE_OAEP, RSA_PKCS1_OAEP_PADDING},
	    {OSSL_PKEY_RSA_PAD_MODE_X931, RSA_X931_PADDING},
	    {OSSL_PKEY_RSA_PAD_MODE_PSS, RSA_PKCS1_PSS_PADDING},
	};
	if (p->data_type == OSSL_PARAM_UTF8_STRING) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strcmp(p->data, names[i].name) == 0) {
				*pad = names[i].value;
				return 1;
			}
		return 0;
	}
	return OSSL_PARAM_get_int(p, pad);
}

static int parse_saltlen(const OSSL_PARAM *p, int *saltlen)
{
	if (p->data_type != OSSL_PARAM_UTF8_STRING)
		return OSSL_PARAM_get_int(p, saltlen);
	const char *s = p->data;
	if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0)
		*saltlen = RSA_PSS_SALTLEN_DIGEST;
	else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0)
		*saltlen = RSA_PSS_SALTLEN_MAX;
	else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0)
		*saltlen = RSA_PSS_SALTLEN_AUTO;
	else {
		char *end;
		long v = strtol(s, &end, 10);
		if (*s == '\0' || *end != '\0' || v < 0 || v > 1 << 16)
			return 0;
		*saltlen = (int)v;
	}
	return 1;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	struct sig_ctx *ctx = vctx;
	const OSSL_PARAM *p;

	if (params == NULL)
		return 1;
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL) {
		if (p->data_type != OSSL_PARAM_UTF8_STRING || ctx->alg == ALG_ED25519 ||
		    !set_md(ctx, &ctx->md, p->data))
			return 0;
	}
	if (ctx->alg != ALG_RSA)
		return 1;
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
		int pad;
		if (!parse_pad(p, &pad))
			return 0;
		if (pad != RSA_PKCS1_PADDING && pad != RSA_PKCS1_PSS_PADDING) {
			kwp_raise(ctx->prov, KWP_R_UNSUPPORTED,
			          "keyless RSA signatures are PKCS#1 v1.5 or PSS only");
			return 0;
		}
		ctx->pad = pad;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL &&
	    !parse_saltlen(p, &ctx->saltlen))
		return 0;
	if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) != NULL &&
	    (p->data_type != OSSL_PARAM_UTF8_STRING || !set_md(ctx, &ctx->mgf1, p->data)))
		return 0;
	return check_pss(ctx, NID_undef, 0);
}

/* What every signature context takes: the digest, fetched with these properties. */
/* clang-format off */
#define DIGEST_SETTABLE                                                        \
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),          \
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0)
/* The RSA padding parameters, both settable and gettable. */
#define RSA_PAD_PARAMS                                                         \
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),        \
	OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0)
/* clang-format on */

static const OSSL_PARAM *rsa_settable_ctx_params(void *vctx, void *provctx)
{
	static const OSSL_PARAM p[] = {
	    DIGEST_SETTABLE,
	    RSA_PAD_PARAMS,
	    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
	    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, NULL, 0),
	    OSSL_PARAM_END,
	};
	return p;
}

static const OSSL_PARAM *ecdsa_settable_ctx_params(void *vctx, void *provctx)
{
	static const OSSL_PARAM p[] = {
	    DIGEST_SETTABLE,
	    OSSL_PARAM_END,
	};
	return p;
}

static const OSSL_PARAM *ed25519_settable_ctx_params(void *vctx, void *provctx)
{
	static const OSSL_PARAM p[] = {OSSL_PARAM_END};
	return p;
}

/* algorithm_id encodes the X.509 AlgorithmIdentifier of this signature, when it has a fixed one. */
static int algorithm_id(const struct sig_ctx *ctx, OSSL_PARAM *p)
{
	int sig_nid = NID_undef, ptype = V_ASN1_UNDEF;
	unsigned char *der = NULL;
	X509_ALGOR *alg = NULL;
	int ok = 0, len;

	if (ctx->alg == ALG_ED25519) {
		sig_nid = NID_ED25519;
	} else if (ctx->md == NULL || (ctx->alg == ALG_RSA && ctx->pad != RSA_PKCS1_PADDING)) {
		return 1; /* PSS parameters are not worth encoding here; nothing to say */
	} else if (!OBJ_find_sigid_by_algs(&sig_nid, EVP_MD_get_type(ctx->md),
	                                   ctx->alg == ALG_RSA ? NID_rsaEncryption
	                                                       : NID_X9_62_id_ecPublicKey)) {
		return 1;
	}
	if (ctx->alg == ALG_RSA)
		ptype = V_ASN1_NULL;
	if ((alg = X509_ALGOR_new()) == NULL ||
	    !X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), ptype, NULL) ||
	    (len = i2d_X509_ALGOR(alg, &der)) <= 0)
		goto out;
	ok = OSSL_PARAM_set_octet_string(p, der, (size_t)len);
out:
	OPENSSL_free(der);
	X509_ALGOR_free(alg);
	return ok;
}

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	struct sig_ctx *ctx = vctx;
	OSSL_PARAM *p;

	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL &&
	    !algorithm_id(ctx, p))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL &&
	    !OSSL_PARAM_set_utf8_string(p, ctx->md ? EVP_MD_get0_name(ctx->md) : ""))
		return 0;
	if (ctx->alg != ALG_RSA)
		return 1;
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
		int ok = p->data_type == OSSL_PARAM_UTF8_STRING
		             ? OSSL_PARAM_set_utf8_string(p, ctx->pad == RSA_PKCS1_PSS_PADDING
		                                                 ? OSSL_PKEY_RSA_PAD_MODE_PSS
		                                                 : OSSL_PKEY_RSA_PAD_MODE_PKCSV15)
		             : OSSL_PARAM_set_int(p, ctx->pad);
		if (!ok)
			return 0;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) != NULL) {
		int ok = p->data_type == OSSL_PARAM_UTF8_STRING
		             ? OSSL_PARAM_set_utf8_string(p, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST)
		             : OSSL_PARAM_set_int(p, RSA_PSS_SALTLEN_DIGEST);
		if (!ok)
			return 0;
	}
	return 1;
}

static const OSSL_PARAM *sig_gettable_ctx_params(void *vctx, void *provctx)
{
	static const OSSL_PARAM p[] = {
	    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
	    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
	    RSA_PAD_PARAMS,
	    OSSL_PARAM_END,
	};
	return p;
}

/* clang-format off */
#define SIGNATURE_FUNCTIONS(t)                                                                  \
	const OSSL_DISPATCH kwp_##t##_signature_functions[] = {                                 \
		{OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))t##_newctx},                       \
		{OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx},                     \
		{OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx},                       \
		{OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_sign_init},                 \
		{OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign},                           \
		{OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init},   \
		{OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_sign_update}, \
		{OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final}, \
		{OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))sig_digest_sign},             \
		{OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params},       \
		{OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable_ctx_params}, \
		{OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params},       \
		{OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))t##_settable_ctx_params}, \
		{0, NULL},                                                                      \
	}

SIGNATURE_FUNCTIONS(rsa);
SIGNATURE_FUNCTIONS(ecdsa);
SIGNATURE_FUNCTIONS(ed25519);
/* clang-format on */
