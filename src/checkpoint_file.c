/*
 * The file checkpoint backend: the whole state in <dir>/checkpoints.json.
 *
 * Format (UTF-8 JSON, one object):
 *
 *   {
 *     "version": 1,
 *     "positions": {
 *       "/topic/X": { "position": "1234",
 *                     "created": "2026-11-26T19:27:53.000Z" }
 *     },
 *     "gaps": [
 *       { "key": "/topic/X", "after_position": "17",
 *         "after_created": "2026-11-26T19:20:01.000Z",
 *         "detected": "2026-11-27T08:00:00.000Z" }
 *     ]
 *   }
 *
 *  - "version" is the integer 1; any other value is refused, so a newer
 *    relay's file is never misread by an older one.
 *  - "positions" (required) maps each key to an object whose "position" is
 *    a string kept exactly as Salesforce gave it (never a number: replay
 *    ids and ids do not survive a round trip through a double), and whose
 *    "created" is a string, null or absent.
 *  - "gaps" (optional, absent = none) is an array of objects with string
 *    "key", "after_position" and "detected", and "after_created" a string,
 *    null or absent.
 *  - Unknown members are ignored, so a later version 1 can add some.
 *
 * Anything else (unreadable file, invalid JSON, wrong types, a file over
 * CPFILE_MAX_BYTES, nesting deeper than CPFILE_MAX_DEPTH) is a load error
 * naming the file: a broken checkpoint must stop the relay, not silently
 * restart it from "now" and lose events. A missing file is a first run.
 *
 * Saving replaces the file atomically: checkpoints.json.tmp is written,
 * fsync'ed and renamed over checkpoints.json, then the directory is
 * fsync'ed so the rename itself survives a power cut. A crash at any point
 * leaves either the old or the new file; a leftover .tmp is never read and
 * is overwritten by the next save.
 *
 * The directory holds positions that decide what is replayed, so it is
 * private: created 0700 when missing (only the last component; the parent
 * must exist), and an existing directory with any group or other
 * permission bit is tightened to 0700 with chmod. A sticky directory such
 * as /tmp is shared by design and is refused rather than changed. The
 * file is 0600 whatever the umask.
 */
#include "sfrelay/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#define CPFILE_NAME "checkpoints.json"
#define CPFILE_TMP_SUFFIX ".tmp"
#define CPFILE_VERSION 1
#define CPFILE_MAX_BYTES (16L * 1024 * 1024)
/* The format nests three levels; a little room, but no deep recursion. */
#define CPFILE_MAX_DEPTH 8
/* S_ISVTX is an XSI name, hidden by _POSIX_C_SOURCE; the bit is the same
 * everywhere. */
#define CPFILE_STICKY 01000

struct cpfile {
	char *dir;
	char *path; /* dir/checkpoints.json */
	char *tmp;  /* dir/checkpoints.json.tmp */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* "<what> <path>: <strerror(e)>", returning -1 for the caller. */
static int
fail_errno(char *err, size_t errlen, const char *what, const char *path, int e)
{
	set_err(err, errlen, "%s %s: %s", what, path, strerror(e));
	return -1;
}

static char *
xstrcat3(const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
	char *s = malloc(la + lb + lc + 1);
	if (s == NULL)
		abort(); /* out of memory is fatal by design (STYLE.md) */
	memcpy(s, a, la);
	memcpy(s + la, b, lb);
	memcpy(s + la + lb, c, lc + 1);
	return s;
}

static void
cpfile_free(void *impl)
{
	struct cpfile *f = impl;
	if (f == NULL)
		return;
	free(f->dir);
	free(f->path);
	free(f->tmp);
	free(f);
}

static struct cpfile *
cpfile_new(const char *dir)
{
	struct cpfile *f = calloc(1, sizeof(*f));
	if (f == NULL)
		abort();
	f->dir = xstrcat3(dir, "", "");
	/* "state/" and "state" are one directory; keep messages tidy. */
	size_t n = strlen(f->dir);
	while (n > 1 && f->dir[n - 1] == '/')
		f->dir[--n] = '\0';
	f->path =
	    xstrcat3(f->dir, strcmp(f->dir, "/") == 0 ? "" : "/", CPFILE_NAME);
	f->tmp = xstrcat3(f->path, CPFILE_TMP_SUFFIX, "");
	return f;
}

/* Only the last component is created: a missing parent is more likely a
 * typo than a request for a tree. */
static int
dir_create(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) != 0) {
		if (errno == EEXIST)
			return 0;
		return fail_errno(err, errlen,
		                  "cannot create checkpoint directory", dir,
		                  errno);
	}
	/* mkdir's mode went through the umask; make it exactly 0700. */
	if (chmod(dir, 0700) != 0)
		return fail_errno(
		    err, errlen, "cannot set mode 0700 on checkpoint directory",
		    dir, errno);
	return 0;
}

