/* config.c - flags and `key = value` config files, one format for every program. */
#include "keyway/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyway/err.h"
#include "keyway/version.h"

/* Where a value came from, for error messages. */
struct origin {
	const char *file; /* NULL for a command-line flag */
	unsigned line;
};

static void say(char *err, size_t errlen, const struct origin *o, const char *fmt, ...)
{
	size_t used = 0;
	int w = o->file ? snprintf(err, errlen, "%s:%u: ", o->file, o->line) : 0;
	if (w > 0 && (size_t)w < errlen)
		used = (size_t)w;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
}

static unsigned edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 63 || lb > 63)
		return 99;
	unsigned d[64][64];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (unsigned)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			unsigned c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			unsigned del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			d[i][j] = c < del ? (c < ins ? c : ins) : (del < ins ? del : ins);
		}
	return d[la][lb];
}

static const char *suggest(const struct kw_option *opts, const char *name)
{
	const char *best = NULL;
	unsigned bestd = 3;
	for (const struct kw_option *o = opts; o->name; o++) {
		unsigned dist = edit_distance(name, o->name);
		if (dist < bestd || (strstr(o->name, name) && best == NULL && strlen(name) >= 3)) {
			bestd = dist < bestd ? dist : bestd;
			best = o->name;
		}
	}
	if (best == NULL && edit_distance(name, "config") < 3)
		best = "config";
	return best;
}

static void unknown(char *err, size_t errlen, const struct origin *org,
		    const struct kw_option *opts, const char *name)
{
	const char *s = suggest(opts, name);
	if (org->file)
		say(err, errlen, org, "unknown key '%s'%s%s%s; see --help for the valid keys", name,
		    s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
	else
		say(err, errlen, org, "unknown option '--%s'%s%s%s; see --help", name,
		    s ? " (did you mean '--" : "", s ? s : "", s ? "'?)" : "");
}

/* Names match with '_' and '-' alike, so a file can use the provider's openssl.cnf keys. */
static bool same_name(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++)
		if (*a != *b && !((*a == '_' || *a == '-') && (*b == '_' || *b == '-')))
			return false;
	return *a == *b;
}

static struct kw_option *find(struct kw_option *opts, const char *name)
{
	for (struct kw_option *o = opts; o->name; o++)
		if (same_name(o->name, name))
			return o;
	return NULL;
}

static void free_list(char **list)
{
	if (list == NULL)
		return;
	for (char **p = list; *p; p++)
		free(*p);
	free(list);
}

static int list_append(char ***listp, const char *value)
{
	size_t n = 0;
	if (*listp)
		while ((*listp)[n])
			n++;
	/* A comma-separated value adds each element. */
	const char *p = value;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		while (len > 0 && isspace((unsigned char)*p)) {
			p++;
			len--;
		}
		while (len > 0 && isspace((unsigned char)p[len - 1]))
			len--;
		if (len > 0) {
			char **nl = realloc(*listp, (n + 2) * sizeof(char *));
			if (nl == NULL)
				return -ENOMEM;
			*listp = nl;
			nl[n] = strndup(p, len);
			if (nl[n] == NULL)
				return -ENOMEM;
			nl[++n] = NULL;
		}
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const t[] = {"true", "yes", "on", "1", NULL};
	static const char *const f[] = {"false", "no", "off", "0", NULL};
	for (int i = 0; t[i]; i++)
		if (strcasecmp(v, t[i]) == 0) {
			*out = true;
			return 0;
		}
	for (int i = 0; f[i]; i++)
		if (strcasecmp(v, f[i]) == 0) {
			*out = false;
			return 0;
		}
	return -EINVAL;
}

