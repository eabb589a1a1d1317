/*
 * keyway/protocol.h - Cloudflare's keyless protocol v1, as gokeyless v1.17.6
 * speaks it on the wire. docs/protocol.md is the normative description.
 *
 * Frame: header major(1) minor(1) length(u16 BE) id(u32 BE), then `length`
 * bytes of items tag(u8) length(u16 BE) value. The decoder works on
 * bounds-checked cursors over the receive buffer and never casts wire bytes
 * to a struct; decoded byte strings point into that buffer.
 */
#ifndef KEYWAY_PROTOCOL_H
#define KEYWAY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyway/buf.h"

#define KW_PROTO_MAJOR 0x01
#define KW_PROTO_MINOR 0x00
#define KW_HEADER_LEN 8
#define KW_ITEM_HEADER_LEN 3
#define KW_MAX_BODY 65535
#define KW_PADDED_LEN 1024 /* gokeyless pads every frame to this many bytes */
#define KW_SKI_LEN 20
#define KW_DIGEST_LEN 32
/*
 * KW_RESULT_MAX is the largest result an operation produces (a signature or
 * a decrypted block: RSA-8192 is 1024 bytes), for every result buffer.
 */
#define KW_RESULT_MAX 1024

enum kw_tag {
	KW_TAG_CERTIFICATE_DIGEST = 0x01, /* SHA-256 of upper-case hex RSA modulus */
	KW_TAG_SERVER_NAME = 0x02,
	KW_TAG_CLIENT_IP = 0x03,
	KW_TAG_SUBJECT_KEY_IDENTIFIER = 0x04,
	KW_TAG_SERVER_IP = 0x05,
	KW_TAG_CERT_ID = 0x06,
	KW_TAG_OPCODE = 0x11,
	KW_TAG_PAYLOAD = 0x12,
	KW_TAG_CUSTOM_FUNC_NAME = 0x13,
	KW_TAG_EXTRA = 0x14,
	KW_TAG_JAEGER_SPAN = 0x15,
	KW_TAG_REQ_CONTEXT = 0x16,
	KW_TAG_COMPLIANCE_REGION = 0x17,
	KW_TAG_PADDING = 0x20,
};

enum kw_opcode {
	KW_OP_RSA_DECRYPT = 0x01,
	KW_OP_RSA_SIGN_MD5SHA1 = 0x02,
	KW_OP_RSA_SIGN_SHA1 = 0x03,
	KW_OP_RSA_SIGN_SHA224 = 0x04,
	KW_OP_RSA_SIGN_SHA256 = 0x05,
	KW_OP_RSA_SIGN_SHA384 = 0x06,
	KW_OP_RSA_SIGN_SHA512 = 0x07,
	KW_OP_RSA_DECRYPT_RAW = 0x08, /* C keyless only; gokeyless: bad opcode */
	KW_OP_ECDSA_SIGN_MD5SHA1 = 0x12,
	KW_OP_ECDSA_SIGN_SHA1 = 0x13,
	KW_OP_ECDSA_SIGN_SHA224 = 0x14,
	KW_OP_ECDSA_SIGN_SHA256 = 0x15,
	KW_OP_ECDSA_SIGN_SHA384 = 0x16,
	KW_OP_ECDSA_SIGN_SHA512 = 0x17,
	KW_OP_ED25519_SIGN = 0x18,
	KW_OP_SEAL = 0x21,
	KW_OP_UNSEAL = 0x22,
	KW_OP_RPC = 0x23,
	KW_OP_CUSTOM = 0x24,
	KW_OP_RSA_PSS_SIGN_SHA256 = 0x35,
	KW_OP_RSA_PSS_SIGN_SHA384 = 0x36,
	KW_OP_RSA_PSS_SIGN_SHA512 = 0x37,
	KW_OP_RESPONSE = 0xF0,
	KW_OP_PING = 0xF1,
	KW_OP_PONG = 0xF2,
	KW_OP_ACTIVATE = 0xF3, /* removed from gokeyless in 2016 */
	KW_OP_ERROR = 0xFF,
};

enum kw_proto_error {
	KW_ERR_NONE = 0x00,
	KW_ERR_CRYPTO = 0x01,
	KW_ERR_KEY_NOT_FOUND = 0x02,
	KW_ERR_READ = 0x03,
	KW_ERR_VERSION_MISMATCH = 0x04,
	KW_ERR_BAD_OPCODE = 0x05,
	KW_ERR_UNEXPECTED_OPCODE = 0x06,
	KW_ERR_FORMAT = 0x07,
	KW_ERR_INTERNAL = 0x08,
	KW_ERR_CERT_NOT_FOUND = 0x09,
	KW_ERR_EXPIRED = 0x0A,
	KW_ERR_REMOTE_CONFIGURATION = 0x0B,
};

