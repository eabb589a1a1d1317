/*
 * keyref.c - naming a keyway key: the keyway: URI and the reference DER
 * carried in a "KEYWAY KEY" PEM block, and the opaque key built from it.
 *
 * The reference is parsed with OpenSSL's ASN.1 templates only:
 *   KeywayKey ::= SEQUENCE { version INTEGER (1), uri UTF8String,
 *                            spki SubjectPublicKeyInfo }
 * The key's public half is taken from the SPKI and its SKI recomputed from
 * it; the URI's SKI must agree, so a reference cannot name one key and
 * carry another.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/keyref.h"
#include "context.h"
#include "keyref.h"

#define REF_VERSION 1

typedef struct {
	ASN1_INTEGER *version;
	ASN1_UTF8STRING *uri;
	X509_PUBKEY *spki;
} KWP_KEY_REF;

/* The ASN.1 templates are at the end of the file. */
static const ASN1_ITEM *KWP_KEY_REF_it(void);
static const ASN1_ITEM *KWP_RSA_PUB_it(void);

/* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } */
typedef struct {
	ASN1_INTEGER *n;
	ASN1_INTEGER *e;
} KWP_RSA_PUB;

static KWP_KEY_REF *ref_d2i(const unsigned char **p, long len)
{
	return (KWP_KEY_REF *)ASN1_item_d2i(NULL, p, len, ASN1_ITEM_rptr(KWP_KEY_REF));
}

static void ref_free(KWP_KEY_REF *ref)
{
	ASN1_item_free((ASN1_VALUE *)ref, ASN1_ITEM_rptr(KWP_KEY_REF));
}

static KWP_RSA_PUB *rsa_pub_d2i(const unsigned char **p, long len)
{
	return (KWP_RSA_PUB *)ASN1_item_d2i(NULL, p, len, ASN1_ITEM_rptr(KWP_RSA_PUB));
}

static void rsa_pub_free(KWP_RSA_PUB *rp)
{
	ASN1_item_free((ASN1_VALUE *)rp, ASN1_ITEM_rptr(KWP_RSA_PUB));
}

/* ---- URI ---- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* unescape decodes %XX in [p, p+n) into a new string; NULL on a bad escape or no memory. */
static char *unescape(const char *p, size_t n, int *bad)
{
	char *out = malloc(n + 1);
	size_t j = 0;

	*bad = 0;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '%') {
			out[j++] = p[i];
			continue;
		}
		int hi = -1, lo = -1;
		if (i + 2 < n) {
			hi = hexval((unsigned char)p[i + 1]);
			lo = hexval((unsigned char)p[i + 2]);
		}
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			*bad = 1;
			free(out);
			return NULL;
		}
		out[j++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[j] = '\0';
	return out;
}