static int
dir_tighten(const char *dir, const struct stat *st, char *err, size_t errlen)
{
	if ((st->st_mode & 077) == 0)
		return 0;
	if (st->st_mode & CPFILE_STICKY) {
		set_err(err, errlen,
		        "checkpoint directory %s is shared (sticky bit); "
		        "use a private directory inside it",
		        dir);
		return -1;
	}
	if (chmod(dir, 0700) != 0)
		return fail_errno(
		    err, errlen, "cannot set mode 0700 on checkpoint directory",
		    dir, errno);
	return 0;
}

static int
dir_prepare(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	if (stat(dir, &st) != 0 && errno == ENOENT &&
	    dir_create(dir, err, errlen) != 0)
		return -1;
	if (stat(dir, &st) != 0)
		return fail_errno(
		    err, errlen, "cannot use checkpoint directory", dir, errno);
	if (!S_ISDIR(st.st_mode)) {
		set_err(err, errlen, "checkpoint directory %s: not a directory",
		        dir);
		return -1;
	}
	if (access(dir, W_OK | X_OK) != 0)
		return fail_errno(err, errlen,
		                  "cannot write in checkpoint directory", dir,
		                  errno);
	return dir_tighten(dir, &st, err, errlen);
}

void *
checkpoint_file_open(const char *dir, char *err, size_t errlen)
{
	if (dir == NULL || *dir == '\0') {
		set_err(err, errlen, "checkpoint directory: empty path");
		return NULL;
	}
	struct cpfile *f = cpfile_new(dir);
	if (dir_prepare(f->dir, err, errlen) != 0) {
		cpfile_free(f);
		return NULL;
	}
	return f;
}

/* ---- load ---- */

/* Reads up to cap bytes; *n < cap means the end of the file was reached. */
static int
read_upto(int fd, char *buf, size_t cap, size_t *n)
{
	*n = 0;
	while (*n < cap) {
		ssize_t r = read(fd, buf + *n, cap - *n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		*n += (size_t)r;
	}
	return 0;
}

/* Checks what fd is and reads it whole into a NUL-terminated buffer. */
static char *
fd_slurp(int fd, const char *path, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	if (fstat(fd, &st) != 0) {
		fail_errno(err, errlen, "cannot read", path, errno);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		set_err(err, errlen, "cannot read %s: not a regular file",
		        path);
		return NULL;
	}
	if (st.st_size > CPFILE_MAX_BYTES) {
		set_err(err, errlen, "%s: too large (%lld bytes, limit %ld)",
		        path, (long long)st.st_size, CPFILE_MAX_BYTES);
		return NULL;
	}
	/* One byte more than fstat said, to notice a file that grew. */
	size_t size = (size_t)st.st_size, n = 0;
	char *buf = malloc(size + 2);
	if (buf == NULL)
		abort();
	if (read_upto(fd, buf, size + 1, &n) != 0 || n > size) {
		if (n > size)
			set_err(err, errlen, "%s: changed while being read",
			        path);
		else
			fail_errno(err, errlen, "cannot read", path, errno);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* The file's text, or NULL with *missing set when it does not exist (a
 * first run), or NULL with err. */
static char *
file_slurp(const char *path, size_t *len, int *missing, char *err,
           size_t errlen)
{
	*missing = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			*missing = 1;
		else
			fail_errno(err, errlen, "cannot read", path, errno);
		return NULL;
	}
	char *text = fd_slurp(fd, path, len, err, errlen);
	close(fd);
	return text;
}

static int
only_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return 0;
	return 1;
}

