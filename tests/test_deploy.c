/*
 * The Heroku deploy files (app.json, heroku.yml, Procfile, Dockerfile,
 * .dockerignore, docs/heroku.md) against the relay itself: every config
 * var app.json offers is one the relay knows and a value it accepts, the
 * key recipe it gives yields a key that parses, every required variable
 * is documented, and the three places that name the worker's command
 * agree on a program that the build installs on the image's PATH.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "harness.h"
#include "sfrelay/config.h"
#include "sfrelay/jwt.h"

#define MAX_ENV 64

/* Docker's default PATH, which the image inherits (it sets none). */
static const char image_path[] =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static struct json_object *
load_app_json(void)
{
	char *text = file_read("app.json", NULL);
	assert_non_null(text);
	struct json_object *app = json_tokener_parse(text);
	free(text);
	if (app == NULL || !json_object_is_type(app, json_type_object))
		fail_msg("app.json is not a JSON object");
	return app;
}

static struct json_object *
member(struct json_object *obj, const char *key, enum json_type type)
{
	struct json_object *v = NULL;
	if (!json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, type))
		fail_msg("app.json: \"%s\" missing or of the wrong type", key);
	return v;
}

/* app.json's rule: an env entry is required unless it says otherwise. */
static int
env_required(struct json_object *entry)
{
	struct json_object *r = NULL;
	if (json_object_object_get_ex(entry, "required", &r))
		return json_object_get_boolean(r);
	return 1;
}

