/*
 * acl.c - --acl rules: parsing and the per-request check (see acl.h).
 *
 * Rules are few (one per front end, or per front end and key) and checked in
 * order with early exits, so a linear scan costs well under the request's
 * own lookups; the verdict keeps the most telling reason for the metrics.
 */
#include "acl.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "exec.h"
#include "keyway/err.h"
#include "keyway/opcodes.h"
#include "metrics.h"

_Static_assert(KWD_ACL_NREASON == KWD_NACL_REASON, "metrics count every denial reason");

#define MAX_LINE 8192

enum client_kind { CLIENT_ANY, CLIENT_SPKI, CLIENT_DNS, CLIENT_CN, CLIENT_UID };
enum key_kind { KEY_ANY, KEY_SKI, KEY_LABEL };

struct acl_key {
	enum key_kind kind;
	uint8_t ski[KW_SKI_LEN];
	char *label;
};

struct acl_rule {
	enum client_kind client;
	uint8_t spki[KWD_SPKI_LEN];
	char *name; /* dns: or cn: */
	uid_t uid;
	struct acl_key *keys;
	size_t nkeys;
	unsigned ops;
};

struct kwd_acl {
	struct acl_rule *rules;
	size_t n;
};

const char *kwd_acl_reason_name(enum kwd_acl_verdict v)
{
	switch (v) {
	case KWD_ACL_DENY_CLIENT:
		return "client";
	case KWD_ACL_DENY_KEY:
		return "key";
	case KWD_ACL_DENY_OP:
		return "operation";
	default:
		return "allowed";
	}
}

unsigned kwd_acl_op_of(uint8_t opcode)
{
	return opcode == KW_OP_RSA_DECRYPT || opcode == KW_OP_RSA_DECRYPT_RAW ? KWD_ACL_DECRYPT
	                                                                      : KWD_ACL_SIGN;
}

/* ---- parsing ---- */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* parse_hex reads exactly len bytes of hex (either case, ':' between bytes allowed). */
static bool parse_hex(const char *s, uint8_t *out, size_t len)
{
	size_t i = 0;
	while (*s != '\0') {
		if (*s == ':' && i > 0) {
			s++;
			continue;
		}
		int hi = hexval(s[0]), lo = hi < 0 ? -1 : hexval(s[1]);
		if (lo < 0 || i == len)
			return false;
		out[i++] = (uint8_t)(hi << 4 | lo);
		s += 2;
	}
	return i == len;
}

/* A line being parsed: where it is, for the messages. */
struct line_ctx {
	const char *path;
	unsigned line;
	char *err;
	size_t errlen;
};

static int bad(const struct line_ctx *lc, const char *fmt, const char *word, const char *fix)
{
	char what[512];
	snprintf(what, sizeof(what), fmt, word);
	snprintf(lc->err, lc->errlen, "%s:%u: %s; fix: %s", lc->path, lc->line, what, fix);
	return -KW_ECONFIG;
}

static int parse_client(struct acl_rule *r, const char *w, const struct line_ctx *lc)
{
	static const char fix[] = "CLIENT is spki:HEX (64 hex digits), dns:NAME, cn:NAME, "
	                          "uid:N or *";
	if (strcmp(w, "*") == 0) {
		r->client = CLIENT_ANY;
	} else if (strncmp(w, "spki:", 5) == 0) {
		r->client = CLIENT_SPKI;
		if (!parse_hex(w + 5, r->spki, KWD_SPKI_LEN))
			return bad(
			    lc, "'%s': not a SHA-256 in hex", w,
			    "give the 64 hex digits of the SHA-256 of the certificate's "
			    "SubjectPublicKeyInfo (openssl x509 -pubkey -noout | openssl pkey "
			    "-pubin -outform DER | sha256sum)");
	} else if (strncmp(w, "dns:", 4) == 0 || strncmp(w, "cn:", 3) == 0) {
		r->client = w[0] == 'd' ? CLIENT_DNS : CLIENT_CN;
		const char *name = strchr(w, ':') + 1;
		if (*name == '\0')
			return bad(lc, "'%s': empty name", w, fix);
		if ((r->name = strdup(name)) == NULL)
			return -ENOMEM;
	} else if (strncmp(w, "uid:", 4) == 0) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(w + 4, &end, 10);
		if (w[4] < '0' || w[4] > '9' || *end != '\0' || errno != 0 || v > 0xfffffffful)
			return bad(lc, "'%s': not a decimal uid", w, fix);
		r->client = CLIENT_UID;
		r->uid = (uid_t)v;
	} else {
		return bad(lc, "unknown client '%s'", w, fix);
	}
	return 0;
}

