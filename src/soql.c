/*
 * SOQL text in, SOQL text out, REST replies decoded into slices (see
 * soql.h). Nothing here does I/O or reads a clock.
 *
 * Replies are walked with a small JSON scanner instead of a json-c tree:
 * a page of 2,000 records is a few megabytes, and each record only needs
 * to be found (its byte range), read for two strings, and copied once
 * without its "attributes" members for the formatter.
 */
#include "sfrelay/soql.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "sfrelay/format.h"
#include "sfrelay/log.h"
#include "sfrelay/replay.h"

#define SOQL_NAME_MAX 80
#define SOQL_FIELDS_MAX 4000
#define SOQL_WHERE_MAX 4000
#define SOQL_URL_MAX 2048
#define SOQL_ID_MAX 64
#define JSON_MAX_DEPTH 64
#define COMPOSITE_MAX 25

/* Built-in objects ---------------------------------------------------- */

struct builtin {
	const char *object;
	const char *time_field;
	const char *id_field;
	const char *fields;
	int big;
};

/* Field lists of the objects the original job and the event monitoring
 * backfill need; anything else gets FIELDS(STANDARD). */
static const struct builtin builtins[] = {
    {"SetupAuditTrail", "CreatedDate", "Id",
     "Id, Action, Section, CreatedDate, CreatedById, CreatedBy.Username, "
     "Display, DelegateUser",
     0},
    {"LoginHistory", "LoginTime", "Id",
     "Id, UserId, LoginTime, LoginType, LoginUrl, SourceIp, Status, "
     "Application, Browser, Platform, ApiType, ApiVersion, CountryIso, "
     "TlsProtocol",
     0},
    {"EventLogFile", "CreatedDate", "Id",
     "Id, EventType, LogDate, Interval, Sequence, LogFileLength, "
     "CreatedDate, LogFile",
     0},
    {"LoginEvent", "EventDate", "EventIdentifier",
     "EventIdentifier, EventDate, UserId, Username, LoginType, LoginUrl, "
     "SourceIp, Status, Application, Browser, Platform, CountryIso, "
     "SessionKey, LoginKey",
     1},
    {"LogoutEvent", "EventDate", "EventIdentifier",
     "EventIdentifier, EventDate, UserId, Username, SourceIp, SessionKey, "
     "LoginKey",
     1},
    {"ApiEvent", "EventDate", "EventIdentifier",
     "EventIdentifier, EventDate, UserId, Username, SourceIp, "
     "Application, ApiType, ApiVersion, Operation, QueriedEntities, "
     "RowsProcessed, SessionKey, LoginKey",
     1},
    {"ReportEvent", "EventDate", "EventIdentifier",
     "EventIdentifier, EventDate, UserId, Username, SourceIp, ReportId, "
     "Operation, RowsProcessed, SessionKey, LoginKey",
     1},
    {"ListViewEvent", "EventDate", "EventIdentifier",
     "EventIdentifier, EventDate, UserId, Username, SourceIp, ListViewId, "
     "QueriedEntities, RowsProcessed, SessionKey, LoginKey",
     1},
    {"LightningUriEvent", "EventDate", "EventIdentifier",
     "EventIdentifier, EventDate, UserId, Username, Operation, PageUrl, "
     "RecordId, SessionKey, LoginKey",
     1},
    {"UriEvent", "EventDate", "EventIdentifier",
     "EventIdentifier, EventDate, UserId, Username, SourceIp, Operation, "
     "Uri, SessionKey, LoginKey",
     1},
};

#define NBUILTINS (sizeof(builtins) / sizeof(builtins[0]))

static const struct builtin *
builtin_find(const char *object)
{
	for (size_t i = 0; i < NBUILTINS; i++)
		if (strcasecmp(builtins[i].object, object) == 0)
			return &builtins[i];
	return NULL;
}

/* Small helpers -------------------------------------------------------- */

/* Messages quote pieces of untrusted text: a control byte must not
 * reach a log line or a terminal. */