int kwp_uri_parse(const char *uri, uint8_t ski[KW_SKI_LEN], char **cert_path, char *err,
                  size_t errlen)
{
	static const char scheme[] = KWP_URI_SCHEME ":";
	char hex[2 * KW_SKI_LEN + 1];
	char *path = NULL;
	int have_ski = 0;

	if (cert_path != NULL)
		*cert_path = NULL;
	if (strncasecmp(uri, scheme, sizeof(scheme) - 1) != 0) {
		snprintf(err, errlen, "not a keyway: URI");
		return -EINVAL;
	}
	for (const char *p = uri + sizeof(scheme) - 1; *p;) {
		const char *end = strchr(p, ';');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', n);

		if (n == 0) { /* empty attribute: "a;;b" or a trailing ';' */
			p++;
			continue;
		}
		if (eq == NULL) {
			snprintf(err, errlen, "attribute '%.*s' has no value (expected name=value)",
			         (int)n, p);
			goto err;
		}
		size_t nlen = (size_t)(eq - p), vlen = n - nlen - 1;
		if (nlen == 3 && strncasecmp(p, "ski", 3) == 0) {
			if (have_ski) {
				snprintf(err, errlen, "attribute 'ski' repeated");
				goto err;
			}
			if (vlen != sizeof(hex) - 1) {
				snprintf(err, errlen,
				         "ski must be %d hex digits, got %zu characters",
				         2 * KW_SKI_LEN, vlen);
				goto err;
			}
			memcpy(hex, eq + 1, vlen);
			hex[vlen] = '\0';
			if (kw_unhex(ski, KW_SKI_LEN, hex) < 0) {
				snprintf(err, errlen, "ski '%s' is not hexadecimal", hex);
				goto err;
			}
			have_ski = 1;
		} else if (nlen == 4 && strncasecmp(p, "cert", 4) == 0) {
			int bad;
			if (path != NULL) {
				snprintf(err, errlen, "attribute 'cert' repeated");
				goto err;
			}
			path = unescape(eq + 1, vlen, &bad);
			if (path == NULL) {
				snprintf(err, errlen,
				         bad ? "cert path has a bad %%XX escape" : "out of memory");
				goto err;
			}
			if (path[0] != '/') {
				snprintf(err, errlen, "cert path '%s' is not absolute", path);
				goto err;
			}
		} else {
			snprintf(err, errlen, "unknown attribute '%.*s' (expected ski and cert)",
			         (int)nlen, p);
			goto err;
		}
		p += n;
	}
	if (!have_ski || path == NULL) {
		snprintf(err, errlen, "missing attribute '%s' (keyway:ski=<40 hex>;cert=<path>)",
		         have_ski ? "cert" : "ski");
		goto err;
	}
	if (cert_path != NULL)
		*cert_path = path;
	else
		free(path);
	return 0;
err:
	free(path);
	return -EINVAL;
}

char *kw_keyref_uri(const uint8_t ski[KW_SKI_LEN], const char *cert_path)
{
	char hex[2 * KW_SKI_LEN + 1];
	size_t n = strlen(cert_path);
	char *out = malloc(sizeof(KWP_URI_SCHEME ":ski=;cert=") + sizeof(hex) + 3 * n);
	char *w;

	if (out == NULL)
		return NULL;
	kw_hex(hex, ski, KW_SKI_LEN);
	w = out + sprintf(out, "%s:ski=%s;cert=", KWP_URI_SCHEME, hex);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)cert_path[i];
		if (c == ';' || c == '%' || c < 0x20 || c == 0x7f)
			w += sprintf(w, "%%%02X", c);
		else
			*w++ = (char)c;
	}
	*w = '\0';
	return out;
}

/* ---- reference DER ---- */

int kwp_ref_encode(const char *uri, const EVP_PKEY *pub, unsigned char **der, size_t *der_len)
{
	KWP_KEY_REF *ref = (KWP_KEY_REF *)ASN1_item_new(ASN1_ITEM_rptr(KWP_KEY_REF));
	int rc = -KW_ECRYPTO, len;

	*der = NULL;
	if (ref == NULL)
		return -ENOMEM;
	/* X509_PUBKEY_set wants a non-const key but does not modify it. */
	if (!ASN1_INTEGER_set(ref->version, REF_VERSION) ||
	    !ASN1_STRING_set(ref->uri, uri, (int)strlen(uri)) ||
	    X509_PUBKEY_set(&ref->spki, (EVP_PKEY *)pub) != 1)
		goto out;
	len = ASN1_item_i2d((ASN1_VALUE *)ref, der, ASN1_ITEM_rptr(KWP_KEY_REF));
	if (len <= 0) {
		*der = NULL;
		goto out;
	}
	*der_len = (size_t)len;
	rc = 0;
out:
	ref_free(ref);
	ERR_clear_error();
	return rc;
}

