/* test_protocol.c - the keyless wire codec against gokeyless' rules (docs/protocol.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "keyway/buf.h"
#include "keyway/err.h"
#include "keyway/protocol.h"
#include "msg_eq.h"

static struct kw_bytes str(const char *s)
{
	struct kw_bytes b = {(const uint8_t *)s, strlen(s)};
	return b;
}

/* Encodes m, checks the header, parses the body back into *back. */
static int encode_parse(struct kw_buf *buf, uint32_t id, const struct kw_msg *m, bool pad,
                        struct kw_msg *back)
{
	struct kw_header h;
	int rc;

	kw_buf_reset(buf);
	rc = kw_msg_encode(buf, id, m, pad);
	if (rc < 0)
		return rc;
	CHECK_EQ(buf->len, kw_msg_encoded_len(m, pad));
	CHECK_EQ(kw_header_parse(&h, buf->data, buf->len), 0);
	CHECK_EQ(h.major, 1);
	CHECK_EQ(h.minor, 0);
	CHECK_EQ(h.id, id);
	CHECK_EQ(h.length + KW_HEADER_LEN, buf->len);
	return kw_msg_parse(back, buf->data + KW_HEADER_LEN, h.length);
}

/* Parses a hand-written body. */
static int parse(struct kw_msg *m, const uint8_t *body, size_t len)
{
	return kw_msg_parse(m, body, len);
}

static void test_ping_example(void)
{
	static const uint8_t head[] = {0x01, 0x00, 0x03, 0xf8, 0x00, 0x00, 0x00, 0x01, 0x11, 0x00,
	                               0x01, 0xf1, 0x12, 0x00, 0x02, 0x68, 0x69, 0x20, 0x03, 0xec};
	struct kw_buf buf = KW_BUF_INIT;
	struct kw_msg m = {0};

	m.has_opcode = true;
	m.opcode = KW_OP_PING;
	m.payload = str("hi");
	CHECK_EQ(kw_msg_encode(&buf, 1, &m, true), 0);
	CHECK_EQ(buf.len, 1024);
	CHECK(memcmp(buf.data, head, sizeof(head)) == 0);
	bool zeros = true;
	for (size_t i = sizeof(head); i < buf.len; i++)
		zeros &= buf.data[i] == 0;
	CHECK(zeros);

	/* A second frame is appended after the first. */
	CHECK_EQ(kw_msg_encode(&buf, 2, &m, false), 0);
	CHECK_EQ(buf.len, 1024 + 8 + 4 + 5);
	CHECK_EQ(buf.data[1024 + 7], 2);
	CHECK_EQ(buf.data[1024 + 3], 9);
	kw_buf_cleanup(&buf);
}

static const uint8_t item_order[] = {
    KW_TAG_OPCODE,
    KW_TAG_PAYLOAD,
    KW_TAG_EXTRA,
    KW_TAG_SUBJECT_KEY_IDENTIFIER,
    KW_TAG_CERTIFICATE_DIGEST,
    KW_TAG_CLIENT_IP,
    KW_TAG_SERVER_IP,
    KW_TAG_SERVER_NAME,
    KW_TAG_CERT_ID,
    KW_TAG_CUSTOM_FUNC_NAME,
    KW_TAG_JAEGER_SPAN,
    KW_TAG_REQ_CONTEXT,
    KW_TAG_COMPLIANCE_REGION,
    KW_TAG_PADDING,
};