static void
scrub(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void
set_err(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0) {
		snprintf(err, errlen, "%s", msg);
		scrub(err);
	}
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int
is_name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int
is_name_char(char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9') || c == '_';
}

/* Length of a name ([A-Za-z][A-Za-z0-9_]*) at s (bounded by end). */
static size_t
name_len(const char *s, const char *end)
{
	size_t n = 0;
	if (s >= end || !is_name_start(*s))
		return 0;
	while (s + n < end && is_name_char(s[n]))
		n++;
	return n;
}

static int
ends_with_ci(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Spec parsing ---------------------------------------------------------- */

void
soql_spec_clear(struct soql_spec *spec)
{
	if (spec == NULL)
		return;
	free(spec->object);
	free(spec->time_field);
	free(spec->id_field);
	free(spec->fields);
	free(spec->where);
	memset(spec, 0, sizeof(*spec));
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

int
soql_spec_copy(struct soql_spec *dst, const struct soql_spec *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->object = dup_or_null(src->object);
	dst->time_field = dup_or_null(src->time_field);
	dst->id_field = dup_or_null(src->id_field);
	dst->fields = dup_or_null(src->fields);
	dst->where = dup_or_null(src->where);
	dst->interval_ms = src->interval_ms;
	dst->big = src->big;
	if ((src->object != NULL && dst->object == NULL) ||
	    (src->time_field != NULL && dst->time_field == NULL) ||
	    (src->id_field != NULL && dst->id_field == NULL) ||
	    (src->fields != NULL && dst->fields == NULL) ||
	    (src->where != NULL && dst->where == NULL)) {
		soql_spec_clear(dst);
		return -1;
	}
	return 0;
}

static int
spec_from_builtin(const struct builtin *b, struct soql_spec *out)
{
	memset(out, 0, sizeof(*out));
	out->object = strdup(b->object);
	out->time_field = strdup(b->time_field);
	out->id_field = strdup(b->id_field);
	out->fields = strdup(b->fields);
	out->big = b->big;
	if (out->object == NULL || out->time_field == NULL ||
	    out->id_field == NULL || out->fields == NULL) {
		soql_spec_clear(out);
		return -1;
	}
	return 0;
}

int
soql_spec_big_object(const char *object, struct soql_spec *out)
{
	const struct builtin *b = builtin_find(object);
	if (b == NULL || !b->big)
		return -1;
	return spec_from_builtin(b, out);
}

/* One entry of a field list, trimmed. */
struct field_item {
	const char *s;
	size_t n;
};

/* Is s[0..n) "FIELDS(STANDARD)" (any case, blanks inside allowed)? Sets
 * *other for FIELDS(ALL) / FIELDS(CUSTOM). */
static int
is_fields_fn(const char *s, size_t n, int *other)
{
	char buf[40];
	size_t o = 0;
	*other = 0;
	for (size_t i = 0; i < n && o + 1 < sizeof(buf); i++)
		if (!is_blank(s[i]))
			buf[o++] = (char)toupper((unsigned char)s[i]);
	buf[o] = '\0';
	if (strncmp(buf, "FIELDS(", 7) != 0)
		return 0;
	if (strcmp(buf, "FIELDS(STANDARD)") == 0)
		return 1;
	*other = 1;
	return 0;
}

/* A field path: name(.name)*. */
static int
is_field_path(const char *s, size_t n)
{
	size_t i = 0;
	for (;;) {
		size_t k = name_len(s + i, s + n);
		if (k == 0)
			return 0;
		i += k;
		if (i == n)
			return 1;
		if (s[i] != '.')
			return 0;
		i++;
	}
}

static int
item_is(const struct field_item *it, const char *name)
{
	return it->n == strlen(name) && strncasecmp(it->s, name, it->n) == 0;
}

/*
 * Parses the field list text (between the parentheses) and writes the
 * SELECT list into *out, adding the id and time fields when missing.
 */
static int
parse_fields(const char *s, size_t n, const char *id_field,
             const char *time_field, char **out, char *err, size_t errlen)
{
	struct field_item items[128];
	size_t nitems = 0, start = 0;
	int depth = 0, standard = 0;

	if (n > SOQL_FIELDS_MAX) {
		set_err(err, errlen, "field list too long");
		return -1;
	}
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] == '(')
			depth++;
		else if (i < n && s[i] == ')')
			depth--;
		if (i < n && (s[i] != ',' || depth > 0))
			continue;
		size_t b = start, e = i;
		while (b < e && is_blank(s[b]))
			b++;
		while (e > b && is_blank(s[e - 1]))
			e--;
		start = i + 1;
		if (b == e) {
			set_err(err, errlen, "empty field name in the list");
			return -1;
		}
		if (nitems == sizeof(items) / sizeof(items[0])) {
			set_err(err, errlen, "more than 128 fields");
			return -1;
		}
		int other;
		if (is_fields_fn(s + b, e - b, &other)) {
			standard = 1;
		} else if (other) {
			set_err(
			    err, errlen,
			    "only FIELDS(STANDARD) can be polled: "
			    "FIELDS(ALL) and FIELDS(CUSTOM) need LIMIT 200");
			return -1;
		} else if (!is_field_path(s + b, e - b)) {
			char msg[320], q[256];
			snprintf(msg, sizeof(msg), "%s is not a field name",
			         log_quote(q, sizeof(q), s + b, e - b, 60));
			set_err(err, errlen, msg);
			return -1;
		}
		items[nitems].s = s + b;
		items[nitems].n = e - b;
		for (size_t j = 0; j < nitems; j++) {
			if (items[j].n == items[nitems].n &&
			    strncasecmp(items[j].s, items[nitems].s,
			                items[nitems].n) == 0) {
				char msg[160];
				snprintf(msg, sizeof(msg),
				         "field %.*s listed twice",
				         (int)(e - b > 60 ? 60 : e - b), s + b);
				set_err(err, errlen, msg);
				return -1;
			}
		}
		nitems++;
	}
	int have_id = 0, have_time = 0;
	for (size_t i = 0; i < nitems; i++) {
		int other;
		if (is_fields_fn(items[i].s, items[i].n, &other))
			continue;
		have_id |= item_is(&items[i], id_field);
		have_time |= item_is(&items[i], time_field);
		/* Salesforce refuses a standard field named next to
		 * FIELDS(STANDARD) ("duplicate field selected"). */
		if (standard && memchr(items[i].s, '.', items[i].n) == NULL &&
		    !(items[i].n > 3 && strncasecmp(items[i].s + items[i].n - 3,
		                                    "__c", 3) == 0)) {
			char msg[160];
			snprintf(msg, sizeof(msg),
			         "%.*s is already part of FIELDS(STANDARD)",
			         (int)(items[i].n > 60 ? 60 : items[i].n),
			         items[i].s);
			set_err(err, errlen, msg);
			return -1;
		}
	}
	if (standard) {
		have_id = 1;
		have_time |= !ends_with_ci(time_field, "__c");
	}
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		goto nomem;
	int rc = 0;
	if (!have_id)
		rc |= evbuffer_add_printf(b, "%s", id_field) < 0;
	if (!have_time && strcasecmp(time_field, id_field) != 0)
		rc |= evbuffer_add_printf(b, "%s%s",
		                          evbuffer_get_length(b) ? ", " : "",
		                          time_field) < 0;
	for (size_t i = 0; i < nitems; i++) {
		int other;
		if (evbuffer_get_length(b) > 0)
			rc |= evbuffer_add(b, ", ", 2);
		if (is_fields_fn(items[i].s, items[i].n, &other))
			rc |= evbuffer_add(b, "FIELDS(STANDARD)", 16);
		else
			rc |= evbuffer_add(b, items[i].s, items[i].n);
	}
	size_t len = evbuffer_get_length(b);
	*out = rc == 0 ? malloc(len + 1) : NULL;
	if (*out != NULL) {
		evbuffer_remove(b, *out, len);
		(*out)[len] = '\0';
	}
	evbuffer_free(b);
	if (*out == NULL)
		goto nomem;
	return 0;
nomem:
	set_err(err, errlen, "out of memory");
	return -1;
}

/*
 * The end of a [condition] starting after '[': the index of its closing
 * ']' (outside quotes, parentheses balanced), or -1 with err.
 */
static long
condition_end(const char *s, size_t n, char *err, size_t errlen)
{
	int depth = 0, quoted = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if ((unsigned char)c < 0x20 && !is_blank(c)) {
			set_err(err, errlen,
			        "control character in the condition");
			return -1;
		}
		if (quoted) {
			if (c == '\\' && i + 1 < n)
				i++;
			else if (c == '\'')
				quoted = 0;
			continue;
		}
		if (c == '\'')
			quoted = 1;
		else if (c == '(')
			depth++;
		else if (c == ')' && --depth < 0) {
			set_err(err, errlen, "unbalanced ')' in the condition");
			return -1;
		} else if (c == ']') {
			if (depth != 0) {
				set_err(err, errlen,
				        "unbalanced '(' in the condition");
				return -1;
			}
			return (long)i;
		} else if (c == '[') {
			set_err(err, errlen, "'[' inside the condition");
			return -1;
		}
	}
	set_err(err, errlen,
	        quoted ? "unterminated string in the condition"
	               : "condition has no closing ']'");
	return -1;
}

static int
parse_interval(const char *s, size_t n, size_t *used, long *ms, char *err,
               size_t errlen)
{
	size_t i = 0;
	long v = 0;
	while (i < n && s[i] >= '0' && s[i] <= '9') {
		if (v > 100000000L) {
			set_err(err, errlen,
			        "interval too large (24h at most)");
			return -1;
		}
		v = v * 10 + (s[i] - '0');
		i++;
	}
	if (i == 0) {
		set_err(err, errlen,
		        "'@' must be followed by an interval like 60s, 5m "
		        "or 1h");
		return -1;
	}
	long scale = 0;
	if (i < n && s[i] == 's')
		scale = 1000;
	else if (i < n && s[i] == 'm')
		scale = 60000;
	else if (i < n && s[i] == 'h')
		scale = 3600000;
	if (scale == 0 || (i + 1 < n && is_name_char(s[i + 1]))) {
		set_err(err, errlen,
		        "interval needs a unit: s, m or h (like 60s, 5m, "
		        "1h)");
		return -1;
	}
	if (v > SOQL_MAX_INTERVAL_MS / scale ||
	    v * scale < SOQL_MIN_INTERVAL_MS) {
		set_err(err, errlen, "interval out of range, 1s..24h");
		return -1;
	}
	*ms = v * scale;
	*used = i + 1;
	return 0;
}