/* set applies one value; from_flag tells a list to drop what the file gave. */
static int set(struct kw_option *o, const char *value, const struct origin *org, bool from_flag,
	       bool *list_reset, char *err, size_t errlen)
{
	const char *pre = org->file ? "" : "--";
	switch (o->type) {
	case KW_OPT_STRING: {
		char **dest = o->dest;
		char *copy = strdup(value);
		if (copy == NULL)
			return -ENOMEM;
		/* Only what the parser allocated is freed: defaults may be literals. */
		if (o->seen)
			free(*dest);
		*dest = copy;
		break;
	}
	case KW_OPT_UINT: {
		unsigned max = o->max ? o->max : UINT_MAX;
		char *end;
		errno = 0;
		unsigned long long v = strtoull(value, &end, 0);
		if (value[0] == '\0' || value[0] == '-' || *end != '\0' || errno || v < o->min ||
		    v > max) {
			say(err, errlen, org, "%s%s: '%s' is not valid; expected a whole number from %u to %u",
			    pre, o->name, value, o->min, max);
			return -KW_ECONFIG;
		}
		*(unsigned *)o->dest = (unsigned)v;
		break;
	}
	case KW_OPT_BOOL:
		if (parse_bool(value, o->dest) < 0) {
			say(err, errlen, org, "%s%s: '%s' is not valid; expected true or false", pre,
			    o->name, value);
			return -KW_ECONFIG;
		}
		break;
	case KW_OPT_ENUM: {
		int i;
		for (i = 0; o->choices[i]; i++)
			if (strcmp(o->choices[i], value) == 0)
				break;
		if (o->choices[i] == NULL) {
			char list[256] = "";
			size_t used = 0;
			for (int j = 0; o->choices[j]; j++) {
				int w = snprintf(list + used, sizeof(list) - used, "%s%s", j ? "|" : "",
						 o->choices[j]);
				if (w < 0 || (size_t)w >= sizeof(list) - used)
					break;
				used += (size_t)w;
			}
			say(err, errlen, org, "%s%s: '%s' is not valid; expected one of %s", pre,
			    o->name, value, list);
			return -KW_ECONFIG;
		}
		*(int *)o->dest = i;
		break;
	}
	case KW_OPT_LIST:
		if (!o->seen || (from_flag && !*list_reset)) {
			/* The first value replaces a default; the first flag replaces the file's list. */
			if (o->seen)
				free_list(*(char ***)o->dest);
			*(char ***)o->dest = NULL;
			*list_reset = from_flag;
		}
		if (list_append(o->dest, value) < 0)
			return -ENOMEM;
		break;
	}
	o->seen = true;
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int parse_file(struct kw_option *opts, const char *path, char *err, size_t errlen)
{
	struct origin org = {path, 0};
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		int e = errno;
		snprintf(err, errlen, "--config %s: cannot open: %s", path, strerror(e));
		return -KW_ECONFIG;
	}
	unsigned *seen_line = calloc(256, sizeof(unsigned));
	char line[4096];
	int rc = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		org.line++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			say(err, errlen, &org, "line longer than %zu characters", sizeof(line) - 2);
			rc = -KW_ECONFIG;
			break;
		}
		/* Comments: a '#' at the start or after whitespace. */
		for (char *p = line; *p; p++)
			if (*p == '#' && (p == line || isspace((unsigned char)p[-1]))) {
				*p = '\0';
				break;
			}
		char *s = trim(line);
		if (*s == '\0')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			say(err, errlen, &org, "expected 'key = value', got '%s'", s);
			rc = -KW_ECONFIG;
			break;
		}
		*eq = '\0';
		char *key = trim(s), *value = trim(eq + 1);
		size_t vl = strlen(value);
		if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
			value[vl - 1] = '\0';
			value++;
		}
		if (strcmp(key, "config") == 0) {
			say(err, errlen, &org, "'config' cannot be set inside a config file; remove the line");
			rc = -KW_ECONFIG;
			break;
		}
		struct kw_option *o = find(opts, key);
		if (o == NULL) {
			unknown(err, errlen, &org, opts, key);
			rc = -KW_ECONFIG;
			break;
		}
		size_t idx = (size_t)(o - opts);
		if (o->type != KW_OPT_LIST && idx < 256 && seen_line && seen_line[idx]) {
			say(err, errlen, &org, "'%s' is already set on line %u; keep one of the two", key,
			    seen_line[idx]);
			rc = -KW_ECONFIG;
			break;
		}
		if (idx < 256 && seen_line)
			seen_line[idx] = org.line;
		bool dummy = false;
		if ((rc = set(o, value, &org, false, &dummy, err, errlen)) < 0)
			break;
	}
	free(seen_line);
	fclose(f);
	return rc;
}

