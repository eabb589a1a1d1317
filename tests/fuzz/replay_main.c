/*
 * replay_main.c - runs a libFuzzer harness over files without libFuzzer, so
 * the committed corpus is replayed by CTest with any compiler. Arguments are
 * files or directories (every regular file inside, not recursive).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;
	int rc = -1;

	if (f == NULL)
		goto out;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	/* One spare byte so an empty file still gets a valid pointer. */
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
		goto out;
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	rc = 0;
out:
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
	free(buf);
	if (f != NULL)
		fclose(f);
	return rc;
}

int main(int argc, char **argv)
{
	int files = 0, failed = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			failed += run_file(argv[i]) < 0;
			files++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		if (d == NULL) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char path[4096];
			if (snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name) >=
			    (int)sizeof(path))
				continue;
			if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
				continue;
			failed += run_file(path) < 0;
			files++;
		}
		closedir(d);
	}
	printf("replayed %d input(s)\n", files);
	/* An empty corpus means a wrong path, not a pass. */
	return files == 0 || failed ? 1 : 0;
}
