/*
 * fuzz_protocol.c - libFuzzer harness for the keyless codec. The input is a
 * frame: header, then body bytes. Whatever parses must re-encode (padded and
 * not) into a frame that parses to the same message and re-encodes to the
 * same bytes; anything else aborts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyway/buf.h"
#include "keyway/protocol.h"
#include "../unit/msg_eq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encodes m, parses the frame back, and re-encodes what came back. */
static void round_trip(const struct kw_msg *m, uint32_t id, bool pad)
{
	struct kw_buf a = KW_BUF_INIT, b = KW_BUF_INIT;
	struct kw_header h;
	struct kw_msg back;

	/* A parsed body is at most 65535 bytes and re-encodes no larger (+ padding). */
	if (kw_msg_encode(&a, id, m, pad) != 0)
		abort();
	if (a.len != kw_msg_encoded_len(m, pad))
		abort();
	if (pad && a.len < KW_PADDED_LEN)
		abort();
	if (kw_header_parse(&h, a.data, a.len) != 0 || h.major != KW_PROTO_MAJOR ||
	    h.minor != KW_PROTO_MINOR || h.id != id || (size_t)h.length + KW_HEADER_LEN != a.len)
		abort();
	if (kw_msg_parse(&back, a.data + KW_HEADER_LEN, h.length) != 0)
		abort();
	if (!msg_eq(m, &back))
		abort();
	if (kw_msg_encode(&b, id, &back, pad) != 0 || a.len != b.len ||
	    memcmp(a.data, b.data, a.len) != 0)
		abort();
	kw_buf_cleanup(&a);
	kw_buf_cleanup(&b);
}

static void check_body(const uint8_t *body, size_t len, uint32_t id)
{
	struct kw_msg m;

	if (kw_msg_parse(&m, body, len) != 0)
		return;
	/* Decoded strings must lie inside the body. */
	const struct kw_bytes *all[] = {&m.payload,   &m.server_name, &m.client_ip,
	                                &m.server_ip, &m.cert_id,     &m.custom_func_name,
	                                &m.extra,     &m.jaeger_span, &m.req_context};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const struct kw_bytes *s = all[i];
		if (s->data != NULL &&
		    (s->data < body || s->len > len || (size_t)(s->data - body) > len - s->len))
			abort();
	}
	if ((m.client_ip.data != NULL && m.client_ip.len != 4 && m.client_ip.len != 16) ||
	    (m.server_ip.data != NULL && m.server_ip.len != 4 && m.server_ip.len != 16))
		abort();
	if (m.has_opcode) {
		(void)kw_opcode_name(m.opcode);
		(void)kw_family_name(kw_opcode_family(m.opcode));
		if (m.opcode == KW_OP_ERROR && m.payload.len == 1)
			(void)kw_proto_error_string(m.payload.data[0]);
	}
	round_trip(&m, id, false);
	round_trip(&m, id, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kw_header h;

	if (kw_header_parse(&h, data, size) != 0)
		return 0;
	/* A short read still exercises the body parser on what is there. */
	size_t len = size - KW_HEADER_LEN;
	if (len > h.length)
		len = h.length;
	check_body(data + KW_HEADER_LEN, len, h.id);
	return 0;
}
