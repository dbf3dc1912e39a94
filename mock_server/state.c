#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "sfrelay/log.h"

#include "org.h"
#include "state.h"
#include "util.h"

#define STATE_VERSION 1
#define STATE_FLUSH_MS 50
/* The journal is rewritten once it outgrows the last snapshot this much
 * (and this floor), so restarts stay quick. */
#define STATE_COMPACT_FLOOR (16u * 1024u * 1024u)
#define STATE_MAX_LINE (64u * 1024u * 1024u)

struct state {
	struct event_base *base;
	struct org *org;
	char *path;
	char *tmp;
	char *dir;
	int fd; /* the journal, O_APPEND */
	struct evbuffer *pending;
	struct event *timer;
	size_t journal_bytes; /* appended since the last compaction */
	size_t snapshot_bytes;
	int write_failed; /* logged once */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Writes all of buf to fd (draining it). Returns 0 or -1 (errno set). */
static int
write_all(int fd, struct evbuffer *buf)
{
	while (evbuffer_get_length(buf) > 0) {
		int n = evbuffer_write(buf, fd);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
	}
	return 0;
}

static int
add_channel_line(struct evbuffer *out, const struct org_channel *ch,
                 int64_t latest, uint64_t published)
{
	int rc = evbuffer_add(out, "{\"ch\":", 6);

	rc |= util_json_str(out, org_channel_name(ch));
	rc |= evbuffer_add_printf(out, ",\"latest\":%lld,\"published\":%llu}\n",
	                          (long long)latest,
	                          (unsigned long long)published) < 0;
	return rc == 0 ? 0 : -1;
}

static int
add_event_line(struct evbuffer *out, const struct org_channel *ch, int64_t id,
               uint64_t seq, const char *text)
{
	int rc = evbuffer_add(out, "{\"ev\":", 6);

	rc |= util_json_str(out, org_channel_name(ch));
	rc |= evbuffer_add_printf(out, ",\"id\":%lld,\"seq\":%llu,\"msg\":",
	                          (long long)id, (unsigned long long)seq) < 0;
	rc |= util_json_str(out, text);
	rc |= evbuffer_add(out, "}\n", 2);
	return rc == 0 ? 0 : -1;
}

static int
add_token_line(struct evbuffer *out, const char *token)
{
	int rc = evbuffer_add(out, "{\"token\":", 9);

	rc |= util_json_str(out, token);
	rc |= evbuffer_add(out, "}\n", 2);
	return rc == 0 ? 0 : -1;
}

/* The whole state, as compact lines. */
static int
snapshot(struct org *org, struct evbuffer *out)
{
	size_t i, n = org_channel_count(org);
	int rc = 0;

	rc |= evbuffer_add_printf(out, "{\"sfmock_state\":%d,\"seq\":%llu}\n",
	                          STATE_VERSION,
	                          (unsigned long long)org_seq(org)) < 0;
	for (i = 0; i < n && rc == 0; i++) {
		const struct org_channel *ch = org_channel_at(org, i);
		int64_t oldest = org_channel_oldest(ch);
		int64_t latest = org_channel_latest(ch);
		int64_t retained = latest - oldest + 1, id;

		/* The counters as they were before the first retained event,
		 * which the event lines then advance. */
		rc |= add_channel_line(out, ch, oldest - 1,
		                       org_channel_published(ch) -
		                           (uint64_t)retained);
		for (id = oldest; id <= latest && rc == 0; id++) {
			size_t len;
			uint64_t seq;
			const char *text =
			    org_channel_event(ch, id, &len, &seq);

			if (text != NULL)
				rc |= add_event_line(out, ch, id, seq, text);
		}
	}
	n = org_token_count(org);
	for (i = 0; i < n && rc == 0; i++)
		rc |= add_token_line(out, org_token_at(org, i));
	return rc == 0 ? 0 : -1;
}

/* Makes a rename in dir durable. */
static int
sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY), rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* Rewrites the file from the org's state and reopens the journal.
 * Returns 0, or -1 with err set. */
