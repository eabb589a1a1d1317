/*
 * commands.h - subcommands of `keyway` that live in their own files. Each
 * has the signature of the table in main.c.
 */
#ifndef KEYWAY_CLI_COMMANDS_H
#define KEYWAY_CLI_COMMANDS_H

#include <stdbool.h>

#include "keyway/config.h"

struct subcommand;

/* The exit status of a command given wrong options or arguments. */
#define KW_CLI_EXIT_USAGE 2

/* keyway ref --cert CERT: print the KEYWAY KEY reference PEM for CERT's key. */
int kw_cli_ref(const struct subcommand *sc, int argc, char **argv);
/* keyway ping: ask every keyserver of the provider's settings for a pong. */
int kw_cli_ping(const struct subcommand *sc, int argc, char **argv);
/* keyway quic protect|unprotect|initial|bench: QUIC packet protection (quic.c). */
int kw_cli_quic(const struct subcommand *sc, int argc, char **argv);
/* keyway quic bench (quic_bench.c), called by kw_cli_quic with argv[0] = "bench". */
int kw_cli_quic_bench(int argc, char **argv);

/*
 * kw_cli_options parses the arguments of `keyway NAME` (argv[0] skipped)
 * against opts, with usage for --help, and refuses positional arguments.
 * Returns true when the command is to run; false when it is done, with
 * *status 0 after --help, or KW_CLI_EXIT_USAGE after an error printed to
 * stderr as "keyway NAME: ...".
 */
bool kw_cli_options(struct kw_option *opts, int argc, char **argv, const char *name,
                    const char *usage, int *status);

#endif