int
soql_spec_parse(const char *text, size_t len, int want_interval,
                struct soql_spec *out, char *err, size_t errlen)
{
	const char *s = text, *end = text + len;
	const char *fields = NULL, *where = NULL;
	size_t fields_n = 0, where_n = 0;
	char object[SOQL_NAME_MAX + 1], time_field[SOQL_NAME_MAX + 1] = "";
	long interval = 0;
	int have_interval = 0;

	memset(out, 0, sizeof(*out));
	while (s < end && is_blank(*s))
		s++;
	while (end > s && is_blank(end[-1]))
		end--;
	size_t n = name_len(s, end);
	if (n == 0) {
		set_err(err, errlen,
		        s == end ? "empty item"
		                 : "must start with an object name");
		return -1;
	}
	if (n > SOQL_NAME_MAX) {
		set_err(err, errlen, "object name too long");
		return -1;
	}
	memcpy(object, s, n);
	object[n] = '\0';
	s += n;
	if (s < end && *s == ':') {
		s++;
		n = name_len(s, end);
		if (n == 0 || n > SOQL_NAME_MAX) {
			set_err(err, errlen,
			        "':' must be followed by a time field name");
			return -1;
		}
		memcpy(time_field, s, n);
		time_field[n] = '\0';
		s += n;
	}
	while (s < end && is_blank(*s))
		s++;
	if (s < end && *s == '@') {
		if (!want_interval) {
			set_err(err, errlen,
			        "a backfill mapping takes no @interval");
			return -1;
		}
		size_t used;
		s++;
		while (s < end && is_blank(*s))
			s++;
		if (parse_interval(s, (size_t)(end - s), &used, &interval, err,
		                   errlen) != 0)
			return -1;
		s += used;
		have_interval = 1;
	}
	while (s < end && is_blank(*s))
		s++;
	if (s < end && *s == '(') {
		int depth = 0;
		const char *p = s;
		for (; p < end; p++) {
			if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0)
				break;
		}
		if (p == end) {
			set_err(err, errlen, "field list has no closing ')'");
			return -1;
		}
		fields = s + 1;
		fields_n = (size_t)(p - fields);
		s = p + 1;
	}
	while (s < end && is_blank(*s))
		s++;
	if (s < end && *s == '[') {
		long e =
		    condition_end(s + 1, (size_t)(end - s - 1), err, errlen);
		if (e < 0)
			return -1;
		where = s + 1;
		where_n = (size_t)e;
		s = s + 1 + e + 1;
		const char *b = where;
		while (b < where + where_n && is_blank(*b))
			b++;
		if (b == where + where_n) {
			set_err(err, errlen, "empty condition");
			return -1;
		}
		if (where_n > SOQL_WHERE_MAX) {
			set_err(err, errlen, "condition too long");
			return -1;
		}
	}
	while (s < end && is_blank(*s))
		s++;
	if (s != end) {
		char msg[200], q[96];
		snprintf(
		    msg, sizeof(msg),
		    "unexpected %s (the form is "
		    "Object[:TimeField][@interval][(fields)][[condition]])",
		    log_quote(q, sizeof(q), s, end - s, 20));
		set_err(err, errlen, msg);
		return -1;
	}

	const struct builtin *b = builtin_find(object);
	if (b != NULL && b->big && where != NULL) {
		char msg[160];
		snprintf(msg, sizeof(msg),
		         "%s can be filtered only on %s: no [condition]",
		         b->object, b->time_field);
		set_err(err, errlen, msg);
		return -1;
	}
	if (b != NULL && b->big && time_field[0] != '\0' &&
	    strcasecmp(time_field, b->time_field) != 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "%s can be queried only by %s",
		         b->object, b->time_field);
		set_err(err, errlen, msg);
		return -1;
	}
	out->object = strdup(b != NULL ? b->object : object);
	out->time_field = strdup(time_field[0] != '\0' ? time_field
	                         : b != NULL           ? b->time_field
	                                               : "LastModifiedDate");
	out->id_field = strdup(b != NULL ? b->id_field : "Id");
	out->big = b != NULL && b->big;
	out->interval_ms = have_interval   ? interval
	                   : want_interval ? SOQL_DEFAULT_INTERVAL_MS
	                                   : 0;
	if (out->object == NULL || out->time_field == NULL ||
	    out->id_field == NULL)
		goto nomem;
	if (fields != NULL) {
		if (parse_fields(fields, fields_n, out->id_field,
		                 out->time_field, &out->fields, err,
		                 errlen) != 0) {
			soql_spec_clear(out);
			return -1;
		}
	} else if (b != NULL && (time_field[0] == '\0' ||
	                         strcasecmp(time_field, b->time_field) == 0)) {
		out->fields = strdup(b->fields);
	} else {
		const char *std = "FIELDS(STANDARD)";
		if (parse_fields(std, strlen(std), out->id_field,
		                 out->time_field, &out->fields, err,
		                 errlen) != 0) {
			soql_spec_clear(out);
			return -1;
		}
	}
	if (where != NULL) {
		const char *wb = where, *we = where + where_n;
		while (wb < we && is_blank(*wb))
			wb++;
		while (we > wb && is_blank(we[-1]))
			we--;
		out->where = strndup(wb, (size_t)(we - wb));
		if (out->where == NULL)
			goto nomem;
	}
	if (out->fields == NULL)
		goto nomem;
	return 0;
nomem:
	soql_spec_clear(out);
	set_err(err, errlen, "out of memory");
	return -1;
}

int
soql_split(const char *text, soql_item_fn *fn, void *arg)
{
	const char *start = text;
	int depth = 0, quoted = 0, bracket = 0;
	size_t index = 0;
	for (const char *p = text;; p++) {
		char c = *p;
		if (c != '\0' && quoted) {
			if (c == '\\' && p[1] != '\0')
				p++;
			else if (c == '\'')
				quoted = 0;
			continue;
		}
		if (c == '\'' && bracket)
			quoted = 1;
		else if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (c == '[')
			bracket = 1;
		else if (c == ']')
			bracket = 0;
		if (c == '\0' || (c == ',' && depth == 0 && !bracket)) {
			int rc = fn(arg, start, (size_t)(p - start), ++index);
			if (rc != 0)
				return rc;
			if (c == '\0')
				return 0;
			start = p + 1;
		}
	}
}

/* One list walk: counts the items and remembers whether any was bad. */
struct list_walk {
	soql_list_item_fn *item;
	void *arg;
	soql_problem_fn *problem;
	void *problem_arg;
	size_t items;
	int bad;
};

