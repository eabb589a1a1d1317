/*
 * keyway/config.h - one configuration format for every program.
 *
 * Options are declared once in a table. They come from `--name value` or
 * `--name=value` flags and from `--config FILE`, whose lines are
 * `name = value` with `#` comments (a `#` at the start or after whitespace;
 * a value in double quotes keeps its `#`); flags override the file whatever
 * their order. The rules every program shares:
 *  - numbers are decimal: 010 is ten (no octal, no hex, no sign);
 *  - booleans are on|off, true|false or yes|no, in any case;
 *  - an option's value is never another option: `--key --help` is an error
 *    (`--key=--help` gives key that value);
 *  - an error about a value from a config file starts with FILE:LINE: and
 *    the key, e.g.  keywayd.conf:2: listen: '24543' ...;  from a flag, with
 *    --key:. Programs checking a value themselves use kw_config_errorf.
 */
#ifndef KEYWAY_CONFIG_H
#define KEYWAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kw_opt_type {
	KW_OPT_STRING, /* char **: strdup'ed value; a default may be a literal (never freed) */
	KW_OPT_UINT,   /* unsigned *: decimal, within [min, max] */
	KW_OPT_BOOL,   /* bool *: on|off|true|false|yes|no; on the command line a bare flag
	                  sets true unless the option has an arg (e.g. "on|off"), which then
	                  takes the next argument as its value */
	KW_OPT_ENUM,   /* int *: index into choices (NULL-terminated) */
	KW_OPT_LIST,   /* char ***: repeatable flag / comma-separated list, NULL-terminated;
	                  the first value given replaces the default */
};

struct kw_option {
	const char *name; /* long flag name without dashes; also the config key */
	enum kw_opt_type type;
	void *dest;
	const char *arg;            /* placeholder shown in --help, e.g. "ADDR:PORT" */
	const char *help;           /* one line */
	unsigned min, max;          /* KW_OPT_UINT bounds (max 0 means UINT_MAX) */
	const char *const *choices; /* KW_OPT_ENUM */
	bool required;
	bool whole;        /* KW_OPT_LIST: each value is one element, commas included (URIs) */
	const char *alias; /* an older name also accepted as a flag and a key (NULL: none) */
	bool seen;         /* set by the parser */
	const char *file;  /* set by the parser: the config file the value came from, */
	unsigned line;     /* and its line; NULL when from a flag (or a default) */
};

/*
 * One table entry per line. Further designated initializers may follow the
 * fixed arguments, e.g. KW_OPT_STR("cert", &o.cert, "FILE", "...", .required = true).
 */
#define KW_OPT_STR(n, d, a, h, ...)                                                                \
	{                                                                                          \
		.name = (n), .type = KW_OPT_STRING, .dest = (d), .arg = (a), .help = (h),          \
		__VA_ARGS__                                                                        \
	}
#define KW_OPT_NUM(n, d, a, h, lo, hi, ...)                                                        \
	{                                                                                          \
		.name = (n), .type = KW_OPT_UINT, .dest = (d), .arg = (a), .help = (h),            \
		.min = (lo), .max = (hi), __VA_ARGS__                                              \
	}
#define KW_OPT_FLAG(n, d, h, ...)                                                                  \
	{                                                                                          \
		.name = (n), .type = KW_OPT_BOOL, .dest = (d), .help = (h), __VA_ARGS__            \
	}
#define KW_OPT_ONOFF(n, d, h, ...)                                                                 \
	{                                                                                          \
		.name = (n), .type = KW_OPT_BOOL, .dest = (d), .arg = "on|off", .help = (h),       \
		__VA_ARGS__                                                                        \
	}
#define KW_OPT_CHOICE(n, d, a, h, ch, ...)                                                         \
	{                                                                                          \
		.name = (n), .type = KW_OPT_ENUM, .dest = (d), .arg = (a), .help = (h),            \
		.choices = (ch), __VA_ARGS__                                                       \
	}
#define KW_OPT_MANY(n, d, a, h, ...)                                                               \
	{                                                                                          \
		.name = (n), .type = KW_OPT_LIST, .dest = (d), .arg = (a), .help = (h),            \
		__VA_ARGS__                                                                        \
	}
#define KW_OPT_END                                                                                 \
	{                                                                                          \
		0                                                                                  \
	}

/*
 * kw_config_parse handles argv (argv[0] skipped) against opts (terminated by
 * an entry with name == NULL). `--config FILE` and `--help` are built in.
 * Non-option arguments are stored in positional, an array with room for
 * argc entries (NULL to refuse them), their count in *npositional. On error, a message naming the
 * file and line (or the flag) and the fix is written to err. Returns 0, 1 if --help was printed to
 * stdout, or -KW_ECONFIG.
 * `--version` is built in too: it prints kw_version_print's line and returns 1.
 */
int kw_config_parse(struct kw_option *opts, int argc, char **argv, const char *usage,
                    char **positional, int *npositional, char *err, size_t errlen);

/*
 * kw_config_errorf writes an error about option `name`'s value into err,
 * starting with where that value came from ("FILE:LINE: name: " or
 * "--name: ") and going on with the printf-style message. For checks a
 * program makes after kw_config_parse (addresses, paths). opts may be NULL
 * (the value is then taken to be a flag's). Returns -KW_ECONFIG.
 */
int kw_config_errorf(const struct kw_option *opts, const char *name, char *err, size_t errlen,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* kw_config_parse_bool reads on|off|true|false|yes|no (any case); 0 or -EINVAL. */
int kw_config_parse_bool(const char *text, bool *out);

/*
 * kw_config_parse_uint reads a decimal number within [min, max] (digits
 * only: no sign, space or base prefix; 010 is ten). 0, -EINVAL (not a
 * number) or -ERANGE.
 */
int kw_config_parse_uint(const char *text, unsigned min, unsigned max, unsigned *out);

/* kw_config_usage prints usage and the option table to stream f (a FILE *). */
void kw_config_usage(const struct kw_option *opts, const char *usage, void *f);

/* kw_config_free frees strings and lists the parser allocated (defaults are left alone). */
void kw_config_free(struct kw_option *opts);

#endif