static struct json_object *
parse_text(const char *path, const char *text, size_t len, char *err,
           size_t errlen)
{
	struct json_tokener *tok = json_tokener_new_ex(CPFILE_MAX_DEPTH);
	if (tok == NULL)
		abort();
	/* len + 1 passes the NUL: the input ends here, numbers included. */
	struct json_object *root =
	    json_tokener_parse_ex(tok, text, (int)len + 1);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	if (root == NULL)
		set_err(err, errlen, "%s: invalid JSON at byte %zu: %s", path,
		        end, json_tokener_error_desc(jerr));
	else if (end < len && !only_space(text + end, len - end)) {
		set_err(err, errlen,
		        "%s: invalid JSON at byte %zu: data after the object",
		        path, end);
		json_object_put(root);
		root = NULL;
	}
	json_tokener_free(tok);
	return root;
}

/* A string member: 0 and *out set (NULL when absent or null and
 * optional), or -1 when it has the wrong type or is missing. */
static int
member_string(struct json_object *obj, const char *name, int optional,
              const char **out)
{
	struct json_object *v = NULL;
	*out = NULL;
	if (!json_object_object_get_ex(obj, name, &v) || v == NULL)
		return optional ? 0 : -1;
	if (!json_object_is_type(v, json_type_string))
		return -1;
	*out = json_object_get_string(v);
	return 0;
}

static int
check_version(const char *path, struct json_object *root, char *err,
              size_t errlen)
{
	struct json_object *v = NULL;
	if (!json_object_is_type(root, json_type_object)) {
		set_err(err, errlen, "%s: not a JSON object", path);
		return -1;
	}
	if (!json_object_object_get_ex(root, "version", &v) ||
	    !json_object_is_type(v, json_type_int)) {
		set_err(err, errlen,
		        "%s: \"version\" is missing or not an integer", path);
		return -1;
	}
	if (json_object_get_int64(v) != CPFILE_VERSION) {
		set_err(err, errlen,
		        "%s: unsupported version %lld (expected %d)", path,
		        (long long)json_object_get_int64(v), CPFILE_VERSION);
		return -1;
	}
	return 0;
}

static int
decode_entry(const char *path, const char *key, struct json_object *v,
             struct checkpoint_entry *e, char *err, size_t errlen)
{
	e->key = key;
	if (!json_object_is_type(v, json_type_object)) {
		set_err(err, errlen,
		        "%s: \"positions\" entry \"%s\" is not an object", path,
		        key);
		return -1;
	}
	if (member_string(v, "position", 0, &e->position) != 0) {
		set_err(
		    err, errlen,
		    "%s: \"positions\" entry \"%s\": \"position\" is missing "
		    "or not a string",
		    path, key);
		return -1;
	}
	if (member_string(v, "created", 1, &e->created) != 0) {
		set_err(err, errlen,
		        "%s: \"positions\" entry \"%s\": \"created\" is not a "
		        "string",
		        path, key);
		return -1;
	}
	return 0;
}

/* Fills *entries (malloc'd; strings borrowed from root). */
static int
decode_positions(const char *path, struct json_object *root,
                 struct checkpoint_entry **entries, size_t *n, char *err,
                 size_t errlen)
{
	struct json_object *pos = NULL;
	if (!json_object_object_get_ex(root, "positions", &pos) ||
	    !json_object_is_type(pos, json_type_object)) {
		set_err(err, errlen,
		        "%s: \"positions\" is missing or not an object", path);
		return -1;
	}
	size_t count = (size_t)json_object_object_length(pos);
	*entries = calloc(count + 1, sizeof(**entries));
	if (*entries == NULL)
		abort();
	struct json_object_iterator it = json_object_iter_begin(pos);
	struct json_object_iterator end = json_object_iter_end(pos);
	for (*n = 0; !json_object_iter_equal(&it, &end);
	     json_object_iter_next(&it), (*n)++) {
		if (decode_entry(path, json_object_iter_peek_name(&it),
		                 json_object_iter_peek_value(&it),
		                 &(*entries)[*n], err, errlen) != 0)
			return -1;
	}
	return 0;
}