static int
list_item(void *arg, const char *item, size_t len, size_t index)
{
	struct list_walk *w = arg;
	char msg[512], q[208], why[256] = "";
	const char *b = item, *e = item + len;

	w->items = index;
	while (b < e && is_blank(*b))
		b++;
	while (e > b && is_blank(e[-1]))
		e--;
	size_t n = (size_t)(e - b);
	if (n > 0 && w->item(w->arg, b, n, why, sizeof(why)) == 0)
		return 0;
	w->bad = 1;
	if (w->problem == NULL)
		return 0;
	if (n == 0)
		snprintf(msg, sizeof(msg),
		         "item %zu is empty (two commas in a row, or a comma "
		         "at an end)",
		         index);
	else
		snprintf(msg, sizeof(msg), "item %zu %s: %s", index,
		         log_quote(q, sizeof(q), b, n, 48), why);
	scrub(msg);
	w->problem(w->problem_arg, msg);
	return 0;
}

int
soql_list_parse(const char *text, size_t max, soql_list_item_fn *item,
                void *arg, soql_problem_fn *problem, void *problem_arg)
{
	struct list_walk w = {item, arg, problem, problem_arg, 0, 0};

	soql_split(text != NULL ? text : "", list_item, &w);
	if (w.items > max) {
		char msg[96];
		snprintf(msg, sizeof(msg), "has %zu items, at most %zu",
		         w.items, max);
		w.bad = 1;
		if (problem != NULL)
			problem(problem_arg, msg);
	}
	return w.bad ? -1 : 0;
}

/* The specs accepted so far: room for SOQL_MAX_OBJECTS. */
struct poll_parse {
	struct soql_spec *specs;
	size_t n;
};

static int
poll_item(void *arg, const char *item, size_t len, char *why, size_t whylen)
{
	struct poll_parse *pp = arg;
	struct soql_spec spec;

	if (soql_spec_parse(item, len, 1, &spec, why, whylen) != 0)
		return -1;
	if (spec.big) {
		snprintf(why, whylen,
		         "%s is an event monitoring big object, which cannot "
		         "be polled in order; relay its stream instead (gaps "
		         "in the stream are backfilled from %s)",
		         spec.object, spec.object);
		soql_spec_clear(&spec);
		return -1;
	}
	for (size_t i = 0; i < pp->n; i++) {
		if (strcasecmp(pp->specs[i].object, spec.object) == 0) {
			snprintf(why, whylen, "object listed twice");
			soql_spec_clear(&spec);
			return -1;
		}
	}
	if (pp->n == SOQL_MAX_OBJECTS) {
		soql_spec_clear(&spec);
		return 0; /* soql_list_parse reports the count */
	}
	pp->specs[pp->n++] = spec;
	return 0;
}

void
soql_specs_free(struct soql_spec *specs, size_t n)
{
	for (size_t i = 0; specs != NULL && i < n; i++)
		soql_spec_clear(&specs[i]);
	free(specs);
}

int
soql_poll_parse(const char *text, struct soql_spec **specs, size_t *n,
                soql_problem_fn *problem, void *arg)
{
	struct poll_parse pp = {NULL, 0};

	*specs = NULL;
	*n = 0;
	pp.specs = calloc(SOQL_MAX_OBJECTS, sizeof(*pp.specs));
	if (pp.specs == NULL) {
		if (problem != NULL)
			problem(arg, "out of memory");
		return -1;
	}
	if (soql_list_parse(text, SOQL_MAX_OBJECTS, poll_item, &pp, problem,
	                    arg) != 0) {
		soql_specs_free(pp.specs, pp.n);
		return -1;
	}
	*specs = pp.specs;
	*n = pp.n;
	return 0;
}

/* Query text ------------------------------------------------------------ */

void
soql_datetime(long long ms, char *buf, size_t len)
{
	char iso[64];
	replay_ms_to_iso(ms, iso, sizeof(iso));
	/* "....:SS.mmmZ": a whole second is written without the fraction,
	 * the form Salesforce documents. */
	size_t n = strlen(iso);
	if (n >= 5 && strcmp(iso + n - 5, ".000Z") == 0) {
		iso[n - 5] = 'Z';
		iso[n - 4] = '\0';
	}
	snprintf(buf, len, "%s", iso);
}

static int
build_head(struct evbuffer *out, const struct soql_spec *spec,
           long long from_ms)
{
	char lit[64];
	soql_datetime(from_ms, lit, sizeof(lit));
	return evbuffer_add_printf(out, "SELECT %s FROM %s WHERE %s >= %s",
	                           spec->fields, spec->object, spec->time_field,
	                           lit) < 0
	           ? -1
	           : 0;
}

static int
build_tail(struct evbuffer *out, const struct soql_spec *spec)
{
	int rc = 0;
	if (spec->where != NULL)
		rc |= evbuffer_add_printf(out, " AND (%s)", spec->where) < 0;
	rc |= evbuffer_add_printf(out, " ORDER BY %s, %s", spec->time_field,
	                          spec->id_field) < 0;
	return rc ? -1 : 0;
}

int
soql_build_since(struct evbuffer *out, const struct soql_spec *spec,
                 long long since_ms)
{
	if (build_head(out, spec, since_ms) != 0)
		return -1;
	return build_tail(out, spec);
}

int
soql_build_window(struct evbuffer *out, const struct soql_spec *spec,
                  long long from_ms, long long to_ms)
{
	char lit[64];
	if (build_head(out, spec, from_ms) != 0)
		return -1;
	soql_datetime(to_ms, lit, sizeof(lit));
	if (evbuffer_add_printf(out, " AND %s <= %s", spec->time_field, lit) <
	    0)
		return -1;
	return spec->big ? 0 : build_tail(out, spec);
}

int
soql_url_escape(struct evbuffer *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	char buf[256];
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (o + 3 > sizeof(buf)) {
			if (evbuffer_add(out, buf, o) != 0)
				return -1;
			o = 0;
		}
		if (isalnum(c) || c == '-' || c == '.' || c == '_' ||
		    c == '~') {
			buf[o++] = (char)c;
		} else if (c == ' ') {
			buf[o++] = '+';
		} else {
			buf[o++] = '%';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	return evbuffer_add(out, buf, o);
}

int
soql_build_composite(struct evbuffer *out, const char *const *urls, size_t n)
{
	if (n == 0 || n > COMPOSITE_MAX)
		return -1;
	int rc = evbuffer_add_printf(
	             out, "{\"allOrNone\":false,\"compositeRequest\":[") < 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc |= evbuffer_add_printf(out, "%s{\"method\":\"GET\",\"url\":",
		                          i > 0 ? "," : "") < 0;
		rc |= format_json_string(out, urls[i], strlen(urls[i])) != 0;
		rc |= evbuffer_add_printf(out, ",\"referenceId\":\"r%zu\"}",
		                          i) < 0;
	}
	rc |= evbuffer_add(out, "]}", 2) != 0;
	return rc ? -1 : 0;
}

/* JSON scanning ---------------------------------------------------------- */

struct jscan {
	const char *p;
	const char *end;
	unsigned depth;
	const char *err;
};

static void
jws(struct jscan *s)
{
	while (s->p < s->end && is_blank(*s->p))
		s->p++;
}