static void test_all_tags_round_trip(void)
{
	static const uint8_t v4[4] = {192, 0, 2, 1};
	static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	struct kw_buf buf = KW_BUF_INIT;
	struct kw_msg m = {0}, back;

	m.has_opcode = true;
	m.opcode = KW_OP_ECDSA_SIGN_SHA256;
	m.payload = str("0123456789abcdef0123456789abcdef");
	m.has_ski = true;
	for (int i = 0; i < KW_SKI_LEN; i++)
		m.ski[i] = (uint8_t)(i + 1);
	m.has_digest = true;
	for (int i = 0; i < KW_DIGEST_LEN; i++)
		m.digest[i] = (uint8_t)(0xa0 + i);
	m.server_name = str("example.com");
	m.client_ip.data = v4;
	m.client_ip.len = sizeof(v4);
	m.server_ip.data = v6;
	m.server_ip.len = sizeof(v6);
	m.cert_id = str("cert-1");
	m.custom_func_name = str("fn");
	m.extra = str("extra");
	m.jaeger_span = str("span");
	m.req_context = str("{\"request_id\":\"x\"}");
	m.has_compliance_region = true;
	m.compliance_region = 1;

	for (int pad = 0; pad < 2; pad++) {
		CHECK_EQ(encode_parse(&buf, 0xdeadbeef, &m, pad, &back), 0);
		CHECK(msg_eq(&m, &back));
		CHECK_EQ(buf.len == 1024, pad);

		/* Items come in gokeyless' order. */
		size_t off = KW_HEADER_LEN, k = 0;
		while (off + 3 <= buf.len && k < sizeof(item_order)) {
			CHECK_EQ(buf.data[off], item_order[k]);
			off += 3 + ((size_t)buf.data[off + 1] << 8 | buf.data[off + 2]);
			k++;
		}
		CHECK_EQ(off, buf.len);
		CHECK_EQ(k, sizeof(item_order) - (pad ? 0 : 1));
	}

	/* Each tag alone. */
	struct kw_msg one;
	memset(&one, 0, sizeof(one));
	one.server_name = m.server_name;
	CHECK_EQ(encode_parse(&buf, 1, &one, true, &back), 0);
	CHECK(msg_eq(&one, &back));
#define ONE(field)                                                                                 \
	do {                                                                                       \
		memset(&one, 0, sizeof(one));                                                      \
		one.field = m.field;                                                               \
		CHECK_EQ(encode_parse(&buf, 1, &one, false, &back), 0);                            \
		CHECK(msg_eq(&one, &back));                                                        \
	} while (0)
	ONE(payload);
	ONE(client_ip);
	ONE(server_ip);
	ONE(cert_id);
	ONE(custom_func_name);
	ONE(extra);
	ONE(jaeger_span);
	ONE(req_context);
#undef ONE
	memset(&one, 0, sizeof(one));
	one.has_ski = true;
	memcpy(one.ski, m.ski, KW_SKI_LEN);
	CHECK_EQ(encode_parse(&buf, 1, &one, false, &back), 0);
	CHECK(msg_eq(&one, &back));
	memset(&one, 0, sizeof(one));
	one.has_digest = true;
	memcpy(one.digest, m.digest, KW_DIGEST_LEN);
	CHECK_EQ(encode_parse(&buf, 1, &one, false, &back), 0);
	CHECK(msg_eq(&one, &back));
	memset(&one, 0, sizeof(one));
	one.has_compliance_region = true;
	one.compliance_region = 0; /* present even when zero, unlike Go */
	CHECK_EQ(encode_parse(&buf, 1, &one, false, &back), 0);
	CHECK(msg_eq(&one, &back));
	CHECK(back.has_compliance_region);

	/* Nothing at all: an empty body, or just padding. */
	memset(&one, 0, sizeof(one));
	CHECK_EQ(encode_parse(&buf, 1, &one, false, &back), 0);
	CHECK_EQ(buf.len, KW_HEADER_LEN);
	CHECK(msg_eq(&one, &back));
	CHECK_EQ(encode_parse(&buf, 1, &one, true, &back), 0);
	CHECK_EQ(buf.len, 1024);
	CHECK(msg_eq(&one, &back));
	kw_buf_cleanup(&buf);
}

static void test_all_opcodes_round_trip(void)
{
	struct kw_buf buf = KW_BUF_INIT;
	struct kw_msg m = {0}, back;
	int bad = 0;

	m.has_opcode = true;
	m.payload = str("x");
	for (int op = 0; op < 256; op++) {
		m.opcode = (uint8_t)op;
		if (encode_parse(&buf, (uint32_t)op, &m, true, &back) != 0 || !msg_eq(&m, &back))
			bad++;
		if (buf.len != 1024 || buf.data[KW_HEADER_LEN + 3] != op)
			bad++;
	}
	CHECK_EQ(bad, 0);
	kw_buf_cleanup(&buf);
}

