/*
 * commands.h - subcommands of `keyway` that live in their own files. Each
 * has the signature of the table in main.c.
 */
#ifndef KEYWAY_CLI_COMMANDS_H
#define KEYWAY_CLI_COMMANDS_H

struct subcommand;

/* keyway ref --cert CERT: print the KEYWAY KEY reference PEM for CERT's key. */
int kw_cli_ref(const struct subcommand *sc, int argc, char **argv);
/* keyway ping: ask every keyserver of the provider's settings for a pong. */
int kw_cli_ping(const struct subcommand *sc, int argc, char **argv);
/* keyway quic protect|unprotect|initial|bench: QUIC packet protection (quic.c). */
int kw_cli_quic(const struct subcommand *sc, int argc, char **argv);
/* keyway quic bench (quic_bench.c), called by kw_cli_quic with argv[0] = "bench". */
int kw_cli_quic_bench(int argc, char **argv);

#endif