static int
jfail(struct jscan *s, const char *why)
{
	if (s->err == NULL)
		s->err = why;
	return -1;
}

static int
jpeek(struct jscan *s)
{
	jws(s);
	return s->p < s->end ? (unsigned char)*s->p : -1;
}

static int
jexpect(struct jscan *s, char c)
{
	jws(s);
	if (s->p >= s->end || *s->p != c)
		return jfail(s, "unexpected character");
	s->p++;
	return 0;
}

static int
jword(struct jscan *s, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0)
		return jfail(s, "invalid literal");
	s->p += n;
	return 0;
}

static int
jnumber(struct jscan *s)
{
	const char *p = s->p;
	if (p < s->end && *p == '-')
		p++;
	const char *d = p;
	while (p < s->end && *p >= '0' && *p <= '9')
		p++;
	if (p == d)
		return jfail(s, "invalid number");
	if (p < s->end && *p == '.') {
		d = ++p;
		while (p < s->end && *p >= '0' && *p <= '9')
			p++;
		if (p == d)
			return jfail(s, "invalid number");
	}
	if (p < s->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < s->end && (*p == '+' || *p == '-'))
			p++;
		d = p;
		while (p < s->end && *p >= '0' && *p <= '9')
			p++;
		if (p == d)
			return jfail(s, "invalid number");
	}
	s->p = p;
	return 0;
}

static int
hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return -1;
		*v = *v * 16 + d;
	}
	return 0;
}

/* Appends one byte to a bounded output; notes overflow. */
struct sbuf {
	char *p;
	size_t cap; /* 0: discard */
	size_t n;
	int over;
};

static void
sput(struct sbuf *b, char c)
{
	if (b->cap == 0)
		return;
	if (b->n + 1 < b->cap)
		b->p[b->n++] = c;
	else
		b->over = 1;
}