void kw_config_usage(const struct kw_option *opts, const char *usage, void *stream)
{
	FILE *f = stream;
	fprintf(f, "%s\n\nOptions (each is also a config-file key: name = value):\n", usage);
	for (const struct kw_option *o = opts; o->name; o++) {
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(f, "  %-32s %s%s\n", left, o->help ? o->help : "", o->required ? " (required)" : "");
	}
	fprintf(f, "  %-32s %s\n", "--config FILE", "read options from FILE; flags override it");
	fprintf(f, "  %-32s %s\n", "--help", "show this help");
	fprintf(f, "  %-32s %s\n", "--version", "show the version, OpenSSL version and features");
}

int kw_config_parse(struct kw_option *opts, int argc, char **argv, const char *usage,
		    char **positional, int *npositional, char *err, size_t errlen)
{
	struct origin flag = {NULL, 0};
	const char *config = NULL;
	int rc;

	if (npositional)
		*npositional = 0;
	/* Pass 1: --help and --config, so the file is read before flags override it. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			kw_config_usage(opts, usage, stdout);
			return 1;
		}
		if (strcmp(argv[i], "--version") == 0) {
			kw_version_print(stdout, NULL);
			return 1;
		}
		if (strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "--config: missing FILE");
				return -KW_ECONFIG;
			}
			config = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			config = argv[i] + 9;
		}
	}
	if (config && (rc = parse_file(opts, config, err, errlen)) < 0)
		return rc < 0 && rc != -ENOMEM ? -KW_ECONFIG : rc;

	bool reset[256] = {false};
	bool only_positional = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (only_positional || a[0] != '-' || a[1] == '\0') {
			if (positional == NULL) {
				snprintf(err, errlen, "unexpected argument '%s'; see --help", a);
				return -KW_ECONFIG;
			}
			positional[(*npositional)++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_positional = true;
			continue;
		}
		if (a[1] != '-') {
			snprintf(err, errlen, "unknown option '%s'; options are long: --name value (see --help)", a);
			return -KW_ECONFIG;
		}
		char name[128];
		const char *value = NULL;
		const char *eq = strchr(a + 2, '=');
		size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (nl >= sizeof(name)) {
			snprintf(err, errlen, "option '%.40s...' is too long", a);
			return -KW_ECONFIG;
		}
		memcpy(name, a + 2, nl);
		name[nl] = '\0';
		if (eq)
			value = eq + 1;
		if (strcmp(name, "config") == 0) {
			if (!eq)
				i++;
			continue;
		}
		struct kw_option *o = find(opts, name);
		if (o == NULL) {
			unknown(err, errlen, &flag, opts, name);
			return -KW_ECONFIG;
		}
		if (value == NULL) {
			if (o->type == KW_OPT_BOOL && o->arg == NULL) {
				value = "true";
			} else if (i + 1 >= argc) {
				snprintf(err, errlen, "--%s: missing value%s%s", name, o->arg ? " " : "",
					 o->arg ? o->arg : "");
				return -KW_ECONFIG;
			} else {
				value = argv[++i];
			}
		}
		size_t idx = (size_t)(o - opts);
		bool dummy = false;
		if ((rc = set(o, value, &flag, true, idx < 256 ? &reset[idx] : &dummy, err, errlen)) < 0)
			return rc;
	}
	for (struct kw_option *o = opts; o->name; o++)
		if (o->required && !o->seen) {
			snprintf(err, errlen, "--%s%s%s is required (as a flag or a config key); see --help",
				 o->name, o->arg ? " " : "", o->arg ? o->arg : "");
			return -KW_ECONFIG;
		}
	return 0;
}

void kw_config_free(struct kw_option *opts)
{
	for (struct kw_option *o = opts; o->name; o++) {
		if (!o->seen)
			continue;
		o->seen = false;
		if (o->type == KW_OPT_STRING) {
			free(*(char **)o->dest);
			*(char **)o->dest = NULL;
		} else if (o->type == KW_OPT_LIST) {
			free_list(*(char ***)o->dest);
			*(char ***)o->dest = NULL;
		}
	}
}