static int parse_keys(struct acl_rule *r, char *w, const struct line_ctx *lc)
{
	size_t n = 1;
	for (const char *p = w; *p; p++)
		n += *p == ',';
	if ((r->keys = calloc(n, sizeof(*r->keys))) == NULL)
		return -ENOMEM;
	char *save = NULL;
	for (char *k = strtok_r(w, ",", &save); k != NULL; k = strtok_r(NULL, ",", &save)) {
		struct acl_key *key = &r->keys[r->nkeys++];
		if (strcmp(k, "*") == 0) {
			key->kind = KEY_ANY;
		} else if (strncmp(k, "label:", 6) == 0) {
			key->kind = KEY_LABEL;
			if (k[6] == '\0')
				return bad(lc, "'%s': empty label", k, "give label:NAME");
			if ((key->label = strdup(k + 6)) == NULL)
				return -ENOMEM;
		} else {
			key->kind = KEY_SKI;
			if (!parse_hex(k, key->ski, KW_SKI_LEN))
				return bad(lc, "'%s': not a key", k,
				           "KEYS is a comma-separated list of SKIs (40 hex digits, "
				           "as `keyway ski` prints them), label:NAME or *");
		}
	}
	if (r->nkeys == 0)
		return bad(lc, "%sno keys", "", "give SKIs, label:NAME or *");
	return 0;
}

static int parse_ops(struct acl_rule *r, char *w, const struct line_ctx *lc)
{
	char *save = NULL;
	r->ops = 0;
	for (char *o = strtok_r(w, ",", &save); o != NULL; o = strtok_r(NULL, ",", &save)) {
		if (strcmp(o, "sign") == 0)
			r->ops |= KWD_ACL_SIGN;
		else if (strcmp(o, "decrypt") == 0)
			r->ops |= KWD_ACL_DECRYPT;
		else
			return bad(lc, "unknown operation '%s'", o,
			           "OPS is a comma-separated list of sign and decrypt");
	}
	if (r->ops == 0)
		return bad(lc, "%sno operations", "", "give sign, decrypt or sign,decrypt");
	return 0;
}

/* parse_line reads one rule from line (modified); 1 if the line holds none. */
static int parse_line(struct acl_rule *r, char *line, const struct line_ctx *lc)
{
	char *hash = strchr(line, '#');
	if (hash != NULL)
		*hash = '\0';
	char *words[5], *save = NULL;
	int n = 0;
	for (char *w = strtok_r(line, " \t\r\n", &save); w != NULL && n < 5;
	     w = strtok_r(NULL, " \t\r\n", &save))
		words[n++] = w;
	if (n == 0)
		return 1;
	static const char shape[] = "a rule is `allow CLIENT KEYS [OPS]`";
	if (strcmp(words[0], "allow") != 0)
		return bad(lc, "unknown rule '%s'", words[0], shape);
	if (n < 3)
		return bad(lc, "%s`allow` needs CLIENT and KEYS", "", shape);
	if (n > 4)
		return bad(lc, "unexpected '%s' after OPS", words[4], shape);
	int rc = parse_client(r, words[1], lc);
	if (rc == 0)
		rc = parse_keys(r, words[2], lc);
	if (rc == 0) {
		r->ops = KWD_ACL_SIGN;
		if (n == 4)
			rc = parse_ops(r, words[3], lc);
	}
	return rc;
}

static void rule_cleanup(struct acl_rule *r)
{
	for (size_t i = 0; i < r->nkeys; i++)
		free(r->keys[i].label);
	free(r->keys);
	free(r->name);
}

void kwd_acl_free(struct kwd_acl *acl)
{
	if (acl == NULL)
		return;
	for (size_t i = 0; i < acl->n; i++)
		rule_cleanup(&acl->rules[i]);
	free(acl->rules);
	free(acl);
}

static int add_rule(struct kwd_acl *acl, size_t *cap, const struct acl_rule *r)
{
	if (acl->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct acl_rule *p = realloc(acl->rules, ncap * sizeof(*p));
		if (p == NULL)
			return -ENOMEM;
		acl->rules = p;
		*cap = ncap;
	}
	acl->rules[acl->n++] = *r;
	return 0;
}