static void
sput_utf8(struct sbuf *b, unsigned cp)
{
	if (cp < 0x80) {
		sput(b, (char)cp);
	} else if (cp < 0x800) {
		sput(b, (char)(0xc0 | (cp >> 6)));
		sput(b, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		sput(b, (char)(0xe0 | (cp >> 12)));
		sput(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		sput(b, (char)(0x80 | (cp & 0x3f)));
	} else {
		sput(b, (char)(0xf0 | (cp >> 18)));
		sput(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
		sput(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
		sput(b, (char)(0x80 | (cp & 0x3f)));
	}
}

/* Scans a string at s->p (which must be '"'), decoding it into b. */
static int
jstring(struct jscan *s, struct sbuf *b)
{
	if (s->p >= s->end || *s->p != '"')
		return jfail(s, "expected a string");
	s->p++;
	while (s->p < s->end) {
		char c = *s->p++;
		if (c == '"') {
			if (b->cap > 0)
				b->p[b->n] = '\0';
			return 0;
		}
		if (c != '\\') {
			sput(b, c);
			continue;
		}
		if (s->p >= s->end)
			break;
		c = *s->p++;
		switch (c) {
		case '"':
		case '\\':
		case '/':
			sput(b, c);
			break;
		case 'b':
			sput(b, '\b');
			break;
		case 'f':
			sput(b, '\f');
			break;
		case 'n':
			sput(b, '\n');
			break;
		case 'r':
			sput(b, '\r');
			break;
		case 't':
			sput(b, '\t');
			break;
		case 'u': {
			unsigned cp, lo;
			if (s->end - s->p < 4 || hex4(s->p, &cp) != 0)
				return jfail(s, "invalid \\u escape");
			s->p += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && s->end - s->p >= 6 &&
			    s->p[0] == '\\' && s->p[1] == 'u' &&
			    hex4(s->p + 2, &lo) == 0 && lo >= 0xdc00 &&
			    lo < 0xe000) {
				s->p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			} else if (cp >= 0xd800 && cp < 0xe000) {
				cp = 0xfffd;
			}
			sput_utf8(b, cp);
			break;
		}
		default:
			return jfail(s, "invalid escape");
		}
	}
	return jfail(s, "unterminated string");
}

static int jskip(struct jscan *s);

static int
jskip_container(struct jscan *s, char close)
{
	if (++s->depth > JSON_MAX_DEPTH)
		return jfail(s, "nesting too deep");
	s->p++;
	if (jpeek(s) == close) {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			struct sbuf none = {0};
			jws(s);
			if (jstring(s, &none) != 0 || jexpect(s, ':') != 0)
				return jfail(s, "invalid object member");
		}
		if (jskip(s) != 0)
			return -1;
		int c = jpeek(s);
		if (c == ',') {
			s->p++;
			continue;
		}
		if (c == close) {
			s->p++;
			s->depth--;
			return 0;
		}
		return jfail(s, "expected ',' or the end of a container");
	}
}

/* Skips one value (after blanks). */
static int
jskip(struct jscan *s)
{
	struct sbuf none = {0};
	switch (jpeek(s)) {
	case '{':
		return jskip_container(s, '}');
	case '[':
		return jskip_container(s, ']');
	case '"':
		return jstring(s, &none);
	case 't':
		return jword(s, "true");
	case 'f':
		return jword(s, "false");
	case 'n':
		return jword(s, "null");
	case -1:
		return jfail(s, "unexpected end of the text");
	default:
		if (*s->p != '-' && (*s->p < '0' || *s->p > '9'))
			return jfail(s, "unexpected character");
		return jnumber(s);
	}
}

/*
 * Object member iteration. jobj_begin consumes '{' and returns 1 when
 * the object is empty; jobj_key reads the next key (decoded into key, or
 * "" when too long) and the ':'; jobj_next after a value returns 0 when
 * another member follows, 1 at the end.
 */
static int
jobj_begin(struct jscan *s)
{
	if (jexpect(s, '{') != 0)
		return -1;
	if (jpeek(s) == '}') {
		s->p++;
		return 1;
	}
	return 0;
}

static int
jobj_key(struct jscan *s, char *key, size_t keylen)
{
	struct sbuf b = {key, keylen, 0, 0};
	jws(s);
	if (jstring(s, &b) != 0)
		return -1;
	if (b.over)
		key[0] = '\0';
	return jexpect(s, ':');
}

static int
jnext(struct jscan *s, char close)
{
	int c = jpeek(s);
	if (c == ',') {
		s->p++;
		return 0;
	}
	if (c == close) {
		s->p++;
		return 1;
	}
	return jfail(s, "expected ',' or the end of a container");
}

static int
jend(struct jscan *s)
{
	jws(s);
	return s->p == s->end ? 0 : jfail(s, "trailing text after the value");
}

/* A JSON integer value into *v (bounded to 18 digits). */
static int
jinteger(struct jscan *s, long long *v)
{
	jws(s);
	const char *start = s->p;
	if (jnumber(s) != 0)
		return -1;
	long long x = 0;
	const char *p = start;
	int neg = 0;
	if (*p == '-') {
		neg = 1;
		p++;
	}
	if (s->p - p > 18)
		return jfail(s, "number too large");
	for (; p < s->p; p++) {
		if (*p < '0' || *p > '9')
			return jfail(s, "not an integer");
		x = x * 10 + (*p - '0');
	}
	*v = neg ? -x : x;
	return 0;
}

/* Pages and records ------------------------------------------------------ */

void
soql_page_clear(struct soql_page *page)
{
	if (page == NULL)
		return;
	free(page->next_url);
	free(page->records);
	memset(page, 0, sizeof(*page));
	page->total_size = -1;
}

static int
url_ok(const char *u)
{
	if (strncmp(u, "/services/data/", 15) != 0)
		return 0;
	for (; *u != '\0'; u++)
		if ((unsigned char)*u <= 0x20 || (unsigned char)*u >= 0x7f)
			return 0;
	return 1;
}

static int
records_add(struct soql_page *page, size_t *cap, const char *text, size_t len)
{
	if (page->nrecords == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		void *g = realloc(page->records, ncap * sizeof(*page->records));
		if (g == NULL)
			return -1;
		page->records = g;
		*cap = ncap;
	}
	page->records[page->nrecords].text = text;
	page->records[page->nrecords].len = len;
	page->nrecords++;
	return 0;
}

static int
decode_records(struct jscan *s, struct soql_page *page)
{
	size_t cap = 0;
	if (jpeek(s) != '[')
		return jfail(s, "\"records\" is not an array");
	s->p++;
	if (jpeek(s) == ']') {
		s->p++;
		return 0;
	}
	for (;;) {
		if (jpeek(s) != '{')
			return jfail(s, "a record is not an object");
		const char *start = s->p;
		if (jskip(s) != 0)
			return -1;
		if (records_add(page, &cap, start, (size_t)(s->p - start)) != 0)
			return jfail(s, "out of memory");
		int r = jnext(s, ']');
		if (r < 0)
			return -1;
		if (r == 1)
			return 0;
	}
}

int
soql_page_decode(const char *body, size_t len, struct soql_page *page,
                 char *err, size_t errlen)
{
	struct jscan s = {body, body + len, 0, NULL};
	char key[64];
	int have_done = 0, have_records = 0;

	memset(page, 0, sizeof(*page));
	page->total_size = -1;
	int r = jobj_begin(&s);
	if (r < 0) {
		s.err = "reply is not a JSON object";
		goto fail;
	}
	while (r == 0) {
		if (jobj_key(&s, key, sizeof(key)) != 0)
			goto fail;
		if (strcmp(key, "totalSize") == 0) {
			if (jinteger(&s, &page->total_size) != 0)
				goto fail;
		} else if (strcmp(key, "done") == 0) {
			int c = jpeek(&s);
			if (c == 't' && jword(&s, "true") == 0)
				page->done = 1;
			else if (c == 'f' && jword(&s, "false") == 0)
				page->done = 0;
			else {
				s.err = "\"done\" is not a boolean";
				goto fail;
			}
			have_done = 1;
		} else if (strcmp(key, "nextRecordsUrl") == 0) {
			if (jpeek(&s) == 'n') {
				if (jword(&s, "null") != 0)
					goto fail;
			} else {
				char url[SOQL_URL_MAX];
				struct sbuf b = {url, sizeof(url), 0, 0};
				if (jstring(&s, &b) != 0)
					goto fail;
				free(page->next_url);
				page->next_url =
				    b.over || !url_ok(url) ? NULL : strdup(url);
				if (page->next_url == NULL) {
					s.err = "\"nextRecordsUrl\" is not a "
					        "/services/data/ path";
					goto fail;
				}
			}
		} else if (strcmp(key, "records") == 0) {
			if (have_records) {
				s.err = "\"records\" appears twice";
				goto fail;
			}
			if (decode_records(&s, page) != 0)
				goto fail;
			have_records = 1;
		} else if (jskip(&s) != 0) {
			goto fail;
		}
		r = jnext(&s, '}');
	}
	if (r < 0 || jend(&s) != 0)
		goto fail;
	if (!have_done || !have_records) {
		s.err = !have_done ? "reply has no \"done\""
		                   : "reply has no \"records\" array";
		goto fail;
	}
	if (page->done) {
		free(page->next_url);
		page->next_url = NULL;
	} else if (page->next_url == NULL) {
		s.err = "\"done\" is false but there is no nextRecordsUrl";
		goto fail;
	}
	return 0;
fail:
	set_err(err, errlen, s.err != NULL ? s.err : "malformed reply");
	soql_page_clear(page);
	return -1;
}

int
soql_record_string(const struct soql_record *rec, const char *name, char *buf,
                   size_t len)
{
	struct jscan s = {rec->text, rec->text + rec->len, 0, NULL};
	char key[128];
	int r = jobj_begin(&s);
	if (len > 0)
		buf[0] = '\0';
	if (r < 0)
		return -1;
	while (r == 0) {
		if (jobj_key(&s, key, sizeof(key)) != 0)
			return -1;
		if (strcasecmp(key, name) == 0) {
			int c = jpeek(&s);
			if (c == 'n')
				return jword(&s, "null") == 0 ? 1 : -1;
			if (c != '"')
				return -1;
			struct sbuf b = {buf, len, 0, 0};
			if (jstring(&s, &b) != 0 || b.over || len == 0) {
				if (len > 0)
					buf[0] = '\0';
				return -1;
			}
			return 0;
		}
		if (jskip(&s) != 0)
			return -1;
		r = jnext(&s, '}');
	}
	return r < 0 ? -1 : 1;
}

static int copy_value(struct jscan *s, struct evbuffer *out);

/* Appends a string token's raw text, escaping raw control bytes (which
 * the scanner tolerates) so the copy is strict JSON. */
static int
copy_raw_string(struct evbuffer *out, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 0x20)
			continue;
		char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
		if (evbuffer_add(out, p + start, i - start) != 0 ||
		    evbuffer_add(out, esc, sizeof(esc)) != 0)
			return -1;
		start = i + 1;
	}
	return evbuffer_add(out, p + start, n - start);
}

static int
dropped(const char *key, const char *const *drop, size_t ndrop)
{
	for (size_t i = 0; i < ndrop; i++)
		if (drop[i] != NULL && strcasecmp(key, drop[i]) == 0)
			return 1;
	return 0;
}

/* Copies an object without its "attributes" member; at the top level
 * also without the drop members, and with first in front. */
static int
copy_object(struct jscan *s, struct evbuffer *out, const char *const *drop,
            size_t ndrop, const char *first)
{
	char key[128];
	int written = 0;
	if (++s->depth > JSON_MAX_DEPTH)
		return jfail(s, "nesting too deep");
	int r = jobj_begin(s);
	if (r < 0 || evbuffer_add(out, "{", 1) != 0)
		return -1;
	if (first != NULL && first[0] != '\0') {
		if (evbuffer_add(out, first, strlen(first)) != 0)
			return -1;
		written = 1;
	}
	while (r == 0) {
		jws(s);
		const char *kstart = s->p;
		struct sbuf b = {key, sizeof(key), 0, 0};
		if (jstring(s, &b) != 0)
			return -1;
		const char *kend = s->p;
		if (b.over)
			key[0] = '\0';
		if (jexpect(s, ':') != 0)
			return -1;
		int skip =
		    (strcmp(key, "attributes") == 0 && jpeek(s) == '{') ||
		    (!b.over && dropped(key, drop, ndrop));
		if (skip) {
			if (jskip(s) != 0)
				return -1;
		} else {
			if ((written && evbuffer_add(out, ",", 1) != 0) ||
			    copy_raw_string(out, kstart,
			                    (size_t)(kend - kstart)) != 0 ||
			    evbuffer_add(out, ":", 1) != 0 ||
			    copy_value(s, out) != 0)
				return -1;
			written = 1;
		}
		r = jnext(s, '}');
	}
	if (r < 0)
		return -1;
	s->depth--;
	return evbuffer_add(out, "}", 1);
}