static int
decode_gap(const char *path, size_t i, struct json_object *v,
           struct checkpoint_gap *g, char *err, size_t errlen)
{
	static const char *const required[] = {"key", "after_position",
	                                       "detected"};
	const char **slots[] = {&g->key, &g->after_position, &g->detected};
	if (!json_object_is_type(v, json_type_object)) {
		set_err(err, errlen, "%s: \"gaps\"[%zu] is not an object", path,
		        i);
		return -1;
	}
	for (size_t k = 0; k < 3; k++) {
		if (member_string(v, required[k], 0, slots[k]) != 0) {
			set_err(err, errlen,
			        "%s: \"gaps\"[%zu]: \"%s\" is missing or not a "
			        "string",
			        path, i, required[k]);
			return -1;
		}
	}
	if (member_string(v, "after_created", 1, &g->after_created) != 0) {
		set_err(err, errlen,
		        "%s: \"gaps\"[%zu]: \"after_created\" is not a string",
		        path, i);
		return -1;
	}
	return 0;
}

/* Fills *gaps (malloc'd; strings borrowed from root). */
static int
decode_gaps(const char *path, struct json_object *root,
            struct checkpoint_gap **gaps, size_t *n, char *err, size_t errlen)
{
	struct json_object *arr = NULL;
	*n = 0;
	if (!json_object_object_get_ex(root, "gaps", &arr) || arr == NULL)
		return 0;
	if (!json_object_is_type(arr, json_type_array)) {
		set_err(err, errlen, "%s: \"gaps\" is not an array", path);
		return -1;
	}
	size_t count = json_object_array_length(arr);
	*gaps = calloc(count + 1, sizeof(**gaps));
	if (*gaps == NULL)
		abort();
	for (; *n < count; (*n)++) {
		if (decode_gap(path, *n, json_object_array_get_idx(arr, *n),
		               &(*gaps)[*n], err, errlen) != 0)
			return -1;
	}
	return 0;
}

/* Checks root and hands the state it holds to fn. */
static int
deliver(const char *path, struct json_object *root, checkpoint_load_fn *fn,
        void *arg, char *err, size_t errlen)
{
	struct checkpoint_entry *entries = NULL;
	struct checkpoint_gap *gaps = NULL;
	struct checkpoint_state st = {0};
	int rc = -1;
	if (check_version(path, root, err, errlen) != 0 ||
	    decode_positions(path, root, &entries, &st.nentries, err, errlen) !=
	        0 ||
	    decode_gaps(path, root, &gaps, &st.ngaps, err, errlen) != 0)
		goto out;
	st.entries = entries;
	st.gaps = gaps;
	if (fn(arg, &st) != 0) {
		set_err(err, errlen, "%s: the loaded state was rejected", path);
		goto out;
	}
	rc = 0;
out:
	free(entries);
	free(gaps);
	return rc;
}

static int
cpfile_load(void *impl, checkpoint_load_fn *fn, void *arg, char *err,
            size_t errlen)
{
	struct cpfile *f = impl;
	size_t len = 0;
	int missing = 0;
	char *text = file_slurp(f->path, &len, &missing, err, errlen);
	if (text == NULL && missing) {
		struct checkpoint_state empty = {0};
		if (fn(arg, &empty) == 0)
			return 0;
		set_err(err, errlen, "%s: the empty state was rejected",
		        f->path);
		return -1;
	}
	if (text == NULL)
		return -1;
	struct json_object *root = parse_text(f->path, text, len, err, errlen);
	free(text);
	if (root == NULL)
		return -1;
	int rc = deliver(f->path, root, fn, arg, err, errlen);
	json_object_put(root);
	return rc;
}

/* ---- save ---- */

static struct json_object *
jstring(const char *s)
{
	struct json_object *o = json_object_new_string(s);
	if (o == NULL)
		abort();
	return o;
}

static void
jput(struct json_object *obj, const char *key, struct json_object *v)
{
	if (json_object_object_add(obj, key, v) != 0)
		abort();
}