int kwd_acl_load(const char *path, struct kwd_acl **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		int rc = -errno;
		snprintf(err, errlen, "--acl %s: %s; fix: give a readable rules file", path,
		         strerror(-rc));
		return rc;
	}
	struct kwd_acl *acl = calloc(1, sizeof(*acl));
	struct line_ctx lc = {.path = path, .err = err, .errlen = errlen};
	size_t cap = 0;
	char buf[MAX_LINE];
	int rc = acl == NULL ? -ENOMEM : 0;
	while (rc == 0 && fgets(buf, sizeof(buf), f) != NULL) {
		lc.line++;
		if (strchr(buf, '\n') == NULL && !feof(f)) {
			rc = bad(&lc, "line longer than %s bytes", "8191", "split the rule");
			break;
		}
		struct acl_rule r = {0};
		rc = parse_line(&r, buf, &lc);
		if (rc == 0)
			rc = add_rule(acl, &cap, &r);
		if (rc != 0)
			rule_cleanup(&r);
		if (rc == 1)
			rc = 0;
	}
	if (rc == 0 && ferror(f)) {
		rc = -EIO;
		snprintf(err, errlen, "--acl %s: read error", path);
	}
	fclose(f);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "--acl %s: out of memory", path);
	if (rc < 0) {
		kwd_acl_free(acl);
		return rc;
	}
	*out = acl;
	return 0;
}

size_t kwd_acl_count(const struct kwd_acl *acl)
{
	return acl != NULL ? acl->n : 0;
}

/* ---- checking ---- */

static bool client_matches(const struct acl_rule *r, const struct kwd_identity *id)
{
	switch (r->client) {
	case CLIENT_ANY:
		return true;
	case CLIENT_SPKI:
		return id->has_cert && memcmp(r->spki, id->spki, KWD_SPKI_LEN) == 0;
	case CLIENT_CN:
		return id->has_cert && id->cn != NULL && strcmp(r->name, id->cn) == 0;
	case CLIENT_DNS:
		for (size_t i = 0; id->has_cert && i < id->ndns; i++)
			if (strcasecmp(r->name, id->dns[i]) == 0)
				return true;
		return false;
	case CLIENT_UID:
		return id->has_uid && id->uid == r->uid;
	}
	return false;
}

static bool key_matches(const struct acl_rule *r, const struct kwd_key *key)
{
	for (size_t i = 0; i < r->nkeys; i++) {
		const struct acl_key *k = &r->keys[i];
		if (k->kind == KEY_ANY ||
		    (k->kind == KEY_SKI && memcmp(k->ski, key->ski, KW_SKI_LEN) == 0) ||
		    (k->kind == KEY_LABEL && key->label != NULL &&
		     strcmp(k->label, key->label) == 0))
			return true;
	}
	return false;
}

enum kwd_acl_verdict kwd_acl_check(const struct kwd_acl *acl, const struct kwd_identity *id,
                                   const struct kwd_key *key, unsigned op)
{
	enum kwd_acl_verdict v = KWD_ACL_DENY_CLIENT;
	for (size_t i = 0; i < acl->n; i++) {
		const struct acl_rule *r = &acl->rules[i];
		if (!client_matches(r, id))
			continue;
		if (!key_matches(r, key)) {
			if (v == KWD_ACL_DENY_CLIENT)
				v = KWD_ACL_DENY_KEY;
			continue;
		}
		if (r->ops & op)
			return KWD_ACL_ALLOW;
		v = KWD_ACL_DENY_OP;
	}
	return v;
}

enum kwd_acl_verdict kwd_acl_request(const struct kwd_acl *acl, const struct kwd_identity *id,
                                     const struct kwd_keystore *ks, const struct kw_msg *m,
                                     const struct kwd_key **key)
{
	enum kw_proto_error err;
	*key = NULL;
	if (!m->has_opcode || kw_opcode_desc(m->opcode) == NULL)
		return KWD_ACL_ALLOW;
	if ((*key = kwd_exec_find_key(ks, m, &err)) == NULL || acl == NULL)
		return KWD_ACL_ALLOW;
	return kwd_acl_check(acl, id, *key, kwd_acl_op_of(m->opcode));
}