static int
copy_value(struct jscan *s, struct evbuffer *out)
{
	int c = jpeek(s);
	if (c == '{')
		return copy_object(s, out, NULL, 0, NULL);
	if (c == '[') {
		if (++s->depth > JSON_MAX_DEPTH)
			return jfail(s, "nesting too deep");
		s->p++;
		if (evbuffer_add(out, "[", 1) != 0)
			return -1;
		if (jpeek(s) == ']') {
			s->p++;
		} else {
			for (int first = 1;; first = 0) {
				if ((!first &&
				     evbuffer_add(out, ",", 1) != 0) ||
				    copy_value(s, out) != 0)
					return -1;
				int r = jnext(s, ']');
				if (r < 0)
					return -1;
				if (r == 1)
					break;
			}
		}
		s->depth--;
		return evbuffer_add(out, "]", 1);
	}
	const char *start = s->p;
	if (jskip(s) != 0)
		return -1;
	if (*start == '"')
		return copy_raw_string(out, start, (size_t)(s->p - start));
	return evbuffer_add(out, start, (size_t)(s->p - start));
}

int
soql_record_payload(const struct soql_record *rec, const char *const *drop,
                    size_t ndrop, const char *first, struct evbuffer *out)
{
	struct jscan s = {rec->text, rec->text + rec->len, 0, NULL};
	size_t before = evbuffer_get_length(out);
	if (jpeek(&s) != '{' || copy_object(&s, out, drop, ndrop, first) != 0 ||
	    jend(&s) != 0) {
		/* Leave out as it was: no half record. */
		size_t now = evbuffer_get_length(out);
		if (now > before) {
			struct evbuffer *tmp = evbuffer_new();
			if (tmp != NULL) {
				evbuffer_remove_buffer(out, tmp, before);
				evbuffer_drain(out, now - before);
				evbuffer_add_buffer(out, tmp);
				evbuffer_free(tmp);
			}
		}
		return -1;
	}
	return 0;
}

/* Composite replies ------------------------------------------------------- */

static int
subs_add(struct soql_sub **subs, size_t *n, size_t *cap,
         const struct soql_sub *sub)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		void *g = realloc(*subs, ncap * sizeof(**subs));
		if (g == NULL)
			return -1;
		*subs = g;
		*cap = ncap;
	}
	(*subs)[(*n)++] = *sub;
	return 0;
}

static int
decode_sub(struct jscan *s, struct soql_sub *sub)
{
	char key[64];
	memset(sub, 0, sizeof(*sub));
	int r = jobj_begin(s);
	if (r < 0)
		return jfail(s, "a subresponse is not an object");
	while (r == 0) {
		if (jobj_key(s, key, sizeof(key)) != 0)
			return -1;
		if (strcmp(key, "body") == 0) {
			jws(s);
			const char *start = s->p;
			if (jskip(s) != 0)
				return -1;
			sub->body = start;
			sub->len = (size_t)(s->p - start);
		} else if (strcmp(key, "httpStatusCode") == 0) {
			long long v;
			if (jinteger(s, &v) != 0 || v < 0 || v > 999)
				return jfail(s, "bad httpStatusCode");
			sub->status = (long)v;
		} else if (strcmp(key, "referenceId") == 0) {
			struct sbuf b = {sub->ref, sizeof(sub->ref), 0, 0};
			jws(s);
			if (jpeek(s) != '"' || jstring(s, &b) != 0)
				return jfail(s, "bad referenceId");
			for (const char *c = sub->ref; *c != '\0'; c++)
				if ((unsigned char)*c < 0x20)
					b.over = 1; /* never one of ours */
			if (b.over)
				sub->ref[0] = '\0';
		} else if (jskip(s) != 0) {
			return -1;
		}
		r = jnext(s, '}');
	}
	return r < 0 ? -1 : 0;
}

int
soql_composite_decode(const char *body, size_t len, struct soql_sub **subs,
                      size_t *n, char *err, size_t errlen)
{
	struct jscan s = {body, body + len, 0, NULL};
	char key[64];
	size_t cap = 0;
	int found = 0;

	*subs = NULL;
	*n = 0;
	int r = jobj_begin(&s);
	if (r < 0) {
		s.err = "composite reply is not a JSON object";
		goto fail;
	}
	while (r == 0) {
		if (jobj_key(&s, key, sizeof(key)) != 0)
			goto fail;
		if (strcmp(key, "compositeResponse") == 0 && !found) {
			found = 1;
			if (jexpect(&s, '[') != 0)
				goto fail;
			int more = jpeek(&s) == ']' ? 1 : 0;
			if (more)
				s.p++;
			while (!more) {
				struct soql_sub sub;
				if (decode_sub(&s, &sub) != 0)
					goto fail;
				if (subs_add(subs, n, &cap, &sub) != 0) {
					s.err = "out of memory";
					goto fail;
				}
				more = jnext(&s, ']');
				if (more < 0)
					goto fail;
			}
		} else if (jskip(&s) != 0) {
			goto fail;
		}
		r = jnext(&s, '}');
	}
	if (r < 0 || jend(&s) != 0)
		goto fail;
	if (!found) {
		s.err = "reply has no \"compositeResponse\"";
		goto fail;
	}
	return 0;
fail:
	set_err(err, errlen, s.err != NULL ? s.err : "malformed reply");
	free(*subs);
	*subs = NULL;
	*n = 0;
	return -1;
}

/* Errors and limits ---------------------------------------------------- */

/* Folds runs of blanks and control bytes into one space, trims. */
static void
fold_blanks(char *s)
{
	char *o = s;
	int space = 0;
	for (char *p = s; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			space = o != s;
			continue;
		}
		if (space)
			*o++ = ' ';
		space = 0;
		*o++ = *p;
	}
	*o = '\0';
}

