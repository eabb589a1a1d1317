/*
 * msg_eq.h - field-by-field equality of two parsed keyless messages, for the
 * codec's unit test and its fuzz harness (both check that what parses
 * re-encodes to the same message).
 */
#ifndef KW_TEST_MSG_EQ_H
#define KW_TEST_MSG_EQ_H

#include <stdbool.h>
#include <string.h>

#include "keyway/protocol.h"

/* True if a and b hold the same bytes; a NULL view equals only a NULL view. */
static inline bool bytes_eq(struct kw_bytes a, struct kw_bytes b)
{
	if ((a.data == NULL) != (b.data == NULL) || a.len != b.len)
		return false;
	return a.len == 0 || memcmp(a.data, b.data, a.len) == 0;
}

/* True if a and b carry the same items with the same values. */
static inline bool msg_eq(const struct kw_msg *a, const struct kw_msg *b)
{
	return a->has_opcode == b->has_opcode && (!a->has_opcode || a->opcode == b->opcode) &&
	       bytes_eq(a->payload, b->payload) && a->has_ski == b->has_ski &&
	       (!a->has_ski || memcmp(a->ski, b->ski, KW_SKI_LEN) == 0) &&
	       a->has_digest == b->has_digest &&
	       (!a->has_digest || memcmp(a->digest, b->digest, KW_DIGEST_LEN) == 0) &&
	       bytes_eq(a->server_name, b->server_name) && bytes_eq(a->client_ip, b->client_ip) &&
	       bytes_eq(a->server_ip, b->server_ip) && bytes_eq(a->cert_id, b->cert_id) &&
	       bytes_eq(a->custom_func_name, b->custom_func_name) && bytes_eq(a->extra, b->extra) &&
	       bytes_eq(a->jaeger_span, b->jaeger_span) &&
	       bytes_eq(a->req_context, b->req_context) &&
	       a->has_compliance_region == b->has_compliance_region &&
	       (!a->has_compliance_region || a->compliance_region == b->compliance_region);
}

#endif