static const char *
env_string(struct json_object *entry, const char *key)
{
	struct json_object *v = NULL;
	if (!json_object_object_get_ex(entry, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* The configuration reference, as docs/configuration.md holds it. */
static char *
config_table(void)
{
	char *gen = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&gen, &len);
	assert_non_null(f);
	config_print_markdown(f);
	fclose(f);
	return gen;
}

static int
table_has(const char *table, const char *name)
{
	char row[96];
	snprintf(row, sizeof(row), "\n| %s |", name);
	return strstr(table, row) != NULL;
}

static void
test_app_json_shape(void **state)
{
	(void)state;
	struct json_object *app = load_app_json();
	/* heroku.yml is read only on the container stack. */
	assert_string_equal(
	    json_object_get_string(member(app, "stack", json_type_string)),
	    "container");
	struct json_object *formation =
	    member(app, "formation", json_type_object);
	struct json_object *worker =
	    member(formation, "worker", json_type_object);
	int quantity =
	    json_object_get_int(member(worker, "quantity", json_type_int));
	assert_true(quantity >= 1 && quantity <= 2);
	/* Checkpoints must outlive the dyno: a Postgres add-on sets
	 * DATABASE_URL. */
	struct json_object *addons = member(app, "addons", json_type_array);
	int pg = 0;
	for (size_t i = 0; i < json_object_array_length(addons); i++) {
		struct json_object *a = json_object_array_get_idx(addons, i);
		const char *plan = json_object_is_type(a, json_type_string)
		                       ? json_object_get_string(a)
		                       : env_string(a, "plan");
		const char *as = json_object_is_type(a, json_type_object)
		                     ? env_string(a, "as")
		                     : NULL;
		if (plan != NULL &&
		    strncmp(plan, "heroku-postgresql", 17) == 0 &&
		    (as == NULL || strcmp(as, "DATABASE") == 0))
			pg++;
	}
	assert_int_equal(pg, 1);
	json_object_put(app);
}

static void
test_app_json_vars_are_the_relays(void **state)
{
	(void)state;
	struct json_object *app = load_app_json();
	struct json_object *env = member(app, "env", json_type_object);
	char *table = config_table();
	char *guide = file_read("docs/heroku.md", NULL);
	assert_non_null(guide);
	int n = 0, required = 0;
	json_object_object_foreach(env, name, entry)
	{
		n++;
		if (!table_has(table, name))
			fail_msg("app.json offers %s, which the relay does not "
			         "read",
			         name);
		if (!json_object_is_type(entry, json_type_object))
			fail_msg("app.json: %s should be an object", name);
		const char *desc = env_string(entry, "description");
		if (desc == NULL || strlen(desc) < 20)
			fail_msg("app.json: %s has no real description", name);
		const char *value = env_string(entry, "value");
		/* The relay refuses a variable set to "" when its default is
		 * not empty, so an optional entry carries its value. */
		if (!env_required(entry) && (value == NULL || *value == '\0'))
			fail_msg("app.json: optional %s has no value", name);
		if (env_required(entry)) {
			required++;
			char quoted[96];
			snprintf(quoted, sizeof(quoted), "`%s`", name);
			if (strstr(guide, quoted) == NULL)
				fail_msg("docs/heroku.md does not explain "
				         "required %s",
				         name);
		}
	}
	assert_true(n >= 4);
	assert_true(required >= 3);
	free(guide);
	free(table);
	json_object_put(app);
}

/* A fresh RSA key as server.key would hold it, written to path. */
static void
write_rsa_key(const char *path)
{
	EVP_PKEY *pkey = EVP_RSA_gen(2048);
	assert_non_null(pkey);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(
	    PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	EVP_PKEY_free(pkey);
}

/* Runs the awk program app.json tells the user to run on server.key and
 * returns its output (malloc'd). */
static char *
run_key_recipe(const char *desc, const char *key_path)
{
	const char *start = strstr(desc, "awk '");
	if (start == NULL)
		fail_msg("SFDC_JWT_KEY's description gives no awk recipe");
	start += 5;
	const char *end = strchr(start, '\'');
	assert_non_null(end);
	char cmd[1024];
	int w = snprintf(cmd, sizeof(cmd), "awk '%.*s' '%s'",
	                 (int)(end - start), start, key_path);
	if (w < 0 || (size_t)w >= sizeof(cmd))
		fail_msg("the awk recipe is too long");
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char *out = NULL;
	size_t cap = 0, len = 0;
	char buf[1024];
	size_t got;
	while ((got = fread(buf, 1, sizeof(buf), p)) > 0) {
		if (len + got + 1 > cap) {
			cap = (len + got + 1) * 2;
			out = realloc(out, cap);
			assert_non_null(out);
		}
		memcpy(out + len, buf, got);
		len += got;
	}
	assert_int_equal(pclose(p), 0);
	assert_non_null(out);
	out[len] = '\0';
	return out;
}

/*
 * What a Heroku Button deploy hands the relay: app.json's values, the
 * add-on's DATABASE_URL, and for the required entries what a user types,
 * the key pasted as the recipe prints it. That must be a valid jwt set-up
 * once a channel or a polled object is there, and app.json must provide
 * one (a Button deploy cannot set anything afterwards before it starts).
 */
static void
test_button_values_make_a_valid_config(void **state)
{
	(void)state;
	struct json_object *app = load_app_json();
	struct json_object *env = member(app, "env", json_type_object);
	char *dir = harness_tmpdir("deploy");
	char key_path[512];
	snprintf(key_path, sizeof(key_path), "%s/server.key", dir);
	write_rsa_key(key_path);

	char *vars[MAX_ENV + 1] = {0};
	size_t nv = 0;
	char *pasted = NULL;
	json_object_object_foreach(env, name, entry)
	{
		const char *value = env_string(entry, "value");
		char *typed = NULL;
		if (strcmp(name, "SFDC_JWT_KEY") == 0) {
			pasted = run_key_recipe(
			    env_string(entry, "description"), key_path);
			/* One line, as a form field takes it. */
			assert_null(strchr(pasted, '\n'));
			value = pasted;
		} else if (strcmp(name, "SFDC_CLIENT_ID") == 0) {
			value = "3MVG9consumerkeyFromTheConnectedApp";
		} else if (strcmp(name, "SFDC_USERNAME") == 0) {
			value = "relay@example.com";
		} else if (value == NULL) {
			fail_msg("no sample value for required %s", name);
		}
		size_t n = strlen(name) + strlen(value) + 2;
		typed = malloc(n);
		assert_non_null(typed);
		snprintf(typed, n, "%s=%s", name, value);
		assert_true(nv < MAX_ENV - 2);
		vars[nv++] = typed;
	}
	vars[nv++] = strdup("DATABASE_URL=postgres://u1abc:p2secret@"
	                    "ec2-3-1-2-3.compute-1.amazonaws.com:5432/d9db");
	vars[nv++] = strdup("DYNO=worker.1");
	vars[nv] = NULL;

	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	char err[4096] = "";
	int rc = config_load(&cfg, (const char *const *)vars, err, sizeof(err));
	if (rc != 0)
		fail_msg("app.json's values are refused: %s", err);
	assert_string_equal(config_auth_name(cfg.auth), "jwt");
	assert_non_null(cfg.jwt_key);
	char kerr[256] = "";
	struct jwt_key *key = jwt_key_from_pem(cfg.jwt_key, strlen(cfg.jwt_key),
	                                       kerr, sizeof(kerr));
	if (key == NULL)
		fail_msg("the pasted key does not parse: %s", kerr);
	assert_int_equal(jwt_key_bits(key), 2048);
	jwt_key_free(key);
	config_clear(&cfg);

	for (size_t i = 0; i < nv; i++)
		free(vars[i]);
	free(pasted);
	unlink(key_path);
	harness_rmdir(dir, 0);
	free(dir);
	json_object_put(app);
}

/* The value of a key path ("build.docker.worker") in the YAML subset
 * heroku.yml uses: nested maps by indentation, scalar values, comments.
 * Returns a malloc'd string, or NULL when the path is not there. */
static char *
yaml_get(const char *text, const char *path)
{
	char seg[64];
	const char *p = path;
	const char *line = text;
	int parent_indent = -1;
	while (*p != '\0') {
		size_t n = strcspn(p, ".");
		assert_true(n < sizeof(seg));
		memcpy(seg, p, n);
		seg[n] = '\0';
		p += n;
		int last = *p == '\0';
		if (!last)
			p++;
		int child_indent = -1, found = 0;
		while (*line != '\0' && !found) {
			const char *eol = strchr(line, '\n');
			size_t len = eol ? (size_t)(eol - line) : strlen(line);
			const char *next = eol ? eol + 1 : line + len;
			int indent = (int)strspn(line, " ");
			const char *k = line + indent;
			if (k >= line + len || *k == '#') {
				line = next;
				continue;
			}
			if (indent <= parent_indent)
				return NULL; /* the parent's block ended */
			if (child_indent < 0)
				child_indent = indent;
			if (indent == child_indent && strncmp(k, seg, n) == 0 &&
			    k[n] == ':') {
				found = 1;
				parent_indent = indent;
				if (last) {
					const char *v = k + n + 1;
					v += strspn(v, " ");
					size_t vl = (size_t)(line + len - v);
					while (vl > 0 && v[vl - 1] == ' ')
						vl--;
					return strndup(v, vl);
				}
			}
			line = next;
		}
		if (!found)
			return NULL;
	}
	return NULL;
}

static void
test_yaml_reader(void **state)
{
	(void)state;
	const char *y = "# c\nbuild:\n  docker:\n    worker: Dockerfile\n"
	                "  other: x\nrun:\n  worker: sfrelay  \n";
	char *v = yaml_get(y, "build.docker.worker");
	assert_string_equal(v, "Dockerfile");
	free(v);
	v = yaml_get(y, "run.worker");
	assert_string_equal(v, "sfrelay");
	free(v);
	/* A key of another block is not found through the wrong parent. */
	assert_null(yaml_get(y, "build.worker"));
	assert_null(yaml_get(y, "run.docker.worker"));
	assert_null(yaml_get(y, "release"));
}

/* The first word of the Procfile's worker command (malloc'd). */
static char *
procfile_worker(void)
{
	char *text = file_read("Procfile", NULL);
	assert_non_null(text);
	char *found = NULL;
	int workers = 0;
	for (char *l = strtok(text, "\n"); l != NULL; l = strtok(NULL, "\n")) {
		if (strncmp(l, "worker:", 7) != 0)
			continue;
		workers++;
		const char *c = l + 7 + strspn(l + 7, " ");
		found = strndup(c, strcspn(c, " "));
	}
	assert_int_equal(workers, 1);
	free(text);
	return found;
}

/* The Dockerfile's final stage: its CMD's program and its USER. */
static void
dockerfile_final(char **cmd, char **user)
{
	char *text = file_read("Dockerfile", NULL);
	assert_non_null(text);
	*cmd = NULL;
	*user = NULL;
	for (char *l = strtok(text, "\n"); l != NULL; l = strtok(NULL, "\n")) {
		if (strncmp(l, "FROM ", 5) == 0) {
			free(*cmd);
			free(*user);
			*cmd = NULL;
			*user = NULL;
		} else if (strncmp(l, "USER ", 5) == 0) {
			free(*user);
			*user = strdup(l + 5);
		} else if (strncmp(l, "CMD ", 4) == 0) {
			struct json_object *a = json_tokener_parse(l + 4);
			if (a == NULL ||
			    !json_object_is_type(a, json_type_array) ||
			    json_object_array_length(a) < 1)
				fail_msg("Dockerfile: CMD is not in exec form");
			free(*cmd);
			*cmd = strdup(json_object_get_string(
			    json_object_array_get_idx(a, 0)));
			json_object_put(a);
		}
	}
	free(text);
}

static void
test_worker_command_agrees_and_is_installed(void **state)
{
	(void)state;
	char *yml = file_read("heroku.yml", NULL);
	assert_non_null(yml);
	char *dockerfile = yaml_get(yml, "build.docker.worker");
	assert_non_null(dockerfile);
	assert_int_equal(access(dockerfile, R_OK), 0);
	char *run = yaml_get(yml, "run.worker");
	assert_non_null(run);
	char *proc = procfile_worker();
	assert_non_null(proc);
	char *cmd = NULL, *user = NULL;
	dockerfile_final(&cmd, &user);
	assert_non_null(cmd);
	if (strcmp(run, proc) != 0 || strcmp(run, cmd) != 0)
		fail_msg("worker command: heroku.yml %s, Procfile %s, "
		         "Dockerfile %s",
		         run, proc, cmd);
	/* Heroku never runs a container as root; a USER keeps a local run
	 * the same. */
	assert_non_null(user);
	assert_string_not_equal(user, "root");
	assert_string_not_equal(user, "0");

	/* The program the build installs: `make install` puts
	 * $(PREFIX)/bin/sfrelay, with the PREFIX of the build script; that
	 * directory must be on the image's PATH under the command's name. */
	char *mk = file_read("Makefile", NULL);
	assert_non_null(mk);
	assert_non_null(strstr(mk, "$(DESTDIR)$(PREFIX)/bin/sfrelay"));
	char *script = file_read("scripts/heroku-build.sh", NULL);
	assert_non_null(script);
	const char *pl = strstr(script, "\nPREFIX=");
	assert_non_null(pl);
	pl += 8;
	char *prefix = strndup(pl, strcspn(pl, "\n"));
	char installed[256];
	snprintf(installed, sizeof(installed), "%s/bin/sfrelay", prefix);
	char bindir[256];
	snprintf(bindir, sizeof(bindir), "%s/bin", prefix);
	if (strchr(cmd, '/') != NULL) {
		assert_string_equal(cmd, installed);
	} else {
		assert_string_equal(cmd, "sfrelay");
		char path[sizeof(image_path) + 2];
		snprintf(path, sizeof(path), ":%s:", image_path);
		char needle[sizeof(bindir) + 2];
		snprintf(needle, sizeof(needle), ":%s:", bindir);
		if (strstr(path, needle) == NULL)
			fail_msg("%s is not on the image's PATH", bindir);
	}
	/* And the Dockerfile builds with that script. */
	char *df = file_read(dockerfile, NULL);
	assert_non_null(df);
	assert_non_null(strstr(df, "scripts/heroku-build.sh build "));
	assert_non_null(strstr(df, "heroku-build.sh runtime-deps"));

	free(df);
	free(prefix);
	free(script);
	free(mk);
	free(cmd);
	free(user);
	free(proc);
	free(run);
	free(dockerfile);
	free(yml);
}

/* A developer's build/ (objects of another machine), the git history and
 * key files must never reach the image. */
static void
test_dockerignore_keeps_out_local_files(void **state)
{
	(void)state;
	char *ign = file_read(".dockerignore", NULL);
	assert_non_null(ign);
	static const char *const must[] = {"\nbuild\n", "\n.git\n",
	                                   "\n**/*.key\n", "\n.sfrelay\n"};
	size_t n = strlen(ign);
	char *framed = malloc(n + 3);
	assert_non_null(framed);
	snprintf(framed, n + 3, "\n%s\n", ign);
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		if (strstr(framed, must[i]) == NULL)
			fail_msg(".dockerignore lacks %s", must[i] + 1);
	free(framed);
	free(ign);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_app_json_shape),
		cmocka_unit_test(test_app_json_vars_are_the_relays),
		cmocka_unit_test(test_button_values_make_a_valid_config),
		cmocka_unit_test(test_yaml_reader),
		cmocka_unit_test(test_worker_command_agrees_and_is_installed),
		cmocka_unit_test(test_dockerignore_keeps_out_local_files),
	};
	return cmocka_run_group_tests_name("deploy", tests, NULL, NULL);
}