/* A body of exactly n unpadded bytes: opcode item (4) + payload item (3 + n - 7). */
static void padding_case(size_t body, size_t want_frame, bool want_pad_item)
{
	struct kw_buf buf = KW_BUF_INIT;
	struct kw_msg m = {0}, back;
	uint8_t *p = calloc(1, body);

	m.has_opcode = true;
	m.opcode = KW_OP_RSA_SIGN_SHA256;
	m.payload.data = p;
	m.payload.len = body - 7;
	CHECK_EQ(kw_msg_encoded_len(&m, false), KW_HEADER_LEN + body);
	CHECK_EQ(kw_msg_encoded_len(&m, true), want_frame);
	CHECK_EQ(encode_parse(&buf, 9, &m, true, &back), 0);
	CHECK_EQ(buf.len, want_frame);
	CHECK(msg_eq(&m, &back));
	size_t pad_at = KW_HEADER_LEN + body;
	if (want_pad_item) {
		CHECK(buf.len >= pad_at + 3);
		if (buf.len >= pad_at + 3) {
			CHECK_EQ(buf.data[pad_at], KW_TAG_PADDING);
			size_t plen = (size_t)buf.data[pad_at + 1] << 8 | buf.data[pad_at + 2];
			CHECK_EQ(pad_at + 3 + plen, buf.len);
		}
	} else {
		CHECK_EQ(buf.len, pad_at);
	}
	kw_buf_cleanup(&buf);
	free(p);
}

static void test_padding_boundaries(void)
{
	padding_case(100, 1024, true);
	padding_case(1012, 1024, true);
	padding_case(1013, 1024, true); /* empty padding item lands exactly on 1024 */
	padding_case(1014, 1025, true); /* empty padding item overshoots, as Go */
	padding_case(1015, 1026, true);
	padding_case(1016, 1024, false);
	padding_case(1017, 1025, false);
	padding_case(5000, 5008, false);
}

static void test_empty_payload(void)
{
	struct kw_buf buf = KW_BUF_INIT;
	struct kw_msg m = {0}, back;

	m.has_opcode = true;
	m.opcode = KW_OP_PING;
	m.payload.data = (const uint8_t *)"";
	m.payload.len = 0;
	CHECK_EQ(encode_parse(&buf, 3, &m, false, &back), 0);
	static const uint8_t want[] = {1, 0, 0, 7, 0, 0, 0, 3, 0x11, 0, 1, 0xf1, 0x12, 0, 0};
	CHECK_EQ(buf.len, sizeof(want));
	CHECK(memcmp(buf.data, want, sizeof(want)) == 0);
	CHECK(back.payload.data != NULL);
	CHECK_EQ(back.payload.len, 0);

	m.payload.data = NULL;
	CHECK_EQ(encode_parse(&buf, 3, &m, false, &back), 0);
	CHECK_EQ(buf.len, KW_HEADER_LEN + 4);
	CHECK(back.payload.data == NULL);
	kw_buf_cleanup(&buf);
}

#define BAD(...)                                                                                   \
	do {                                                                                       \
		static const uint8_t b_[] = {__VA_ARGS__};                                         \
		struct kw_msg m_;                                                                  \
		memset(&m_, 0xa5, sizeof(m_));                                                     \
		CHECK_EQ(parse(&m_, b_, sizeof(b_)), -KW_EPROTO);                                  \
		CHECK(!m_.has_opcode && m_.payload.data == NULL); /* zeroed on error */            \
	} while (0)

#define SKI20                                                                                      \
	0x04, 0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20