static int
compact(struct state *st, char *err, size_t errlen)
{
	struct evbuffer *buf = evbuffer_new();
	int fd = -1, rc = -1;
	size_t n;

	if (buf == NULL || snapshot(st->org, buf) != 0) {
		set_err(err, errlen, "out of memory");
		goto out;
	}
	n = evbuffer_get_length(buf);
	fd = open(st->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write_all(fd, buf) != 0 || fsync(fd) != 0) {
		set_err(err, errlen, "%s: %s", st->tmp, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(st->tmp, st->path) != 0) {
		set_err(err, errlen, "%s: %s", st->path, strerror(errno));
		goto out;
	}
	if (sync_dir(st->dir) != 0) {
		set_err(err, errlen, "%s: %s", st->dir, strerror(errno));
		goto out;
	}
	if (st->fd >= 0)
		close(st->fd);
	st->fd = open(st->path, O_WRONLY | O_APPEND);
	if (st->fd < 0) {
		set_err(err, errlen, "%s: %s", st->path, strerror(errno));
		goto out;
	}
	st->snapshot_bytes = n;
	st->journal_bytes = 0;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (buf != NULL)
		evbuffer_free(buf);
	return rc;
}

int
state_sync(struct state *st)
{
	size_t n = evbuffer_get_length(st->pending);
	char err[512];

	if (n == 0)
		return 0;
	if (st->fd < 0 || write_all(st->fd, st->pending) != 0) {
		if (!st->write_failed)
			log_error("state file write failed", "file", st->path,
			          "error", strerror(errno), NULL);
		st->write_failed = 1;
		evbuffer_drain(st->pending, evbuffer_get_length(st->pending));
		return -1;
	}
	st->journal_bytes += n;
	if (st->journal_bytes > STATE_COMPACT_FLOOR &&
	    st->journal_bytes > 2 * st->snapshot_bytes &&
	    compact(st, err, sizeof(err)) != 0) {
		log_error("state file compaction failed", "error", err, NULL);
		return -1;
	}
	return 0;
}

static void
j_channel(void *arg, const struct org_channel *ch)
{
	struct state *st = arg;

	add_channel_line(st->pending, ch, org_channel_latest(ch),
	                 org_channel_published(ch));
	state_sync(st);
}

static void
j_event(void *arg, const struct org_channel *ch, int64_t replay_id,
        uint64_t seq, const char *text, size_t len)
{
	struct state *st = arg;

	(void)len;
	add_event_line(st->pending, ch, replay_id, seq, text);
}

static void
j_trim(void *arg, const struct org_channel *ch)
{
	struct state *st = arg;

	evbuffer_add(st->pending, "{\"trim\":", 8);
	util_json_str(st->pending, org_channel_name(ch));
	evbuffer_add_printf(st->pending, ",\"oldest\":%lld}\n",
	                    (long long)org_channel_oldest(ch));
	state_sync(st);
}

static void
j_token(void *arg, const char *token)
{
	struct state *st = arg;

	add_token_line(st->pending, token);
	state_sync(st);
}

static void
j_revoke(void *arg)
{
	struct state *st = arg;

	evbuffer_add(st->pending, "{\"revoke\":true}\n", 16);
	state_sync(st);
}

static void
j_commit(void *arg)
{
	state_sync(arg);
}

static const struct org_journal journal = {
    .channel = j_channel,
    .event = j_event,
    .trim = j_trim,
    .token = j_token,
    .revoke = j_revoke,
    .commit = j_commit,
};

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	state_sync(arg);
}

static int
get_i64(struct json_object *o, const char *key, int64_t *v)
{
	struct json_object *x;

	if (!json_object_object_get_ex(o, key, &x) ||
	    !json_object_is_type(x, json_type_int))
		return -1;
	*v = json_object_get_int64(x);
	return 0;
}

static const char *
get_str(struct json_object *o, const char *key)
{
	struct json_object *x;

	if (!json_object_object_get_ex(o, key, &x) ||
	    !json_object_is_type(x, json_type_string))
		return NULL;
	return json_object_get_string(x);
}

