/* options.c - option handling shared by the subcommands in their own files (see commands.h). */
#include <stdio.h>

#include "commands.h"

bool kw_cli_options(struct kw_option *opts, int argc, char **argv, const char *name,
                    const char *usage, int *status)
{
	char err[512];
	int npos = 0;
	int rc = kw_config_parse(opts, argc, argv, usage, NULL, &npos, err, sizeof(err));

	*status = 0;
	if (rc == 1)
		return false;
	if (rc < 0) {
		fprintf(stderr, "keyway %s: %s\n", name, err);
		*status = KW_CLI_EXIT_USAGE;
		return false;
	}
	return true;
}
