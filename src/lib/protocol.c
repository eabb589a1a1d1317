/*
 * protocol.c - keyless protocol v1 codec (see keyway/protocol.h and
 * docs/protocol.md). Wire bytes are read through a bounds-checked cursor and
 * written through a writer over space reserved up front; nothing is ever cast
 * to a struct.
 */
#include "keyway/protocol.h"

#include <errno.h>
#include <string.h>

#include "keyway/err.h"

/* A read cursor over untrusted bytes: every read checks what is left first. */
struct cursor {
	const uint8_t *p;
	size_t len;
};

static int cur_u8(struct cursor *c, uint8_t *out)
{
	if (c->len < 1)
		return -KW_EPROTO;
	*out = c->p[0];
	c->p++;
	c->len--;
	return 0;
}

static int cur_u16(struct cursor *c, uint16_t *out)
{
	if (c->len < 2)
		return -KW_EPROTO;
	*out = (uint16_t)((unsigned)c->p[0] << 8 | c->p[1]);
	c->p += 2;
	c->len -= 2;
	return 0;
}

static int cur_u32(struct cursor *c, uint32_t *out)
{
	if (c->len < 4)
		return -KW_EPROTO;
	*out = (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 |
	       (uint32_t)c->p[3];
	c->p += 4;
	c->len -= 4;
	return 0;
}

static int cur_bytes(struct cursor *c, struct kw_bytes *out, size_t n)
{
	if (c->len < n)
		return -KW_EPROTO;
	out->data = c->p;
	out->len = n;
	c->p += n;
	c->len -= n;
	return 0;
}

int kw_header_parse(struct kw_header *out, const uint8_t *p, size_t len)
{
	if (len < KW_HEADER_LEN)
		return -EAGAIN;
	struct cursor c = {p, KW_HEADER_LEN};
	/* Cannot fail: exactly KW_HEADER_LEN bytes are consumed. */
	cur_u8(&c, &out->major);
	cur_u8(&c, &out->minor);
	cur_u16(&c, &out->length);
	cur_u32(&c, &out->id);
	return 0;
}

static bool ip_len_ok(size_t n)
{
	return n == 4 || n == 16;
}

/*
 * parse_item stores one known item into m. Returns 1 if the tag is known and
 * counts for the repeat check, 0 if it is skipped (unknown tags, padding),
 * or -KW_EPROTO.
 */
static int parse_item(struct kw_msg *m, uint8_t tag, struct kw_bytes v)
{
	switch (tag) {
	case KW_TAG_OPCODE:
		if (v.len != 1)
			return -KW_EPROTO;
		m->has_opcode = true;
		m->opcode = v.data[0];
		return 1;
	case KW_TAG_PAYLOAD:
		m->payload = v;
		return 1;
	case KW_TAG_EXTRA:
		m->extra = v;
		return 1;
	case KW_TAG_SUBJECT_KEY_IDENTIFIER:
		/* gokeyless ignores a wrong-length SKI but still counts the tag. */
		if (v.len == KW_SKI_LEN) {
			memcpy(m->ski, v.data, KW_SKI_LEN);
			m->has_ski = true;
		}
		return 1;
	case KW_TAG_CERTIFICATE_DIGEST:
		if (v.len == KW_DIGEST_LEN) {
			memcpy(m->digest, v.data, KW_DIGEST_LEN);
			m->has_digest = true;
		}
		return 1;
	case KW_TAG_CLIENT_IP:
		if (!ip_len_ok(v.len))
			return -KW_EPROTO;
		m->client_ip = v;
		return 1;
	case KW_TAG_SERVER_IP:
		if (!ip_len_ok(v.len))
			return -KW_EPROTO;
		m->server_ip = v;
		return 1;
	case KW_TAG_SERVER_NAME:
		m->server_name = v;
		return 1;
	case KW_TAG_CERT_ID:
		m->cert_id = v;
		return 1;
	case KW_TAG_CUSTOM_FUNC_NAME:
		m->custom_func_name = v;
		return 1;
	case KW_TAG_JAEGER_SPAN:
		m->jaeger_span = v;
		return 1;
	case KW_TAG_REQ_CONTEXT:
		m->req_context = v;
		return 1;
	case KW_TAG_COMPLIANCE_REGION:
		if (v.len != 1)
			return -KW_EPROTO;
		m->has_compliance_region = true;
		m->compliance_region = v.data[0];
		return 1;
	case KW_TAG_PADDING:
		/* Padding carries nothing, so Keyway lets it repeat (docs/protocol.md). */
		return 0;
	default:
		/* Unknown tags are skipped so new tags can be rolled out gradually. */
		return 0;
	}
}

/* parse_next consumes one item from c into m, tracking known tags in *seen. */
static int parse_next(struct kw_msg *m, uint64_t *seen, struct cursor *c)
{
	uint8_t tag;
	uint16_t n;
	struct kw_bytes v;
	int rc;

	if ((rc = cur_u8(c, &tag)) < 0 || (rc = cur_u16(c, &n)) < 0 ||
	    (rc = cur_bytes(c, &v, n)) < 0)
		return rc;
	rc = parse_item(m, tag, v);
	if (rc <= 0)
		return rc;
	/* Every known tag is below 64. */
	uint64_t bit = (uint64_t)1 << tag;
	if (*seen & bit)
		return -KW_EPROTO;
	*seen |= bit;
	return 0;
}

int kw_msg_parse(struct kw_msg *out, const uint8_t *body, size_t len)
{
	struct cursor c = {body, len};
	uint64_t seen = 0;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	/* As gokeyless: an item header needs 3 bytes, 1-2 trailing bytes are ignored. */
	while (rc == 0 && c.len >= KW_ITEM_HEADER_LEN)
		rc = parse_next(out, &seen, &c);
	if (rc < 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* An item's encoded size, saturating so oversized values can't wrap size_t. */
static size_t item_size(size_t vlen)
{
	if (vlen > KW_MAX_BODY)
		return (size_t)KW_MAX_BODY + 1;
	return KW_ITEM_HEADER_LEN + vlen;
}

static size_t bytes_size(const struct kw_bytes *b)
{
	return b->data != NULL ? item_size(b->len) : 0;
}

/* The body size before padding; > KW_MAX_BODY when the frame can't be encoded. */
static size_t unpadded_body_len(const struct kw_msg *m)
{
	size_t n = 0;

	n += m->has_opcode ? item_size(1) : 0;
	n += bytes_size(&m->payload);
	n += bytes_size(&m->extra);
	n += m->has_ski ? item_size(KW_SKI_LEN) : 0;
	n += m->has_digest ? item_size(KW_DIGEST_LEN) : 0;
	n += bytes_size(&m->client_ip);
	n += bytes_size(&m->server_ip);
	n += bytes_size(&m->server_name);
	n += bytes_size(&m->cert_id);
	n += bytes_size(&m->custom_func_name);
	n += bytes_size(&m->jaeger_span);
	n += bytes_size(&m->req_context);
	n += m->has_compliance_region ? item_size(1) : 0;
	return n;
}

/*
 * padding_len is the value length of the padding item gokeyless would add to
 * a body of n bytes, or -1 for none. Bodies of 1014 and 1015 bytes get an
 * empty padding item and end up 1 or 2 bytes over KW_PADDED_LEN, as in Go.
 */
static long padding_len(size_t n)
{
	if (n + KW_HEADER_LEN >= KW_PADDED_LEN)
		return -1;
	if (n + KW_HEADER_LEN + KW_ITEM_HEADER_LEN >= KW_PADDED_LEN)
		return 0;
	return (long)(KW_PADDED_LEN - (n + KW_HEADER_LEN + KW_ITEM_HEADER_LEN));
}

static size_t body_len(const struct kw_msg *m, bool pad, long *pad_out)
{
	size_t n = unpadded_body_len(m);
	long p = -1;

	if (pad && n <= KW_MAX_BODY)
		p = padding_len(n);
	if (pad_out != NULL)
		*pad_out = p;
	return p >= 0 ? n + KW_ITEM_HEADER_LEN + (size_t)p : n;
}

size_t kw_msg_encoded_len(const struct kw_msg *m, bool pad)
{
	return KW_HEADER_LEN + body_len(m, pad, NULL);
}

/* A writer over space already reserved: it cannot run out. */
struct writer {
	uint8_t *p;
};

static void put_u8(struct writer *w, uint8_t v)
{
	*w->p++ = v;
}

static void put_u16(struct writer *w, uint16_t v)
{
	put_u8(w, (uint8_t)(v >> 8));
	put_u8(w, (uint8_t)v);
}

static void put_u32(struct writer *w, uint32_t v)
{
	put_u16(w, (uint16_t)(v >> 16));
	put_u16(w, (uint16_t)v);
}

static void put_item(struct writer *w, uint8_t tag, const uint8_t *v, size_t n)
{
	put_u8(w, tag);
	put_u16(w, (uint16_t)n);
	if (n > 0)
		memcpy(w->p, v, n);
	w->p += n;
}

static void put_bytes_item(struct writer *w, uint8_t tag, const struct kw_bytes *b)
{
	if (b->data != NULL)
		put_item(w, tag, b->data, b->len);
}

int kw_msg_encode(struct kw_buf *out, uint32_t id, const struct kw_msg *m, bool pad)
{
	long padlen;
	size_t blen = body_len(m, pad, &padlen);
	int rc;

	if (blen > KW_MAX_BODY)
		return -EMSGSIZE;
	/* Reserve before taking pointers: m's byte strings must not live in out. */
	rc = kw_buf_reserve(out, KW_HEADER_LEN + blen);
	if (rc < 0)
		return rc;

	struct writer w = {kw_buf_tail(out)};
	put_u8(&w, KW_PROTO_MAJOR);
	put_u8(&w, KW_PROTO_MINOR);
	put_u16(&w, (uint16_t)blen);
	put_u32(&w, id);

	/* gokeyless' item order (Operation.MarshalBinary). */
	if (m->has_opcode)
		put_item(&w, KW_TAG_OPCODE, &m->opcode, 1);
	put_bytes_item(&w, KW_TAG_PAYLOAD, &m->payload);
	put_bytes_item(&w, KW_TAG_EXTRA, &m->extra);
	if (m->has_ski)
		put_item(&w, KW_TAG_SUBJECT_KEY_IDENTIFIER, m->ski, KW_SKI_LEN);
	if (m->has_digest)
		put_item(&w, KW_TAG_CERTIFICATE_DIGEST, m->digest, KW_DIGEST_LEN);
	put_bytes_item(&w, KW_TAG_CLIENT_IP, &m->client_ip);
	put_bytes_item(&w, KW_TAG_SERVER_IP, &m->server_ip);
	put_bytes_item(&w, KW_TAG_SERVER_NAME, &m->server_name);
	put_bytes_item(&w, KW_TAG_CERT_ID, &m->cert_id);
	put_bytes_item(&w, KW_TAG_CUSTOM_FUNC_NAME, &m->custom_func_name);
	put_bytes_item(&w, KW_TAG_JAEGER_SPAN, &m->jaeger_span);
	put_bytes_item(&w, KW_TAG_REQ_CONTEXT, &m->req_context);
	if (m->has_compliance_region)
		put_item(&w, KW_TAG_COMPLIANCE_REGION, &m->compliance_region, 1);
	if (padlen >= 0) {
		put_u8(&w, KW_TAG_PADDING);
		put_u16(&w, (uint16_t)padlen);
		memset(w.p, 0, (size_t)padlen);
		w.p += padlen;
	}

	out->len += KW_HEADER_LEN + blen;
	return 0;
}

/* A NULL payload means no payload item; non-NULL with len 0 an empty one. */
int kw_encode_response(struct kw_buf *out, uint32_t id, uint8_t opcode, const uint8_t *payload,
                       size_t len, bool pad)
{
	struct kw_msg m = {0};

	m.has_opcode = true;
	m.opcode = opcode;
	m.payload.data = payload;
	m.payload.len = len;
	return kw_msg_encode(out, id, &m, pad);
}

int kw_encode_error(struct kw_buf *out, uint32_t id, enum kw_proto_error err, bool pad)
{
	uint8_t code = (uint8_t)err;

	return kw_encode_response(out, id, KW_OP_ERROR, &code, 1, pad);
}

const char *kw_opcode_name(uint8_t opcode)
{
	switch (opcode) {
	case KW_OP_RSA_DECRYPT:
		return "OpRSADecrypt";
	case KW_OP_RSA_SIGN_MD5SHA1:
		return "OpRSASignMD5SHA1";
	case KW_OP_RSA_SIGN_SHA1:
		return "OpRSASignSHA1";
	case KW_OP_RSA_SIGN_SHA224:
		return "OpRSASignSHA224";
	case KW_OP_RSA_SIGN_SHA256:
		return "OpRSASignSHA256";
	case KW_OP_RSA_SIGN_SHA384:
		return "OpRSASignSHA384";
	case KW_OP_RSA_SIGN_SHA512:
		return "OpRSASignSHA512";
	case KW_OP_RSA_PSS_SIGN_SHA256:
		return "OpRSAPSSSignSHA256";
	case KW_OP_RSA_PSS_SIGN_SHA384:
		return "OpRSAPSSSignSHA384";
	case KW_OP_RSA_PSS_SIGN_SHA512:
		return "OpRSAPSSSignSHA512";
	case KW_OP_ECDSA_SIGN_MD5SHA1:
		return "OpECDSASignMD5SHA1";
	case KW_OP_ECDSA_SIGN_SHA1:
		return "OpECDSASignSHA1";
	case KW_OP_ECDSA_SIGN_SHA224:
		return "OpECDSASignSHA224";
	case KW_OP_ECDSA_SIGN_SHA256:
		return "OpECDSASignSHA256";
	case KW_OP_ECDSA_SIGN_SHA384:
		return "OpECDSASignSHA384";
	case KW_OP_ECDSA_SIGN_SHA512:
		return "OpECDSASignSHA512";
	case KW_OP_ED25519_SIGN:
		return "OpEd25519Sign";
	case KW_OP_SEAL:
		return "OpSeal";
	case KW_OP_UNSEAL:
		return "OpUnseal";
	case KW_OP_RPC:
		return "OpRPC";
	case KW_OP_CUSTOM:
		return "OpCustom";
	case KW_OP_RESPONSE:
		return "OpResponse";
	case KW_OP_PING:
		return "OpPing";
	case KW_OP_PONG:
		return "OpPong";
	case KW_OP_ERROR:
		return "OpError";
	default:
		/* Includes 0x08 (C keyless only) and 0xF3 (removed): no Go constant. */
		return NULL;
	}
}

const char *kw_proto_error_string(uint8_t err)
{
	switch (err) {
	case KW_ERR_NONE:
		return "no error";
	case KW_ERR_CRYPTO:
		return "cryptography error";
	case KW_ERR_KEY_NOT_FOUND:
		return "key not found due to no matching SKI/SNI/ServerIP";
	case KW_ERR_READ:
		return "read failure";
	case KW_ERR_VERSION_MISMATCH:
		return "version mismatch";
	case KW_ERR_BAD_OPCODE:
		return "bad opcode";
	case KW_ERR_UNEXPECTED_OPCODE:
		return "unexpected opcode";
	case KW_ERR_FORMAT:
		return "malformed message";
	case KW_ERR_INTERNAL:
		return "internal error";
	case KW_ERR_CERT_NOT_FOUND:
		return "certificate not found";
	case KW_ERR_EXPIRED:
		return "sealing key expired";
	case KW_ERR_REMOTE_CONFIGURATION:
		return "remote configuration error";
	default:
		return "unknown error";
	}
}

enum kw_op_family kw_opcode_family(uint8_t opcode)
{
	switch (opcode) {
	case KW_OP_RSA_DECRYPT:
	case KW_OP_RSA_SIGN_MD5SHA1:
	case KW_OP_RSA_SIGN_SHA1:
	case KW_OP_RSA_SIGN_SHA224:
	case KW_OP_RSA_SIGN_SHA256:
	case KW_OP_RSA_SIGN_SHA384:
	case KW_OP_RSA_SIGN_SHA512:
	case KW_OP_RSA_PSS_SIGN_SHA256:
	case KW_OP_RSA_PSS_SIGN_SHA384:
	case KW_OP_RSA_PSS_SIGN_SHA512:
		return KW_FAMILY_RSA;
	case KW_OP_ECDSA_SIGN_MD5SHA1:
	case KW_OP_ECDSA_SIGN_SHA1:
	case KW_OP_ECDSA_SIGN_SHA224:
	case KW_OP_ECDSA_SIGN_SHA256:
	case KW_OP_ECDSA_SIGN_SHA384:
	case KW_OP_ECDSA_SIGN_SHA512:
		return KW_FAMILY_ECDSA;
	case KW_OP_ED25519_SIGN:
		return KW_FAMILY_ED25519;
	case KW_OP_RPC:
		return KW_FAMILY_RPC;
	case KW_OP_CUSTOM:
		return KW_FAMILY_CUSTOM;
	case KW_OP_SEAL:
	case KW_OP_UNSEAL:
	case KW_OP_RESPONSE:
	case KW_OP_PING:
	case KW_OP_PONG:
	case KW_OP_ERROR:
		return KW_FAMILY_OTHER;
	default:
		return KW_FAMILY_UNKNOWN;
	}
}

const char *kw_family_name(enum kw_op_family f)
{
	switch (f) {
	case KW_FAMILY_RSA:
		return "rsa";
	case KW_FAMILY_ECDSA:
		return "ecdsa";
	case KW_FAMILY_ED25519:
		return "ed25519";
	case KW_FAMILY_RPC:
		return "rpc";
	case KW_FAMILY_CUSTOM:
		return "custom";
	case KW_FAMILY_OTHER:
		return "other";
	case KW_FAMILY_UNKNOWN:
		break;
	}
	return "unknown";
}

const char *kw_tag_name(uint8_t tag)
{
	switch (tag) {
	case KW_TAG_CERTIFICATE_DIGEST:
		return "CertificateDigest";
	case KW_TAG_SERVER_NAME:
		return "ServerName";
	case KW_TAG_CLIENT_IP:
		return "ClientIP";
	case KW_TAG_SUBJECT_KEY_IDENTIFIER:
		return "SubjectKeyIdentifier";
	case KW_TAG_SERVER_IP:
		return "ServerIP";
	case KW_TAG_CERT_ID:
		return "CertID";
	case KW_TAG_OPCODE:
		return "Opcode";
	case KW_TAG_PAYLOAD:
		return "Payload";
	case KW_TAG_CUSTOM_FUNC_NAME:
		return "CustomFuncName";
	case KW_TAG_EXTRA:
		return "Extra";
	case KW_TAG_JAEGER_SPAN:
		return "JaegerSpan";
	case KW_TAG_REQ_CONTEXT:
		return "ReqContext";
	case KW_TAG_COMPLIANCE_REGION:
		return "ComplianceRegion";
	case KW_TAG_PADDING:
		return "Padding";
	default:
		return NULL;
	}
}