/* Applies one parsed line to the org. Returns 0, or -1 with err. */
static int
load_line(struct org *org, struct json_object *o, char *err, size_t errlen)
{
	struct org_channel *ch;
	const char *name, *text;
	int64_t a, b;

	if ((name = get_str(o, "ev")) != NULL) {
		ch = org_channel_find(org, name, strlen(name));
		text = get_str(o, "msg");
		if (ch == NULL || text == NULL || get_i64(o, "id", &a) != 0 ||
		    get_i64(o, "seq", &b) != 0 || b < 0) {
			set_err(err, errlen, "bad event record");
			return -1;
		}
		if (org_restore_event(org, ch, a, (uint64_t)b, text,
		                      strlen(text)) != 0) {
			set_err(err, errlen,
			        "event %lld of %s: replay ids must increase",
			        (long long)a, name);
			return -1;
		}
		return 0;
	}
	if ((name = get_str(o, "ch")) != NULL) {
		ch = org_channel_declare(org, name);
		if (ch == NULL || get_i64(o, "latest", &a) != 0 ||
		    get_i64(o, "published", &b) != 0 || a < 0 || b < 0) {
			set_err(err, errlen, "bad channel record");
			return -1;
		}
		if (a < org_channel_latest(ch)) {
			set_err(err, errlen, "channel %s goes back in time",
			        name);
			return -1;
		}
		/* Retained ids are consecutive up to latest: a jump
		 * forgets the older ones. */
		if (a > org_channel_latest(ch))
			org_channel_trim(org, ch, a + 1);
		org_restore_counters(ch, a, (uint64_t)b);
		return 0;
	}
	if ((name = get_str(o, "trim")) != NULL) {
		ch = org_channel_find(org, name, strlen(name));
		if (ch == NULL || get_i64(o, "oldest", &a) != 0) {
			set_err(err, errlen, "bad trim record");
			return -1;
		}
		org_channel_trim(org, ch, a);
		return 0;
	}
	if ((text = get_str(o, "token")) != NULL) {
		if (org_token_restore(org, text) != 0) {
			set_err(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	if (json_object_object_get_ex(o, "revoke", NULL)) {
		org_tokens_revoke(org);
		return 0;
	}
	set_err(err, errlen, "unknown record");
	return -1;
}

/* Loads path into org. A missing file is an empty state. Returns 0, or
 * -1 with err naming the file and line. */
static int
load(struct org *org, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, why[256];
	size_t cap = 0, lineno = 0;
	ssize_t n;
	int rc = 0;

	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		struct json_object *o;
		int64_t version;

		lineno++;
		if (line[n - 1] != '\n') {
			/* A write cut short by a kill: that change was never
			 * acknowledged to anyone. */
			log_warn("state file ends with a partial line; "
			         "ignored",
			         "file", path, NULL);
			break;
		}
		if ((size_t)n > STATE_MAX_LINE) {
			set_err(err, errlen, "%s:%zu: line too long", path,
			        lineno);
			rc = -1;
			break;
		}
		line[n - 1] = '\0';
		o = json_tokener_parse(line);
		if (!json_object_is_type(o, json_type_object)) {
			set_err(err, errlen, "%s:%zu: not a JSON object", path,
			        lineno);
			json_object_put(o);
			rc = -1;
			break;
		}
		if (lineno == 1) {
			if (get_i64(o, "sfmock_state", &version) != 0 ||
			    version != STATE_VERSION) {
				set_err(err, errlen,
				        "%s: not an sfmock state file (version "
				        "%d)",
				        path, STATE_VERSION);
				rc = -1;
			}
		} else if (load_line(org, o, why, sizeof(why)) != 0) {
			set_err(err, errlen, "%s:%zu: %s", path, lineno, why);
			rc = -1;
		}
		json_object_put(o);
		if (rc != 0)
			break;
	}
	if (rc == 0 && ferror(f)) {
		set_err(err, errlen, "%s: read error", path);
		rc = -1;
	}
	free(line);
	fclose(f);
	return rc;
}

static char *
dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d;

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	d = malloc((size_t)(slash - path) + 1);
	if (d != NULL) {
		memcpy(d, path, (size_t)(slash - path));
		d[slash - path] = '\0';
	}
	return d;
}

struct state *
state_open(struct event_base *base, struct org *org, const char *path,
           char *err, size_t errlen)
{
	struct state *st = calloc(1, sizeof(*st));
	struct timeval tv = {0, STATE_FLUSH_MS * 1000};
	size_t n = strlen(path);
	char count[32];

	if (st == NULL) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	st->fd = -1;
	st->base = base;
	st->org = org;
	st->path = strdup(path);
	st->tmp = malloc(n + 5);
	st->dir = dir_of(path);
	st->pending = evbuffer_new();
	st->timer = event_new(base, -1, EV_PERSIST, flush_cb, st);
	if (st->path == NULL || st->tmp == NULL || st->dir == NULL ||
	    st->pending == NULL || st->timer == NULL) {
		set_err(err, errlen, "out of memory");
		goto fail;
	}
	snprintf(st->tmp, n + 5, "%s.tmp", path);
	if (load(org, path, err, errlen) != 0 || compact(st, err, errlen) != 0)
		goto fail;
	org_set_journal(org, &journal, st);
	event_add(st->timer, &tv);
	snprintf(count, sizeof(count), "%zu", st->snapshot_bytes);
	log_info("state loaded", "file", path, "bytes", count, NULL);
	return st;
fail:
	state_close(st);
	return NULL;
}

void
state_close(struct state *st)
{
	char err[512];

	if (st == NULL)
		return;
	if (st->fd >= 0) {
		org_set_journal(st->org, NULL, NULL);
		state_sync(st);
		if (compact(st, err, sizeof(err)) != 0)
			log_error("state file not saved", "error", err, NULL);
	}
	if (st->fd >= 0)
		close(st->fd);
	if (st->timer != NULL)
		event_free(st->timer);
	if (st->pending != NULL)
		evbuffer_free(st->pending);
	free(st->path);
	free(st->tmp);
	free(st->dir);
	free(st);
}