static void test_malformed(void)
{
	BAD(0x11, 0x00, 0x05, 0xf1);                             /* item past the body */
	BAD(0x11, 0x00, 0x01, 0xf1, 0x12, 0x00, 0x03, 'a', 'b'); /* last item past the body */
	BAD(0x11, 0x00, 0x01);                                   /* header only, value missing */
	BAD(0x77, 0xff, 0xff, 0x00);                             /* unknown tag past the body */
	BAD(0x20, 0x00, 0x04, 0x00);                             /* padding past the body */
	BAD(0x11, 0x00, 0x00);                                   /* opcode length 0 */
	BAD(0x11, 0x00, 0x02, 0xf1, 0xf1);                       /* opcode length 2 */
	BAD(0x03, 0x00, 0x05, 1, 2, 3, 4, 5);                    /* client IP length 5 */
	BAD(0x03, 0x00, 0x00);                                   /* client IP length 0 */
	BAD(0x05, 0x00, 0x05, 1, 2, 3, 4, 5);                    /* server IP length 5 */
	BAD(0x05, 0x00, 0x0f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	BAD(0x17, 0x00, 0x02, 0x01, 0x01);                   /* compliance region length 2 */
	BAD(0x17, 0x00, 0x00);                               /* compliance region length 0 */
	BAD(SKI20, SKI20);                                   /* repeated SKI */
	BAD(0x04, 0x00, 0x01, 0x00, 0x04, 0x00, 0x01, 0x00); /* repeated, though both ignored */
	BAD(0x11, 0x00, 0x01, 0xf1, 0x11, 0x00, 0x01, 0xf1); /* repeated opcode */
	BAD(0x12, 0x00, 0x01, 'a', 0x11, 0x00, 0x01, 0xf1, 0x12, 0x00, 0x00); /* repeated payload */
	BAD(0x01, 0x00, 0x00, 0x01, 0x00, 0x00);                              /* repeated digest */
	BAD(0x02, 0x00, 0x00, 0x02, 0x00, 0x00);                              /* repeated SNI */
	BAD(0x06, 0x00, 0x00, 0x06, 0x00, 0x00);                              /* repeated cert ID */
	BAD(0x13, 0x00, 0x00, 0x13, 0x00, 0x00);
	BAD(0x14, 0x00, 0x00, 0x14, 0x00, 0x00);
	BAD(0x15, 0x00, 0x00, 0x15, 0x00, 0x00);
	BAD(0x16, 0x00, 0x00, 0x16, 0x00, 0x00);
	BAD(0x17, 0x00, 0x01, 0x01, 0x17, 0x00, 0x01, 0x01);
	BAD(0x03, 0x00, 0x04, 1, 2, 3, 4, 0x03, 0x00, 0x04, 1, 2, 3, 4);
	BAD(0x05, 0x00, 0x04, 1, 2, 3, 4, 0x05, 0x00, 0x04, 1, 2, 3, 4);
}

static void test_accepted(void)
{
	struct kw_msg m;

	{ /* unknown tags are skipped, even repeated */
		static const uint8_t b[] = {0x77, 0x00, 0x02, 'z',  'z',  0x11, 0x00, 0x01,
		                            0xf1, 0x77, 0x00, 0x00, 0x00, 0x00, 0x00};
		CHECK_EQ(parse(&m, b, sizeof(b)), 0);
		CHECK(m.has_opcode && m.opcode == KW_OP_PING);
		CHECK(m.payload.data == NULL);
	}
	{ /* no padding */
		static const uint8_t b[] = {0x11, 0x00, 0x01, 0x05, SKI20};
		CHECK_EQ(parse(&m, b, sizeof(b)), 0);
		CHECK(m.has_opcode && m.opcode == KW_OP_RSA_SIGN_SHA256);
		CHECK(m.has_ski && m.ski[0] == 1 && m.ski[19] == 20);
	}
	{ /* repeated padding, before and after other items */
		static const uint8_t b[] = {0x20, 0x00, 0x01, 0x00, 0x11, 0x00, 0x01, 0xf1,
		                            0x20, 0x00, 0x00, 0x20, 0x00, 0x02, 0xaa, 0xbb};
		CHECK_EQ(parse(&m, b, sizeof(b)), 0);
		CHECK(m.has_opcode && m.opcode == KW_OP_PING);
	}
	{ /* 1 and 2 trailing bytes, even ones that look like a truncated item */
		static const uint8_t b[] = {0x11, 0x00, 0x01, 0xf1, 0x12, 0xff};
		CHECK_EQ(parse(&m, b, sizeof(b) - 1), 0);
		CHECK(m.has_opcode && m.payload.data == NULL);
		CHECK_EQ(parse(&m, b, sizeof(b)), 0);
		CHECK(m.has_opcode && m.payload.data == NULL);
		CHECK_EQ(parse(&m, b + 4, 2), 0);
		CHECK(!m.has_opcode);
	}
	{ /* wrong-length SKI and digest are ignored */
		static const uint8_t b[] = {0x04, 0x00, 0x03, 1,    2,    3,    0x01, 0x00,
		                            0x02, 1,    2,    0x11, 0x00, 0x01, 0x01};
		CHECK_EQ(parse(&m, b, sizeof(b)), 0);
		CHECK(!m.has_ski && !m.has_digest);
		CHECK(m.has_opcode && m.opcode == KW_OP_RSA_DECRYPT);
	}
	{ /* an empty body and one with no opcode */
		CHECK_EQ(parse(&m, NULL, 0), 0);
		CHECK(!m.has_opcode);
		static const uint8_t b[] = {0x12, 0x00, 0x01, 'p'};
		CHECK_EQ(parse(&m, b, sizeof(b)), 0);
		CHECK(!m.has_opcode && m.payload.len == 1 && m.payload.data == b + 3);
	}
	{ /* a big padding item, as a 64 KiB body */
		size_t n = KW_MAX_BODY;
		uint8_t *b = calloc(1, n);
		b[0] = 0x11, b[1] = 0x00, b[2] = 0x01, b[3] = 0xf1;
		b[4] = 0x20;
		b[5] = (uint8_t)((n - 7) >> 8);
		b[6] = (uint8_t)(n - 7);
		CHECK_EQ(parse(&m, b, n), 0);
		CHECK(m.has_opcode && m.opcode == KW_OP_PING);
		free(b);
	}
	{ /* IPv4 and IPv6 lengths */
		static const uint8_t b[] = {0x03, 0x00, 0x04, 10, 0, 0, 1, 0x05, 0x00,
		                            0x10, 0,    0,    0,  0, 0, 0, 0,    0,
		                            0,    0,    0,    0,  0, 0, 0, 1};
		CHECK_EQ(parse(&m, b, sizeof(b)), 0);
		CHECK_EQ(m.client_ip.len, 4);
		CHECK_EQ(m.server_ip.len, 16);
		CHECK_EQ(m.server_ip.data[15], 1);
	}
}

static void test_header(void)
{
	static const uint8_t h8[] = {0x02, 0x07, 0x03, 0xf8, 0xde, 0xad, 0xbe, 0xef, 0x99};
	struct kw_header h;

	for (size_t n = 0; n < KW_HEADER_LEN; n++)
		CHECK_EQ(kw_header_parse(&h, h8, n), -EAGAIN);
	CHECK_EQ(kw_header_parse(&h, h8, sizeof(h8)), 0);
	CHECK_EQ(h.major, 2); /* not checked here: the caller answers a version mismatch */
	CHECK_EQ(h.minor, 7);
	CHECK_EQ(h.length, 0x03f8);
	CHECK_EQ(h.id, 0xdeadbeefu);
}

static void test_too_big(void)
{
	struct kw_buf buf = KW_BUF_INIT;
	struct kw_msg m = {0}, back;
	uint8_t *p = calloc(1, 70000);

	m.has_opcode = true;
	m.opcode = KW_OP_RSA_DECRYPT;
	m.payload.data = p;
	m.payload.len = KW_MAX_BODY - 7; /* largest body: exactly 65535 */
	CHECK_EQ(encode_parse(&buf, 1, &m, true, &back), 0);
	CHECK_EQ(buf.len, KW_HEADER_LEN + KW_MAX_BODY);
	CHECK(msg_eq(&m, &back));

	kw_buf_reset(&buf);
	m.payload.len = KW_MAX_BODY - 6;
	CHECK_EQ(kw_msg_encode(&buf, 1, &m, true), -EMSGSIZE);
	CHECK_EQ(buf.len, 0);
	m.payload.len = 70000;
	CHECK_EQ(kw_msg_encode(&buf, 1, &m, false), -EMSGSIZE);
	CHECK_EQ(buf.len, 0);
	m.payload.len = 60000;
	m.extra.data = p;
	m.extra.len = 6000;
	CHECK_EQ(kw_msg_encode(&buf, 1, &m, false), -EMSGSIZE);
	CHECK_EQ(buf.len, 0);
	CHECK(kw_msg_encoded_len(&m, false) > KW_HEADER_LEN + KW_MAX_BODY);
	kw_buf_cleanup(&buf);
	free(p);
}

static void test_helpers(void)
{
	struct kw_buf buf = KW_BUF_INIT;
	struct kw_header h;
	struct kw_msg m;

	CHECK_EQ(kw_encode_error(&buf, 42, KW_ERR_KEY_NOT_FOUND, true), 0);
	CHECK_EQ(buf.len, 1024);
	CHECK_EQ(kw_header_parse(&h, buf.data, buf.len), 0);
	CHECK_EQ(h.id, 42);
	CHECK_EQ(kw_msg_parse(&m, buf.data + 8, h.length), 0);
	CHECK(m.has_opcode && m.opcode == KW_OP_ERROR);
	CHECK(m.payload.len == 1 && m.payload.data[0] == KW_ERR_KEY_NOT_FOUND);

	kw_buf_reset(&buf);
	static const uint8_t sig[3] = {0x30, 0x01, 0x00};
	CHECK_EQ(kw_encode_response(&buf, 7, KW_OP_RESPONSE, sig, sizeof(sig), false), 0);
	static const uint8_t want[] = {1, 0, 0,    10,   0, 0, 0,    7,    0x11,
	                               0, 1, 0xf0, 0x12, 0, 3, 0x30, 0x01, 0x00};
	CHECK_EQ(buf.len, sizeof(want));
	CHECK(memcmp(buf.data, want, sizeof(want)) == 0);

	/* A pong echoing an empty payload carries an empty item; NULL means none. */
	kw_buf_reset(&buf);
	CHECK_EQ(kw_encode_response(&buf, 7, KW_OP_PONG, (const uint8_t *)"", 0, false), 0);
	CHECK_EQ(buf.len, 8 + 4 + 3);
	kw_buf_reset(&buf);
	CHECK_EQ(kw_encode_response(&buf, 7, KW_OP_PONG, NULL, 0, false), 0);
	CHECK_EQ(buf.len, 8 + 4);
	kw_buf_cleanup(&buf);
}

static bool streq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void test_names(void)
{
	static const struct {
		uint8_t op;
		const char *name;
		enum kw_op_family family;
	} ops[] = {
	    {0x01, "OpRSADecrypt", KW_FAMILY_RSA},
	    {0x02, "OpRSASignMD5SHA1", KW_FAMILY_RSA},
	    {0x03, "OpRSASignSHA1", KW_FAMILY_RSA},
	    {0x04, "OpRSASignSHA224", KW_FAMILY_RSA},
	    {0x05, "OpRSASignSHA256", KW_FAMILY_RSA},
	    {0x06, "OpRSASignSHA384", KW_FAMILY_RSA},
	    {0x07, "OpRSASignSHA512", KW_FAMILY_RSA},
	    {0x12, "OpECDSASignMD5SHA1", KW_FAMILY_ECDSA},
	    {0x13, "OpECDSASignSHA1", KW_FAMILY_ECDSA},
	    {0x14, "OpECDSASignSHA224", KW_FAMILY_ECDSA},
	    {0x15, "OpECDSASignSHA256", KW_FAMILY_ECDSA},
	    {0x16, "OpECDSASignSHA384", KW_FAMILY_ECDSA},
	    {0x17, "OpECDSASignSHA512", KW_FAMILY_ECDSA},
	    {0x18, "OpEd25519Sign", KW_FAMILY_ED25519},
	    {0x21, "OpSeal", KW_FAMILY_OTHER},
	    {0x22, "OpUnseal", KW_FAMILY_OTHER},
	    {0x23, "OpRPC", KW_FAMILY_RPC},
	    {0x24, "OpCustom", KW_FAMILY_CUSTOM},
	    {0x35, "OpRSAPSSSignSHA256", KW_FAMILY_RSA},
	    {0x36, "OpRSAPSSSignSHA384", KW_FAMILY_RSA},
	    {0x37, "OpRSAPSSSignSHA512", KW_FAMILY_RSA},
	    {0xF0, "OpResponse", KW_FAMILY_OTHER},
	    {0xF1, "OpPing", KW_FAMILY_OTHER},
	    {0xF2, "OpPong", KW_FAMILY_OTHER},
	    {0xFF, "OpError", KW_FAMILY_OTHER},
	};
	size_t nops = sizeof(ops) / sizeof(ops[0]);

	for (int op = 0; op < 256; op++) {
		const char *name = NULL;
		enum kw_op_family fam = KW_FAMILY_UNKNOWN;
		for (size_t i = 0; i < nops; i++)
			if (ops[i].op == op)
				name = ops[i].name, fam = ops[i].family;
		const char *got = kw_opcode_name((uint8_t)op);
		if (name != NULL ? !streq(got, name) : got != NULL) {
			fprintf(stderr, "opcode 0x%02x: name %s\n", op, got ? got : "(null)");
			check_failures++;
		}
		CHECK_EQ(kw_opcode_family((uint8_t)op), fam);
	}
	CHECK(kw_opcode_name(KW_OP_RSA_DECRYPT_RAW) == NULL);
	CHECK(kw_opcode_name(KW_OP_ACTIVATE) == NULL);

	static const char *const errs[] = {
	    "no error",
	    "cryptography error",
	    "key not found due to no matching SKI/SNI/ServerIP",
	    "read failure",
	    "version mismatch",
	    "bad opcode",
	    "unexpected opcode",
	    "malformed message",
	    "internal error",
	    "certificate not found",
	    "sealing key expired",
	    "remote configuration error",
	};
	for (int e = 0; e < 256; e++) {
		const char *want = e < 12 ? errs[e] : "unknown error";
		CHECK(streq(kw_proto_error_string((uint8_t)e), want));
	}
	CHECK(streq(kw_proto_error_string(KW_ERR_REMOTE_CONFIGURATION),
	            "remote configuration error"));

	CHECK(streq(kw_family_name(KW_FAMILY_RSA), "rsa"));
	CHECK(streq(kw_family_name(KW_FAMILY_ECDSA), "ecdsa"));
	CHECK(streq(kw_family_name(KW_FAMILY_ED25519), "ed25519"));
	CHECK(streq(kw_family_name(KW_FAMILY_RPC), "rpc"));
	CHECK(streq(kw_family_name(KW_FAMILY_CUSTOM), "custom"));
	CHECK(streq(kw_family_name(KW_FAMILY_OTHER), "other"));
	CHECK(streq(kw_family_name(KW_FAMILY_UNKNOWN), "unknown"));
	CHECK(streq(kw_family_name((enum kw_op_family)99), "unknown"));

	CHECK(streq(kw_tag_name(0x01), "CertificateDigest"));
	CHECK(streq(kw_tag_name(0x04), "SubjectKeyIdentifier"));
	CHECK(streq(kw_tag_name(0x17), "ComplianceRegion"));
	CHECK(streq(kw_tag_name(0x20), "Padding"));
	int named = 0;
	for (int t = 0; t < 256; t++)
		named += kw_tag_name((uint8_t)t) != NULL;
	CHECK_EQ(named, 14);
}

int main(void)
{
	test_ping_example();
	test_all_tags_round_trip();
	test_all_opcodes_round_trip();
	test_padding_boundaries();
	test_empty_payload();
	test_malformed();
	test_accepted();
	test_header();
	test_too_big();
	test_helpers();
	test_names();
	CHECK_DONE();
}