/* Families as gokeyless' Op.Type(), used as the metrics `type` label. */
enum kw_op_family {
	KW_FAMILY_UNKNOWN = 0,
	KW_FAMILY_RSA,
	KW_FAMILY_ECDSA,
	KW_FAMILY_ED25519,
	KW_FAMILY_RPC,
	KW_FAMILY_CUSTOM,
	KW_FAMILY_OTHER,
};

struct kw_header {
	uint8_t major;
	uint8_t minor;
	uint16_t length; /* body length, header excluded */
	uint32_t id;
};

/* A byte string inside some buffer; data is NULL when absent. */
struct kw_bytes {
	const uint8_t *data;
	size_t len;
};

/*
 * A decoded or to-be-encoded operation. has_* / .data != NULL say which
 * items are present. On decode, ski/digest are copied only if they have
 * exactly the right length (gokeyless silently ignores other lengths).
 */
struct kw_msg {
	bool has_opcode;
	uint8_t opcode;
	struct kw_bytes payload; /* payload.data != NULL when the item is present (may be empty) */
	bool has_ski;
	uint8_t ski[KW_SKI_LEN];
	bool has_digest;
	uint8_t digest[KW_DIGEST_LEN];
	struct kw_bytes server_name;
	struct kw_bytes client_ip; /* 4 or 16 bytes */
	struct kw_bytes server_ip; /* 4 or 16 bytes */
	struct kw_bytes cert_id;
	struct kw_bytes custom_func_name;
	struct kw_bytes extra;
	struct kw_bytes jaeger_span;
	struct kw_bytes req_context;
	bool has_compliance_region;
	uint8_t compliance_region;
};

/*
 * kw_header_parse reads a header from the first KW_HEADER_LEN bytes of p.
 * Returns 0, or -EAGAIN if len < KW_HEADER_LEN. The version is not checked
 * here: the caller decides (keywayd answers KW_ERR_VERSION_MISMATCH).
 */
int kw_header_parse(struct kw_header *out, const uint8_t *p, size_t len);

/*
 * kw_msg_parse decodes a body of len bytes into out (zeroed first). Follows
 * gokeyless' parser: unknown tags and padding are skipped; 1-2 trailing
 * bytes are ignored. Returns 0, or -KW_EPROTO when an item runs past the
 * body, the opcode item is not 1 byte, an IP item is not 4 or 16 bytes, the
 * compliance-region item is not 1 byte, or a known tag repeats.
 */
int kw_msg_parse(struct kw_msg *out, const uint8_t *body, size_t len);

/*
 * kw_msg_encode appends one complete frame (header + items) to out, items in
 * gokeyless' order (opcode, payload, extra, SKI, digest, client IP, server
 * IP, SNI, cert ID, custom function, jaeger span, request context,
 * compliance region), padded to KW_PADDED_LEN with a padding item when pad
 * is true and there is room, as gokeyless does. The payload item is written
 * whenever payload.data != NULL, even when empty (C keyless needs it).
 * Returns 0, -EMSGSIZE if the body would exceed KW_MAX_BODY, or -ENOMEM.
 */
int kw_msg_encode(struct kw_buf *out, uint32_t id, const struct kw_msg *m, bool pad);

/* kw_msg_encoded_len is the frame size kw_msg_encode would produce. */
size_t kw_msg_encoded_len(const struct kw_msg *m, bool pad);

/*
 * Convenience encoders for responses: KW_OP_RESPONSE/KW_OP_PONG with a
 * payload, and KW_OP_ERROR with the one-byte error code.
 */
int kw_encode_response(struct kw_buf *out, uint32_t id, uint8_t opcode, const uint8_t *payload,
                       size_t len, bool pad);
int kw_encode_error(struct kw_buf *out, uint32_t id, enum kw_proto_error err, bool pad);

/* Names: Go constant names ("OpRSASignSHA256"), NULL for unknown values. */
const char *kw_opcode_name(uint8_t opcode);
/* gokeyless Error.String() text ("cryptography error"); "unknown error" otherwise. */
const char *kw_proto_error_string(uint8_t err);
/* Family of an opcode as gokeyless' Op.Type(). */
enum kw_op_family kw_opcode_family(uint8_t opcode);
/* "rsa", "ecdsa", "ed25519", "rpc", "custom", "other", "unknown" */
const char *kw_family_name(enum kw_op_family f);
/* Tag names for diagnostics ("SubjectKeyIdentifier"), NULL if unknown. */
const char *kw_tag_name(uint8_t tag);

#endif