static struct json_object *
jobject(void)
{
	struct json_object *o = json_object_new_object();
	if (o == NULL)
		abort();
	return o;
}

static struct json_object *
encode_positions(const struct checkpoint_state *st)
{
	struct json_object *pos = jobject();
	for (size_t i = 0; i < st->nentries; i++) {
		const struct checkpoint_entry *e = &st->entries[i];
		struct json_object *o = jobject();
		jput(o, "position", jstring(e->position));
		if (e->created != NULL)
			jput(o, "created", jstring(e->created));
		jput(pos, e->key, o);
	}
	return pos;
}

static struct json_object *
encode_gaps(const struct checkpoint_state *st)
{
	struct json_object *arr = json_object_new_array();
	if (arr == NULL)
		abort();
	for (size_t i = 0; i < st->ngaps; i++) {
		const struct checkpoint_gap *g = &st->gaps[i];
		struct json_object *o = jobject();
		jput(o, "key", jstring(g->key));
		jput(o, "after_position", jstring(g->after_position));
		if (g->after_created != NULL)
			jput(o, "after_created", jstring(g->after_created));
		jput(o, "detected", jstring(g->detected));
		if (json_object_array_add(arr, o) != 0)
			abort();
	}
	return arr;
}

static struct json_object *
encode_state(const struct checkpoint_state *st)
{
	struct json_object *root = jobject();
	struct json_object *v = json_object_new_int(CPFILE_VERSION);
	if (v == NULL)
		abort();
	jput(root, "version", v);
	jput(root, "positions", encode_positions(st));
	jput(root, "gaps", encode_gaps(st));
	return root;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Writes and syncs the temp file; on failure it is removed. */
static int
write_tmp(const struct cpfile *f, const char *text, size_t len, char *err,
          size_t errlen)
{
	/* O_NOFOLLOW: never write through a link planted at the temp name. */
	int fd =
	    open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	         0600);
	if (fd < 0)
		return fail_errno(err, errlen, "cannot write", f->tmp, errno);
	/* The mode given to open went through the umask. */
	if (fchmod(fd, 0600) != 0 || write_all(fd, text, len) != 0 ||
	    write_all(fd, "\n", 1) != 0 || fsync(fd) != 0) {
		int e = errno;
		close(fd);
		unlink(f->tmp);
		return fail_errno(err, errlen, "cannot write", f->tmp, e);
	}
	/* Some file systems (NFS) report a failed write only at close. */
	if (close(fd) != 0) {
		int e = errno;
		unlink(f->tmp);
		return fail_errno(err, errlen, "cannot write", f->tmp, e);
	}
	return 0;
}

/* Makes the rename durable. */
static int
sync_dir(const char *dir, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return fail_errno(err, errlen, "cannot sync directory", dir,
		                  errno);
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	/* Some file systems cannot sync a directory at all (EINVAL, EBADF):
	 * the rename is then as durable as they allow. */
	if (rc != 0 && e != EINVAL && e != EBADF)
		return fail_errno(err, errlen, "cannot sync directory", dir, e);
	return 0;
}

static int
cpfile_save(void *impl, const struct checkpoint_state *st, char *err,
            size_t errlen)
{
	struct cpfile *f = impl;
	struct json_object *root = encode_state(st);
	size_t len = 0;
	const char *text = json_object_to_json_string_length(
	    root,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
	        JSON_C_TO_STRING_NOSLASHESCAPE,
	    &len);
	if (text == NULL)
		abort();
	int rc = write_tmp(f, text, len, err, errlen);
	json_object_put(root);
	if (rc != 0)
		return -1;
	if (rename(f->tmp, f->path) != 0) {
		int e = errno;
		unlink(f->tmp);
		set_err(err, errlen, "cannot rename %s to %s: %s", f->tmp,
		        f->path, strerror(e));
		return -1;
	}
	return sync_dir(f->dir, err, errlen);
}

const struct checkpoint_ops checkpoint_file_ops = {
    .name = "file",
    .load = cpfile_load,
    .save = cpfile_save,
    .free = cpfile_free,
};