int
soql_error_parse(const char *body, size_t len, char *code, size_t codelen,
                 char *msg, size_t msglen)
{
	struct jscan s = {body, body + len, 0, NULL};
	char key[64];
	int found = 0;

	if (codelen > 0)
		code[0] = '\0';
	if (msglen > 0)
		msg[0] = '\0';
	if (jpeek(&s) == '[') {
		s.p++;
		if (jpeek(&s) != '{')
			return -1;
	}
	int r = jobj_begin(&s);
	if (r < 0)
		return -1;
	while (r == 0) {
		if (jobj_key(&s, key, sizeof(key)) != 0)
			goto fail;
		int is_code = strcmp(key, "errorCode") == 0;
		int is_msg = strcmp(key, "message") == 0;
		if ((is_code || is_msg) && jpeek(&s) == '"') {
			struct sbuf b = {is_code ? code : msg,
			                 is_code ? codelen : msglen, 0, 0};
			if (jstring(&s, &b) != 0)
				goto fail;
			found = 1;
		} else if (jskip(&s) != 0) {
			goto fail;
		}
		r = jnext(&s, '}');
	}
	if (r < 0 || !found)
		goto fail;
	if (codelen > 0)
		fold_blanks(code);
	if (msglen > 0)
		fold_blanks(msg);
	return 0;
fail:
	if (codelen > 0)
		code[0] = '\0';
	if (msglen > 0)
		msg[0] = '\0';
	return -1;
}

/* Up to 18 digits at *p; advances. */
static int
limit_number(const char **p, long long *v)
{
	const char *s = *p;
	long long x = 0;
	int n = 0;
	while (*s >= '0' && *s <= '9') {
		if (++n > 18)
			return -1;
		x = x * 10 + (*s - '0');
		s++;
	}
	if (n == 0)
		return -1;
	*v = x;
	*p = s;
	return 0;
}

int
soql_limit_info(const char *header, long long *used, long long *max)
{
	static const char field[] = "api-usage=";
	if (header == NULL)
		return -1;
	for (const char *p = header; (p = strstr(p, field)) != NULL; p++) {
		/* A field of its own, not the tail of per-app-api-usage. */
		if (p != header && p[-1] != ' ' && p[-1] != ';' &&
		    p[-1] != ',' && p[-1] != '\t')
			continue;
		const char *q = p + sizeof(field) - 1;
		long long u, m;
		if (limit_number(&q, &u) != 0 || *q != '/')
			continue;
		q++;
		if (limit_number(&q, &m) != 0 || m <= 0)
			continue;
		if (*q != '\0' && *q != ';' && *q != ',' && *q != ' ' &&
		    *q != '\t')
			continue;
		*used = u;
		*max = m;
		return 0;
	}
	return -1;
}

/* The high-water mark --------------------------------------------------- */

struct soql_mark {
	int set;
	long long t;
	char **ids; /* ascending strcmp order */
	size_t n, cap;
};

struct soql_mark *
soql_mark_new(void)
{
	return calloc(1, sizeof(struct soql_mark));
}

static void
mark_clear_ids(struct soql_mark *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->ids[i]);
	m->n = 0;
}

void
soql_mark_free(struct soql_mark *m)
{
	if (m == NULL)
		return;
	mark_clear_ids(m);
	free(m->ids);
	free(m);
}

void
soql_mark_reset(struct soql_mark *m, long long ms)
{
	mark_clear_ids(m);
	m->set = 1;
	m->t = ms;
}

int
soql_mark_is_set(const struct soql_mark *m)
{
	return m->set;
}

long long
soql_mark_time(const struct soql_mark *m)
{
	return m->t;
}

size_t
soql_mark_count(const struct soql_mark *m)
{
	return m->n;
}

static int
id_valid(const char *id, size_t n)
{
	if (n == 0 || n > SOQL_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_name_char(id[i]) && id[i] != '-')
			return 0;
	return 1;
}

/* Index where id is or would go; *found set when present. */
static size_t
mark_search(const struct soql_mark *m, const char *id, int *found)
{
	size_t lo = 0, hi = m->n;
	*found = 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->ids[mid], id);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int
mark_insert(struct soql_mark *m, size_t at, const char *id, size_t n)
{
	if (m->n == m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 8;
		void *g = realloc(m->ids, ncap * sizeof(*m->ids));
		if (g == NULL)
			return -1;
		m->ids = g;
		m->cap = ncap;
	}
	char *copy = strndup(id, n);
	if (copy == NULL)
		return -1;
	memmove(&m->ids[at + 1], &m->ids[at], (m->n - at) * sizeof(*m->ids));
	m->ids[at] = copy;
	m->n++;
	return 0;
}

enum soql_verdict
soql_mark_offer(struct soql_mark *m, long long ms, const char *id)
{
	int found;
	size_t n = strlen(id);
	if (!id_valid(id, n))
		return SOQL_BAD;
	if (m->set && ms < m->t)
		return SOQL_OLDER;
	if (!m->set || ms > m->t) {
		/* A newer time: earlier ids can no longer come back. */
		mark_clear_ids(m);
		m->set = 1;
		m->t = ms;
		return mark_insert(m, 0, id, n) == 0 ? SOQL_NEW : SOQL_NOMEM;
	}
	size_t at = mark_search(m, id, &found);
	if (found)
		return SOQL_SEEN;
	return mark_insert(m, at, id, n) == 0 ? SOQL_NEW : SOQL_NOMEM;
}

int
soql_mark_format(const struct soql_mark *m, struct evbuffer *out)
{
	char iso[64];
	if (!m->set)
		return -1;
	replay_ms_to_iso(m->t, iso, sizeof(iso));
	int rc = evbuffer_add_printf(out, "%s|", iso) < 0;
	for (size_t i = 0; i < m->n; i++)
		rc |= evbuffer_add_printf(out, "%s%s", i > 0 ? "," : "",
		                          m->ids[i]) < 0;
	return rc ? -1 : 0;
}

int
soql_mark_parse(struct soql_mark *m, const char *text)
{
	char iso[64];
	long long t;
	const char *bar = text != NULL ? strchr(text, '|') : NULL;
	if (bar == NULL || (size_t)(bar - text) >= sizeof(iso))
		return -1;
	memcpy(iso, text, (size_t)(bar - text));
	iso[bar - text] = '\0';
	if (replay_iso_to_ms(iso, &t) != 0)
		return -1;
	struct soql_mark *tmp = soql_mark_new();
	if (tmp == NULL)
		return -1;
	soql_mark_reset(tmp, t);
	const char *p = bar + 1;
	while (*p != '\0') {
		const char *e = strchr(p, ',');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
		int found;
		char id[SOQL_ID_MAX + 1];
		if (!id_valid(p, n) || (e != NULL && e[1] == '\0')) {
			soql_mark_free(tmp);
			return -1;
		}
		memcpy(id, p, n);
		id[n] = '\0';
		size_t at = mark_search(tmp, id, &found);
		if (!found && mark_insert(tmp, at, id, n) != 0) {
			soql_mark_free(tmp);
			return -1;
		}
		p += n + (e != NULL);
	}
	/* Swap the parsed state in. */
	mark_clear_ids(m);
	free(m->ids);
	*m = *tmp;
	free(tmp);
	return 0;
}

int
soql_mark_copy(struct soql_mark *dst, const struct soql_mark *src)
{
	mark_clear_ids(dst);
	dst->set = src->set;
	dst->t = src->t;
	for (size_t i = 0; i < src->n; i++) {
		if (mark_insert(dst, i, src->ids[i], strlen(src->ids[i])) !=
		    0) {
			mark_clear_ids(dst);
			dst->set = 0;
			return -1;
		}
	}
	return 0;
}