int kwp_ref_from_uri(const char *uri, unsigned char **der, size_t *der_len, int *reason, char *err,
                     size_t errlen)
{
	uint8_t want[KW_SKI_LEN], got[KW_SKI_LEN];
	char *path = NULL;
	EVP_PKEY *pub = NULL;
	int rc;

	*reason = KWP_R_BAD_URI;
	if ((rc = kwp_uri_parse(uri, want, &path, err, errlen)) < 0)
		return rc;
	rc = kw_load_public_key(path, &pub);
	if (rc < 0) {
		snprintf(err, errlen, "cert '%s': %s", path,
		         rc == -KW_ECRYPTO ? "not a PEM or DER certificate or public key"
		                           : kw_strerror(rc));
		goto out;
	}
	if ((rc = kw_key_ski(pub, got)) < 0) {
		snprintf(err, errlen, "cert '%s': cannot encode its public key", path);
		goto out;
	}
	if (CRYPTO_memcmp(want, got, KW_SKI_LEN) != 0) {
		char hex[2 * KW_SKI_LEN + 1];
		kw_hex(hex, got, KW_SKI_LEN);
		*reason = KWP_R_SKI_MISMATCH;
		snprintf(err, errlen, "the key in '%s' has SKI %s, not the one the URI names", path,
		         hex);
		rc = -EINVAL;
		goto out;
	}
	if ((rc = kwp_ref_encode(uri, pub, der, der_len)) < 0) {
		*reason = KWP_R_INTERNAL;
		snprintf(err, errlen, "cannot encode the key reference");
	}
out:
	EVP_PKEY_free(pub);
	free(path);
	return rc;
}

char *kwp_ref_pem(const unsigned char *der, size_t der_len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *out = NULL, *data;
	long n;

	if (bio == NULL)
		return NULL;
	if (PEM_write_bio(bio, KWP_PEM_LABEL, "", der, (long)der_len) > 0 &&
	    (n = BIO_get_mem_data(bio, &data)) > 0 && (out = malloc((size_t)n + 1)) != NULL) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
	}
	BIO_free(bio);
	return out;
}

int kw_keyref_pem(const char *uri, const EVP_PKEY *pub, char **pem)
{
	unsigned char *der = NULL;
	size_t der_len = 0;
	int rc = kwp_ref_encode(uri, pub, &der, &der_len);

	*pem = NULL;
	if (rc == 0 && (*pem = kwp_ref_pem(der, der_len)) == NULL)
		rc = -ENOMEM;
	OPENSSL_free(der);
	return rc;
}

/* ---- keys ---- */

/* ecdsa_max_size is the largest DER ECDSA-Sig-Value for an order of `bits` bits. */
static int ecdsa_max_size(int bits)
{
	/* As ECDSA_size: r and s as large as the order, which needs a leading zero
	 * when its top bit falls on a byte boundary. */
	int ilen = (bits + 7) / 8 + (bits % 8 == 0);
	int one = ASN1_object_size(0, ilen, V_ASN1_INTEGER);
	return ASN1_object_size(1, 2 * one, V_ASN1_SEQUENCE);
}

static int set_ec(struct kwp_key *k, const X509_ALGOR *alg, const unsigned char *pk, int pklen,
                  char *err, size_t errlen)
{
	const ASN1_OBJECT *aobj;
	const void *pval;
	int ptype, coord;

	X509_ALGOR_get0(&aobj, &ptype, &pval, alg);
	int nid = ptype == V_ASN1_OBJECT ? OBJ_obj2nid(pval) : NID_undef;
	switch (nid) {
	case NID_X9_62_prime256v1:
		k->bits = 256, k->security_bits = 128, coord = 32;
		break;
	case NID_secp384r1:
		k->bits = 384, k->security_bits = 192, coord = 48;
		break;
	case NID_secp521r1:
		k->bits = 521, k->security_bits = 256, coord = 66;
		break;
	default:
		snprintf(err, errlen, "EC key on an unsupported curve (P-256, P-384, P-521 only)");
		return -EINVAL;
	}
	/* Uncompressed 04||X||Y or compressed 02/03||X. */
	if (!(pklen == 1 + 2 * coord && pk[0] == 4) &&
	    !(pklen == 1 + coord && (pk[0] == 2 || pk[0] == 3))) {
		snprintf(err, errlen, "malformed EC public point");
		return -EINVAL;
	}
	k->group = OBJ_nid2sn(nid);
	k->max_size = ecdsa_max_size(k->bits);
	return 0;
}

