/* The configuration reference in docs/ is generated from config.c's
 * table (make docs); this keeps the checked-in copy from drifting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "sfrelay/config.h"

static void
test_configuration_md_matches_table(void **state)
{
	(void)state;
	char *gen = NULL;
	size_t gen_len = 0;
	FILE *f = open_memstream(&gen, &gen_len);
	assert_non_null(f);
	config_print_markdown(f);
	fclose(f);
	size_t doc_len = 0;
	char *doc = file_read("docs/configuration.md", &doc_len);
	assert_non_null(doc);
	if (doc_len != gen_len || memcmp(doc, gen, gen_len) != 0)
		fail_msg("docs/configuration.md is stale: run `make docs`");
	free(doc);
	free(gen);
}

static void
test_readme_names_every_variable(void **state)
{
	(void)state;
	char *gen = NULL;
	size_t gen_len = 0;
	FILE *f = open_memstream(&gen, &gen_len);
	assert_non_null(f);
	config_print_markdown(f);
	fclose(f);
	char *readme = file_read("README.md", NULL);
	assert_non_null(readme);
	/* Every table row's variable must be in the README's table too. */
	int rows = 0;
	for (char *p = strstr(gen, "\n| "); p != NULL; p = strstr(p + 1, "\n| ")) {
		char name[64];
		int end = 0;
		if (sscanf(p, "\n| %63[A-Z_] |%n", name, &end) != 1 ||
		    end == 0)
			continue;
		char quoted[80];
		snprintf(quoted, sizeof(quoted), "`%s`", name);
		if (strstr(readme, quoted) == NULL)
			fail_msg("README.md does not document %s", name);
		rows++;
	}
	assert_true(rows >= 10);
	free(readme);
	free(gen);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_configuration_md_matches_table),
		cmocka_unit_test(test_readme_names_every_variable),
	};
	return cmocka_run_group_tests_name("docs", tests, NULL, NULL);
}
