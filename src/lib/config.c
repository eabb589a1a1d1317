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
		if (same_name(o->name, name) || (o->alias != NULL && same_name(o->alias, name)))
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

static int list_append(char ***listp, const char *value, bool whole)
{
	size_t n = 0;
	if (*listp)
		while ((*listp)[n])
			n++;
	/* A comma-separated value adds each element (unless whole). */
	const char *p = value;
	for (;;) {
		const char *comma = whole ? NULL : strchr(p, ',');
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

int kw_config_parse_bool(const char *v, bool *out)
{
	static const char *const t[] = {"on", "true", "yes", NULL};
	static const char *const f[] = {"off", "false", "no", NULL};
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

int kw_config_parse_uint(const char *v, unsigned min, unsigned max, unsigned *out)
{
	unsigned long long n = 0;
	if (*v == '\0')
		return -EINVAL;
	/* Decimal digits only: no sign, no space, no 0x; a leading 0 is not octal. */
	for (const char *p = v; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		n = n * 10 + (unsigned)(*p - '0');
		if (n > UINT_MAX)
			return -ERANGE;
	}
	if (n < min || n > max)
		return -ERANGE;
	*out = (unsigned)n;
	return 0;
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
		if (kw_config_parse_uint(value, o->min, max, o->dest) < 0) {
			say(err, errlen, org,
			    "%s%s: '%s' is not valid; expected a whole number from %u to %u", pre,
			    o->name, value, o->min, max);
			return -KW_ECONFIG;
		}
		break;
	}
	case KW_OPT_BOOL:
		if (kw_config_parse_bool(value, o->dest) < 0) {
			say(err, errlen, org,
			    "%s%s: '%s' is not valid; expected on|off|true|false|yes|no", pre,
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
				int w = snprintf(list + used, sizeof(list) - used, "%s%s",
				                 j ? "|" : "", o->choices[j]);
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
			/* The first value replaces a default; the first flag replaces the file's
			 * list. */
			if (o->seen)
				free_list(*(char ***)o->dest);
			*(char ***)o->dest = NULL;
			*list_reset = from_flag;
		}
		if (list_append(o->dest, value, o->whole) < 0)
			return -ENOMEM;
		break;
	}
	o->seen = true;
	o->file = org->file;
	o->line = org->line;
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

/* cut_comment ends s at a '#' that starts it or follows whitespace. */
static void cut_comment(char *s)
{
	for (char *p = s; *p; p++)
		if (*p == '#' && (p == s || isspace((unsigned char)p[-1]))) {
			*p = '\0';
			return;
		}
}

/*
 * split_line splits a config line into key and value: 0, 1 for a blank or
 * comment line, or -KW_ECONFIG with the reason in err. A value in double
 * quotes is taken as written, '#' included; elsewhere a '#' at the start or
 * after whitespace starts a comment.
 */
static int split_line(char *line, char **key, char **value, const struct origin *org, char *err,
                      size_t errlen)
{
	char *s = trim(line);
	if (*s == '\0' || *s == '#')
		return 1;
	char *eq = strchr(s, '=');
	if (eq == NULL) {
		cut_comment(s);
		say(err, errlen, org, "expected 'key = value', got '%s'", trim(s));
		return -KW_ECONFIG;
	}
	*eq = '\0';
	*key = trim(s);
	char *v = eq + 1;
	while (isspace((unsigned char)*v))
		v++;
	if (*v != '"') {
		cut_comment(v);
		*value = trim(v);
		return 0;
	}
	char *close = strchr(v + 1, '"');
	if (close == NULL) {
		say(err, errlen, org, "%s: the value's opening quote is never closed; add a '\"'",
		    *key);
		return -KW_ECONFIG;
	}
	*close = '\0';
	char *rest = close + 1;
	while (isspace((unsigned char)*rest))
		rest++;
	if (*rest != '\0' && *rest != '#') {
		say(err, errlen, org, "%s: unexpected '%s' after the quoted value", *key, rest);
		return -KW_ECONFIG;
	}
	*value = v + 1;
	return 0;
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
		char *key, *value;
		int lr = split_line(line, &key, &value, &org, err, errlen);
		if (lr == 1)
			continue;
		if (lr < 0) {
			rc = lr;
			break;
		}
		if (strcmp(key, "config") == 0) {
			say(err, errlen, &org,
			    "'config' cannot be set inside a config file; remove the line");
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
			say(err, errlen, &org,
			    "'%s' is already set on line %u; keep one of the two", key,
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
		snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "",
		         o->arg ? o->arg : "");
		fprintf(f, "  %-32s %s%s%s%s%s\n", left, o->help ? o->help : "",
		        o->required ? " (required)" : "", o->alias ? " (also --" : "",
		        o->alias ? o->alias : "", o->alias ? ")" : "");
	}
	fprintf(f, "  %-32s %s\n", "--config FILE", "read options from FILE; flags override it");
	fprintf(f, "  %-32s %s\n", "--help", "show this help");
	fprintf(f, "  %-32s %s\n", "--version", "show the version, OpenSSL version and features");
}

/* What scan_next found on the command line. */
enum token { TOK_END, TOK_POSITIONAL, TOK_HELP, TOK_VERSION, TOK_CONFIG, TOK_OPTION };

struct scanner {
	int argc;
	char **argv;
	int i;                /* the argument last looked at */
	bool only_positional; /* after "--" */
	bool unknown;         /* the last error was an unknown option (--help still wins) */
};

/* takes_value tells whether `--name` without '=' takes the next argument. */
static bool takes_value(const struct kw_option *o)
{
	return o == NULL || o->type != KW_OPT_BOOL || o->arg != NULL;
}

/*
 * scan_next reads the next argument: a positional one, --help, --config
 * FILE or an option (*opt) with its value. A value is never another option:
 * `--key --help` is an error, not key = "--help" (`--key=--help` says that).
 * Returns a token or -KW_ECONFIG with the reason in err.
 */
static int scan_next(struct scanner *sc, struct kw_option *opts, struct kw_option **opt,
                     const char **value, char *err, size_t errlen)
{
	static const struct origin flag = {NULL, 0};
	char name[128];

	for (;;) {
		if (++sc->i >= sc->argc)
			return TOK_END;
		const char *a = sc->argv[sc->i];
		*value = a;
		if (sc->only_positional || a[0] != '-' || a[1] == '\0')
			return TOK_POSITIONAL;
		if (strcmp(a, "--") == 0) {
			sc->only_positional = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return TOK_HELP;
		if (strcmp(a, "--version") == 0)
			return TOK_VERSION;
		sc->unknown = true;
		if (a[1] != '-') {
			snprintf(err, errlen,
			         "unknown option '%s'; options are long: --name value (see --help)",
			         a);
			return -KW_ECONFIG;
		}
		const char *eq = strchr(a + 2, '=');
		size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (nl >= sizeof(name)) {
			snprintf(err, errlen, "option '%.40s...' is too long", a);
			return -KW_ECONFIG;
		}
		memcpy(name, a + 2, nl);
		name[nl] = '\0';
		*opt = NULL;
		if (strcmp(name, "config") != 0 && (*opt = find(opts, name)) == NULL) {
			unknown(err, errlen, &flag, opts, name);
			return -KW_ECONFIG;
		}
		sc->unknown = false;
		const char *what = *opt != NULL ? (*opt)->arg : "FILE";
		if (eq != NULL) {
			*value = eq + 1;
		} else if (!takes_value(*opt)) {
			*value = "true";
		} else if (sc->i + 1 >= sc->argc) {
			snprintf(err, errlen, "--%s: missing value%s%s", name, what ? " " : "",
			         what ? what : "");
			return -KW_ECONFIG;
		} else if (strncmp(sc->argv[sc->i + 1], "--", 2) == 0) {
			const char *next = sc->argv[sc->i + 1];
			snprintf(
			    err, errlen,
			    "--%s: missing value%s%s: '%s' is an option, not a value (if it is "
			    "the value, write --%s=%s)",
			    name, what ? " " : "", what ? what : "", next, name, next);
			return -KW_ECONFIG;
		} else {
			*value = sc->argv[++sc->i];
		}
		return *opt != NULL ? TOK_OPTION : TOK_CONFIG;
	}
}

int kw_config_parse(struct kw_option *opts, int argc, char **argv, const char *usage,
                    char **positional, int *npositional, char *err, size_t errlen)
{
	static const struct origin flag = {NULL, 0};
	struct scanner sc = {.argc = argc, .argv = argv};
	struct kw_option *o;
	const char *config = NULL, *value;
	bool reset[256] = {false};
	int tok, rc;

	if (npositional)
		*npositional = 0;
	/* Pass 1: --help, --config and the shape of the line, so the file is read before
	 * flags override it. --help and --version win over an unknown option before them
	 * (not over a missing value: `--key --help` stays an error). */
	char first[512] = "";
	while ((tok = scan_next(&sc, opts, &o, &value, err, errlen)) != TOK_END) {
		if (tok < 0 && !sc.unknown)
			return tok;
		if (tok < 0) {
			if (first[0] == '\0')
				snprintf(first, sizeof(first), "%s", err);
			continue;
		}
		if (tok == TOK_HELP) {
			kw_config_usage(opts, usage, stdout);
			return 1;
		}
		if (tok == TOK_VERSION) {
			kw_version_print(stdout, NULL);
			return 1;
		}
		if (tok == TOK_CONFIG)
			config = value;
	}
	if (first[0] != '\0') {
		snprintf(err, errlen, "%s", first);
		return -KW_ECONFIG;
	}
	if (config && (rc = parse_file(opts, config, err, errlen)) < 0)
		return rc < 0 && rc != -ENOMEM ? -KW_ECONFIG : rc;

	sc = (struct scanner){.argc = argc, .argv = argv};
	while ((tok = scan_next(&sc, opts, &o, &value, err, errlen)) != TOK_END) {
		if (tok == TOK_POSITIONAL) {
			if (positional == NULL) {
				snprintf(err, errlen, "unexpected argument '%s'; see --help",
				         value);
				return -KW_ECONFIG;
			}
			positional[(*npositional)++] = (char *)value;
		} else if (tok == TOK_OPTION) {
			size_t idx = (size_t)(o - opts);
			bool dummy = false;
			if ((rc = set(o, value, &flag, true, idx < 256 ? &reset[idx] : &dummy, err,
			              errlen)) < 0)
				return rc;
		}
	}
	for (o = opts; o->name; o++)
		if (o->required && !o->seen) {
			snprintf(err, errlen,
			         "--%s%s%s is required (as a flag or a config key); see --help",
			         o->name, o->arg ? " " : "", o->arg ? o->arg : "");
			return -KW_ECONFIG;
		}
	return 0;
}

int kw_config_errorf(const struct kw_option *opts, const char *name, char *err, size_t errlen,
                     const char *fmt, ...)
{
	static const struct kw_option none = {0};
	const struct kw_option *o = opts != NULL ? opts : &none;
	while (o->name != NULL && strcmp(o->name, name) != 0)
		o++;
	int w = o->name != NULL && o->file != NULL
	            ? snprintf(err, errlen, "%s:%u: %s: ", o->file, o->line, name)
	            : snprintf(err, errlen, "--%s: ", name);
	size_t used = w > 0 && (size_t)w < errlen ? (size_t)w : 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + used, errlen - used, fmt, ap);
	va_end(ap);
	return -KW_ECONFIG;
}

void kw_config_free(struct kw_option *opts)
{
	for (struct kw_option *o = opts; o->name; o++) {
		if (!o->seen)
			continue;
		o->seen = false;
		o->file = NULL;
		o->line = 0;
		if (o->type == KW_OPT_STRING) {
			free(*(char **)o->dest);
			*(char **)o->dest = NULL;
		} else if (o->type == KW_OPT_LIST) {
			free_list(*(char ***)o->dest);
			*(char ***)o->dest = NULL;
		}
	}
}