static int set_rsa(struct kwp_key *k, const unsigned char *pk, int pklen, char *err, size_t errlen)
{
	const unsigned char *p = pk;
	KWP_RSA_PUB *rp = rsa_pub_d2i(&p, pklen);
	int rc = -EINVAL;

	if (rp == NULL || p != pk + pklen) {
		snprintf(err, errlen, "malformed RSA public key");
		goto out;
	}
	k->n = ASN1_INTEGER_to_BN(rp->n, NULL);
	k->e = ASN1_INTEGER_to_BN(rp->e, NULL);
	if (k->n == NULL || k->e == NULL || BN_is_negative(k->n) || BN_is_negative(k->e) ||
	    !BN_is_odd(k->e) || BN_num_bits(k->n) < 1024 || BN_num_bits(k->n) > 16384) {
		snprintf(err, errlen, "RSA public key out of range (1024 to 16384 bits)");
		goto out;
	}
	k->bits = BN_num_bits(k->n);
	k->security_bits = BN_security_bits(k->bits, -1);
	k->max_size = (k->bits + 7) / 8;
	rc = 0;
out:
	rsa_pub_free(rp);
	return rc;
}

/* parse_ref decodes der into ref, checking the whole input is one reference of version 1. */
static KWP_KEY_REF *parse_ref(const unsigned char *der, size_t len, char *err, size_t errlen)
{
	const unsigned char *p = der;
	KWP_KEY_REF *ref;
	long version;

	if (len > 65536) {
		snprintf(err, errlen, "reference too large");
		return NULL;
	}
	ref = ref_d2i(&p, (long)len);
	if (ref == NULL || p != der + len) {
		snprintf(err, errlen, "not a KEYWAY KEY structure (DER)");
		goto err;
	}
	version = ASN1_INTEGER_get(ref->version);
	if (version != REF_VERSION) {
		snprintf(err, errlen, "KEYWAY KEY version %ld (only %d is known)", version,
		         REF_VERSION);
		goto err;
	}
	return ref;
err:
	ref_free(ref);
	ERR_clear_error();
	return NULL;
}

static int spki_type(X509_PUBKEY *spki)
{
	ASN1_OBJECT *aobj = NULL;
	if (X509_PUBKEY_get0_param(&aobj, NULL, NULL, NULL, spki) != 1)
		return -EINVAL;
	switch (OBJ_obj2nid(aobj)) {
	case NID_rsaEncryption:
		return KW_KEY_RSA;
	case NID_X9_62_id_ecPublicKey:
		return KW_KEY_EC;
	case NID_ED25519:
		return KW_KEY_ED25519;
	}
	return -EINVAL;
}

int kwp_ref_type(const unsigned char *der, size_t len)
{
	char err[128];
	KWP_KEY_REF *ref = parse_ref(der, len, err, sizeof(err));
	int type = ref != NULL ? spki_type(ref->spki) : -EINVAL;
	ref_free(ref);
	return type;
}

/* rsa_params_null: the AlgorithmIdentifier's parameters are NULL or absent. */
static bool rsa_params_null(const X509_ALGOR *alg)
{
	int ptype = V_ASN1_UNDEF;
	X509_ALGOR_get0(NULL, &ptype, NULL, alg);
	return ptype == V_ASN1_NULL || ptype == V_ASN1_UNDEF;
}

/*
 * fill_from_spki sets k's type, sizes and public key from spki, and its
 * SKI (as gokeyless computes it: SHA-1 of the subjectPublicKey bits) into
 * ski. 0, or a negative code with *reason and err set.
 */
static int fill_from_spki(struct kwp_key *k, X509_PUBKEY *spki, uint8_t ski[KW_SKI_LEN],
                          int *reason, char *err, size_t errlen)
{
	const unsigned char *pk = NULL;
	X509_ALGOR *alg = NULL;
	unsigned char *der = NULL;
	int pklen = 0, der_len, rc = 0;

	int type = spki_type(spki);
	*reason = KWP_R_UNSUPPORTED_KEY;
	if (type < 0 || X509_PUBKEY_get0_param(NULL, &pk, &pklen, &alg, spki) != 1 || pklen <= 0) {
		snprintf(err, errlen, "unsupported public key type (RSA, EC and Ed25519 only)");
		return -EINVAL;
	}
	if (type == KW_KEY_RSA && !rsa_params_null(alg)) {
		/* RFC 8017 A.1: rsaEncryption's parameters are NULL. Anything else would be
		 * kept as given and change the SPKI's bytes on re-encoding (fuzz finding). */
		snprintf(err, errlen, "RSA public key with algorithm parameters other than NULL");
		return -EINVAL;
	}
	SHA1(pk, (size_t)pklen, ski);
	k->type = (enum kw_key_type)type;
	if (type == KW_KEY_RSA) {
		rc = set_rsa(k, pk, pklen, err, errlen);
	} else if (type == KW_KEY_EC) {
		rc = set_ec(k, alg, pk, pklen, err, errlen);
	} else if (pklen != 32) {
		snprintf(err, errlen, "malformed Ed25519 public key");
		rc = -EINVAL;
	} else {
		k->bits = 256, k->security_bits = 128, k->max_size = 64;
	}
	if (rc < 0)
		return rc;
	*reason = KWP_R_INTERNAL;
	if (type != KW_KEY_RSA) {
		if ((k->pub = malloc((size_t)pklen)) == NULL)
			goto nomem;
		memcpy(k->pub, pk, (size_t)pklen);
		k->pub_len = (size_t)pklen;
	}
	if ((der_len = i2d_X509_PUBKEY(spki, &der)) <= 0)
		goto nomem;
	k->spki = der;
	k->spki_len = (size_t)der_len;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

struct kwp_key *kwp_key_from_ref(struct kwp_prov *prov, const unsigned char *der, size_t len,
                                 int *reason, char *err, size_t errlen)
{
	KWP_KEY_REF *ref = NULL;
	struct kwp_key *k = NULL;
	uint8_t ski[KW_SKI_LEN];

	*reason = KWP_R_BAD_KEY_REF;
	if ((ref = parse_ref(der, len, err, errlen)) == NULL)
		return NULL;
	k = calloc(1, sizeof(*k));
	if (k == NULL)
		goto nomem;
	atomic_init(&k->refs, 1);
	k->prov = prov;

	int ulen = ASN1_STRING_length(ref->uri);
	const unsigned char *u = ASN1_STRING_get0_data(ref->uri);
	if (ulen <= 0 || memchr(u, '\0', (size_t)ulen) != NULL) {
		snprintf(err, errlen, "empty or malformed URI in KEYWAY KEY");
		goto err;
	}
	if ((k->uri = strndup((const char *)u, (size_t)ulen)) == NULL)
		goto nomem;
	if (kwp_uri_parse(k->uri, k->ski, NULL, err, errlen) < 0)
		goto err;
	if (fill_from_spki(k, ref->spki, ski, reason, err, errlen) < 0)
		goto err;
	if (CRYPTO_memcmp(ski, k->ski, KW_SKI_LEN) != 0) {
		*reason = KWP_R_SKI_MISMATCH;
		snprintf(err, errlen,
		         "the URI's SKI does not match the public key it travels with");
		goto err;
	}
	ref_free(ref);
	ERR_clear_error();
	return k;
nomem:
	*reason = KWP_R_INTERNAL;
	snprintf(err, errlen, "out of memory");
err:
	ref_free(ref);
	kwp_key_unref(k);
	ERR_clear_error();
	return NULL;
}

int kwp_key_set_local(struct kwp_key *k, EVP_PKEY *pkey, char *err, size_t errlen)
{
	X509_PUBKEY *spki = NULL;
	enum kw_key_type want = k->type;
	int reason, rc = -EINVAL;

	if (k->spki != NULL || k->local != NULL) {
		snprintf(err, errlen, "key already set");
		return -EINVAL;
	}
	if (X509_PUBKEY_set(&spki, pkey) != 1) {
		snprintf(err, errlen, "cannot read the key's public half");
		goto out;
	}
	if ((rc = fill_from_spki(k, spki, k->ski, &reason, err, errlen)) < 0)
		goto out;
	rc = -EINVAL;
	if (want != 0 && k->type != want) {
		snprintf(err, errlen, "a %s key where %s was expected", kw_key_type_name(k->type),
		         kw_key_type_name(want));
		goto out;
	}
	if (!EVP_PKEY_up_ref(pkey)) {
		snprintf(err, errlen, "cannot reference the key");
		goto out;
	}
	k->local = pkey;
	rc = 0;
out:
	X509_PUBKEY_free(spki);
	ERR_clear_error();
	return rc;
}

struct kwp_key *kwp_key_ref(struct kwp_key *k)
{
	atomic_fetch_add(&k->refs, 1);
	return k;
}

void kwp_key_unref(struct kwp_key *k)
{
	if (k == NULL || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	free(k->uri);
	OPENSSL_free(k->spki);
	free(k->pub);
	BN_free(k->n);
	BN_free(k->e);
	EVP_PKEY_free(k->local);
	free(k);
}

/* ---- references passed from our store and decoders to our keymgmt ---- */

#define REF_MAGIC "kwref\x01\x00\x00"
#define REF_MAGIC_LEN 8

int kwp_ref_blob(struct kwp_prov *prov, const unsigned char *der, size_t len, unsigned char **blob,
                 size_t *blob_len)
{
	size_t n = REF_MAGIC_LEN + sizeof(prov) + len;
	unsigned char *b = OPENSSL_malloc(n);

	*blob = NULL;
	if (b == NULL)
		return -ENOMEM;
	memcpy(b, REF_MAGIC, REF_MAGIC_LEN);
	memcpy(b + REF_MAGIC_LEN, &prov, sizeof(prov));
	memcpy(b + REF_MAGIC_LEN + sizeof(prov), der, len);
	*blob = b;
	*blob_len = n;
	return 0;
}

int kwp_ref_unblob(const void *blob, size_t blob_len, struct kwp_prov **prov,
                   const unsigned char **der, size_t *der_len)
{
	const unsigned char *b = blob;

	if (b == NULL || blob_len <= REF_MAGIC_LEN + sizeof(*prov) ||
	    memcmp(b, REF_MAGIC, REF_MAGIC_LEN) != 0)
		return -EINVAL;
	memcpy(prov, b + REF_MAGIC_LEN, sizeof(*prov));
	if (!kwp_prov_is_live(*prov))
		return -EINVAL;
	*der = b + REF_MAGIC_LEN + sizeof(*prov);
	*der_len = blob_len - REF_MAGIC_LEN - sizeof(*prov);
	return 0;
}

/* ---- ASN.1 templates ---- */

/* clang-format off */
ASN1_SEQUENCE(KWP_KEY_REF) = {
	ASN1_SIMPLE(KWP_KEY_REF, version, ASN1_INTEGER),
	ASN1_SIMPLE(KWP_KEY_REF, uri, ASN1_UTF8STRING),
	ASN1_SIMPLE(KWP_KEY_REF, spki, X509_PUBKEY),
} static_ASN1_SEQUENCE_END(KWP_KEY_REF)

ASN1_SEQUENCE(KWP_RSA_PUB) = {
	ASN1_SIMPLE(KWP_RSA_PUB, n, ASN1_INTEGER),
	ASN1_SIMPLE(KWP_RSA_PUB, e, ASN1_INTEGER),
} static_ASN1_SEQUENCE_END(KWP_RSA_PUB)
