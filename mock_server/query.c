/*
 * sfmock's query API (see query.h): a record store per object, a small
 * SOQL reader and evaluator, frozen result sets behind query locators,
 * and the composite resource.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "sfrelay/log.h"

#include "org.h"
#include "query.h"
#include "util.h"

#define QUERY_PAGE 2000
#define QUERY_MAX_CURSORS 64
#define QUERY_API_LIMIT 15000
#define QUERY_RECENT 16
#define QUERY_MAX_RECORDS 1000000
#define COMPOSITE_MAX_SUBS 25
#define COMPOSITE_MAX_QUERIES 5
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

#define INVALID_SESSION                                                        \
	"[{\"message\":\"Session expired or invalid\",\"errorCode\":"          \
	"\"INVALID_SESSION_ID\"}]"
#define NOT_FOUND                                                              \
	"[{\"errorCode\":\"NOT_FOUND\",\"message\":\"The requested resource "  \
	"does not exist\"}]"

/* Objects with generated content ----------------------------------------- */

enum qkind { K_AUDIT, K_LOGIN_HISTORY, K_ACCOUNT, K_LOGIN_EVENT, K_OTHER };

struct qdef {
	const char *name;
	enum qkind kind;
	const char *prefix;      /* three-character key prefix of its ids */
	const char *time_fields; /* comma-separated: set to the record time */
	const char *fields;      /* the schema, comma-separated */
	int big;                 /* filter on EventDate only, no ORDER BY */
};

static const struct qdef qdefs[] = {
    {"SetupAuditTrail", K_AUDIT, "0Ym", "CreatedDate",
     "Id,Action,Section,CreatedDate,CreatedById,CreatedBy.Username,"
     "CreatedBy.Name,Display,DelegateUser,ResponsibleNamespacePrefix",
     0},
    {"LoginHistory", K_LOGIN_HISTORY, "0Ya", "LoginTime",
     "Id,UserId,LoginTime,LoginType,LoginUrl,SourceIp,Status,Application,"
     "Browser,Platform,ApiType,ApiVersion,CountryIso,TlsProtocol",
     0},
    {"Account", K_ACCOUNT, "001", "CreatedDate,LastModifiedDate,SystemModstamp",
     "Id,Name,Industry,OwnerId,CreatedDate,LastModifiedDate,"
     "SystemModstamp,IsDeleted",
     0},
    {"LoginEvent", K_LOGIN_EVENT, "000", "EventDate",
     "Id,EventIdentifier,EventDate,UserId,Username,LoginType,LoginUrl,"
     "SourceIp,Status,Application,Browser,Platform,CountryIso,SessionKey,"
     "LoginKey",
     1},
};

struct qobj {
	char *name;
	const struct qdef *def; /* NULL: generic */
	struct json_object **recs;
	size_t n, cap;
	char **fields; /* known field paths, first spelling wins */
	size_t nfields;
	uint64_t seq;
};

struct cursor {
	char id[32];
	char **texts;
	size_t n;
	uint64_t born;
};

struct query {
	struct org *org;
	struct qobj **objs;
	size_t nobjs;
	struct cursor cursors[QUERY_MAX_CURSORS];
	uint64_t cursor_seq;
	int64_t api_max;
	uint64_t queries, query_more, composites, subrequests;
	char *recent[QUERY_RECENT];
	size_t nrecent;
};

static char *
xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (p == NULL)
		abort();
	return p;
}

static void
cursor_clear(struct cursor *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->texts[i]);
	free(c->texts);
	memset(c, 0, sizeof(*c));
}

static void
qobj_free(struct qobj *o)
{
	if (o == NULL)
		return;
	for (size_t i = 0; i < o->n; i++)
		json_object_put(o->recs[i]);
	free(o->recs);
	for (size_t i = 0; i < o->nfields; i++)
		free(o->fields[i]);
	free(o->fields);
	free(o->name);
	free(o);
}

static int
field_known(const struct qobj *o, const char *path, const char **canon)
{
	for (size_t i = 0; i < o->nfields; i++) {
		if (strcasecmp(o->fields[i], path) == 0) {
			if (canon != NULL)
				*canon = o->fields[i];
			return 1;
		}
	}
	return 0;
}

static void
field_add(struct qobj *o, const char *path, size_t n)
{
	char buf[256];
	if (n == 0 || n >= sizeof(buf))
		return;
	memcpy(buf, path, n);
	buf[n] = '\0';
	if (field_known(o, buf, NULL))
		return;
	char **g = realloc(o->fields, (o->nfields + 1) * sizeof(*g));
	if (g == NULL)
		abort();
	o->fields = g;
	o->fields[o->nfields++] = xstrndup(buf, n);
}

static struct qobj *
qobj_find(const struct query *q, const char *name)
{
	for (size_t i = 0; i < q->nobjs; i++)
		if (strcasecmp(q->objs[i]->name, name) == 0)
			return q->objs[i];
	return NULL;
}

static const struct qdef *
qdef_find(const char *name)
{
	for (size_t i = 0; i < sizeof(qdefs) / sizeof(qdefs[0]); i++)
		if (strcasecmp(qdefs[i].name, name) == 0)
			return &qdefs[i];
	return NULL;
}

/* The object, created on first use (built-in ones exist from the start). */
static struct qobj *
qobj_get(struct query *q, const char *name)
{
	struct qobj *o = qobj_find(q, name);
	if (o != NULL)
		return o;
	const struct qdef *d = qdef_find(name);
	o = calloc(1, sizeof(*o));
	struct qobj **g = realloc(q->objs, (q->nobjs + 1) * sizeof(*g));
	if (o == NULL || g == NULL)
		abort();
	q->objs = g;
	o->def = d;
	o->name = strdup(d != NULL ? d->name : name);
	if (o->name == NULL)
		abort();
	const char *f = d != NULL ? d->fields
	                          : "Id,Name,CreatedDate,LastModifiedDate,"
	                            "SystemModstamp";
	while (*f != '\0') {
		size_t n = strcspn(f, ",");
		field_add(o, f, n);
		f += n + (f[n] == ',');
	}
	q->objs[q->nobjs++] = o;
	return o;
}

struct query *
query_new(struct org *org)
{
	struct query *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return NULL;
	q->org = org;
	q->api_max = QUERY_API_LIMIT;
	for (size_t i = 0; i < sizeof(qdefs) / sizeof(qdefs[0]); i++)
		qobj_get(q, qdefs[i].name);
	return q;
}

void
query_free(struct query *q)
{
	if (q == NULL)
		return;
	for (size_t i = 0; i < q->nobjs; i++)
		qobj_free(q->objs[i]);
	free(q->objs);
	for (size_t i = 0; i < QUERY_MAX_CURSORS; i++)
		cursor_clear(&q->cursors[i]);
	for (size_t i = 0; i < q->nrecent; i++)
		free(q->recent[i]);
	free(q);
}

/* Times --------------------------------------------------------------- */

static int64_t
days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
ndigits(const char *s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

/* "YYYY-MM-DD" -> days since the epoch. Returns the bytes used, or 0. */
static size_t
parse_date(const char *s, int64_t *days)
{
	int y, m, d;
	if (ndigits(s, 4, &y) || s[4] != '-' || ndigits(s + 5, 2, &m) ||
	    s[7] != '-' || ndigits(s + 8, 2, &d) || m < 1 || m > 12 || d < 1 ||
	    d > 31)
		return 0;
	*days = days_from_civil(y, m, d);
	return 10;
}

/* A dateTime: date, 'T', hh:mm:ss, optional fraction, then Z, +hh:mm or
 * +hhmm. Returns the bytes used, or 0. */
static size_t
parse_datetime(const char *s, int64_t *ms)
{
	int64_t days;
	int h, mi, sec, frac = 0, oh = 0, om = 0;
	if (parse_date(s, &days) == 0 || s[10] != 'T' ||
	    ndigits(s + 11, 2, &h) || s[13] != ':' || ndigits(s + 14, 2, &mi) ||
	    s[16] != ':' || ndigits(s + 17, 2, &sec) || h > 23 || mi > 59 ||
	    sec > 60)
		return 0;
	size_t i = 19;
	if (s[i] == '.') {
		int scale = 100, n = 0;
		for (i++; isdigit((unsigned char)s[i]); i++, n++) {
			frac += (s[i] - '0') * scale;
			scale /= 10;
		}
		if (n == 0)
			return 0;
	}
	int sign = 0;
	if (s[i] == 'Z') {
		i++;
	} else if (s[i] == '+' || s[i] == '-') {
		sign = s[i] == '-' ? -1 : 1;
		if (ndigits(s + i + 1, 2, &oh))
			return 0;
		i += 3;
		if (s[i] == ':')
			i++;
		if (ndigits(s + i, 2, &om))
			return 0;
		i += 2;
	} else {
		return 0;
	}
	*ms = ((days * 24 + h) * 60 + mi) * 60000 + sec * 1000 + frac -
	      sign * ((int64_t)oh * 60 + om) * 60000;
	return i;
}

/* How Salesforce's REST API writes a dateTime. */
static void
sf_datetime(char *buf, size_t len, int64_t ms)
{
	char iso[40];
	util_iso_ms(iso, sizeof(iso), ms);
	size_t n = strlen(iso);
	if (n > 0 && iso[n - 1] == 'Z')
		iso[n - 1] = '\0';
	snprintf(buf, len, "%s+0000", iso);
}

/* Generated records ----------------------------------------------------- */

static void
put_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static struct json_object *
gen_record(struct qobj *o, uint64_t k, int64_t ms)
{
	static const char *const actions[] = {"changedPassword",
	                                      "PermSetAssign", "createduser",
	                                      "changedProfileForUser"};
	static const char *const industries[] = {"Banking", "Retail",
	                                         "Technology", "Energy"};
	struct json_object *r = json_object_new_object();
	char id[40], t[48], buf[128];
	const struct qdef *d = o->def;
	unsigned long long kk = (unsigned long long)k;

	snprintf(id, sizeof(id), "%sxx%010lluAAA",
	         d != NULL ? d->prefix : "a00", kk % 10000000000ULL);
	sf_datetime(t, sizeof(t), ms);
	switch (d != NULL ? d->kind : K_OTHER) {
	case K_AUDIT: {
		struct json_object *by = json_object_new_object();
		put_str(r, "Id", id);
		put_str(r, "Action", actions[k % 4]);
		put_str(r, "Section", "Manage Users");
		put_str(r, "CreatedDate", t);
		put_str(r, "CreatedById", "005xx000001X8UzAAK");
		put_str(by, "Username", "admin@sfmock.test");
		put_str(by, "Name", "Admin User");
		json_object_object_add(r, "CreatedBy", by);
		snprintf(buf, sizeof(buf),
		         "Changed password for user user%llu@sfmock.test", kk);
		put_str(r, "Display", buf);
		json_object_object_add(r, "DelegateUser", NULL);
		json_object_object_add(r, "ResponsibleNamespacePrefix", NULL);
		break;
	}
	case K_LOGIN_HISTORY:
		put_str(r, "Id", id);
		snprintf(buf, sizeof(buf), "005xx%010lluAAA", kk % 7);
		put_str(r, "UserId", buf);
		put_str(r, "LoginTime", t);
		put_str(r, "LoginType", "Application");
		put_str(r, "LoginUrl", "login.salesforce.com");
		snprintf(buf, sizeof(buf), "10.0.%llu.%llu", (kk / 250) % 250,
		         kk % 250);
		put_str(r, "SourceIp", buf);
		put_str(r, "Status",
		        k % 5 == 0 ? "Invalid Password" : "Success");
		put_str(r, "Application", "Browser");
		put_str(r, "Browser", "Chrome 120");
		put_str(r, "Platform", "Mac OSX");
		json_object_object_add(r, "ApiType", NULL);
		json_object_object_add(r, "ApiVersion", NULL);
		put_str(r, "CountryIso", "US");
		put_str(r, "TlsProtocol", "TLS 1.3");
		break;
	case K_ACCOUNT:
		put_str(r, "Id", id);
		snprintf(buf, sizeof(buf), "Account %llu", kk);
		put_str(r, "Name", buf);
		put_str(r, "Industry", industries[k % 4]);
		put_str(r, "OwnerId", "005xx000001X8UzAAK");
		put_str(r, "CreatedDate", t);
		put_str(r, "LastModifiedDate", t);
		put_str(r, "SystemModstamp", t);
		json_object_object_add(r, "IsDeleted",
		                       json_object_new_boolean(0));
		break;
	case K_LOGIN_EVENT:
		/* Big objects carry no usable Id. */
		put_str(r, "Id", "000000000000000AAA");
		snprintf(buf, sizeof(buf), "%08llx-0000-4000-8000-%012llx",
		         kk >> 32, kk & 0xffffffffULL);
		put_str(r, "EventIdentifier", buf);
		put_str(r, "EventDate", t);
		snprintf(buf, sizeof(buf), "005xx%010lluAAA", kk % 7);
		put_str(r, "UserId", buf);
		snprintf(buf, sizeof(buf), "user%llu@sfmock.test", kk % 7);
		put_str(r, "Username", buf);
		put_str(r, "LoginType", "Application");
		put_str(r, "LoginUrl", "login.salesforce.com");
		snprintf(buf, sizeof(buf), "10.1.%llu.%llu", (kk / 250) % 250,
		         kk % 250);
		put_str(r, "SourceIp", buf);
		put_str(r, "Status", "Success");
		put_str(r, "Application", "Browser");
		put_str(r, "Browser", "Firefox 121");
		put_str(r, "Platform", "Linux");
		put_str(r, "CountryIso", "DE");
		snprintf(buf, sizeof(buf), "sk%llu", kk);
		put_str(r, "SessionKey", buf);
		snprintf(buf, sizeof(buf), "lk%llu", kk);
		put_str(r, "LoginKey", buf);
		break;
	case K_OTHER:
		put_str(r, "Id", id);
		snprintf(buf, sizeof(buf), "%s %llu", o->name, kk);
		put_str(r, "Name", buf);
		put_str(r, "CreatedDate", t);
		put_str(r, "LastModifiedDate", t);
		put_str(r, "SystemModstamp", t);
		break;
	}
	return r;
}

/* Learns the field paths of a record (relationship fields one level
 * deep). */
static void
learn_fields(struct qobj *o, struct json_object *r)
{
	json_object_object_foreach(r, key, val)
	{
		if (strcmp(key, "attributes") == 0)
			continue;
		field_add(o, key, strlen(key));
		if (json_object_is_type(val, json_type_object)) {
			json_object_object_foreach(val, k2, v2)
			{
				char path[256];
				(void)v2;
				int n = snprintf(path, sizeof(path), "%s.%s",
				                 key, k2);
				if (n > 0 && (size_t)n < sizeof(path) &&
				    strcmp(k2, "attributes") != 0)
					field_add(o, path, (size_t)n);
			}
		}
	}
}

static void
record_add(struct qobj *o, struct json_object *r)
{
	if (o->n == o->cap) {
		size_t ncap = o->cap ? o->cap * 2 : 256;
		struct json_object **g = realloc(o->recs, ncap * sizeof(*g));
		if (g == NULL)
			abort();
		o->recs = g;
		o->cap = ncap;
	}
	o->recs[o->n++] = r;
	learn_fields(o, r);
}

/* Replies ------------------------------------------------------------- */

static void
limit_header(struct query *q, struct evhttp_request *req)
{
	char v[160];
	unsigned long long used =
	    (unsigned long long)org_stats(q->org)->api_calls;
	snprintf(
	    v, sizeof(v),
	    "api-usage=%llu/%lld; per-app-api-usage=%llu/%lld(appName=sfmock)",
	    used, (long long)q->api_max, used, (long long)q->api_max);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Sforce-Limit-Info", v);
}

/* One Salesforce error body: [{"message":..,"errorCode":..}]. */
static void
sf_error(struct evbuffer *out, const char *code, const char *msg)
{
	evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_add(out, "[{\"message\":", 12);
	util_json_str(out, msg);
	evbuffer_add(out, ",\"errorCode\":", 13);
	util_json_str(out, code);
	evbuffer_add(out, "}]", 2);
}

/* SOQL lexing --------------------------------------------------------- */

enum tkind {
	T_END,
	T_IDENT,
	T_STRING,
	T_NUMBER,
	T_DATETIME,
	T_DATE,
	T_LPAREN,
	T_RPAREN,
	T_COMMA,
	T_OP,
};

struct tok {
	enum tkind k;
	const char *s; /* source text */
	size_t n;
	size_t pos; /* 0-based column */
	char *str;  /* T_STRING: decoded */
	double num;
	int64_t ms; /* T_DATETIME: ms; T_DATE: days */
	char op[3];
};

struct lex {
	struct tok *t;
	size_t n, cap;
};

static void
lex_free(struct lex *lx)
{
	for (size_t i = 0; i < lx->n; i++)
		free(lx->t[i].str);
	free(lx->t);
	memset(lx, 0, sizeof(*lx));
}

static struct tok *
lex_push(struct lex *lx)
{
	if (lx->n == lx->cap) {
		size_t ncap = lx->cap ? lx->cap * 2 : 32;
		struct tok *g = realloc(lx->t, ncap * sizeof(*g));
		if (g == NULL)
			abort();
		lx->t = g;
		lx->cap = ncap;
	}
	struct tok *t = &lx->t[lx->n++];
	memset(t, 0, sizeof(*t));
	return t;
}

/* Writes Salesforce's MALFORMED_QUERY text for an error at column pos. */
static void
malformed(char *err, size_t errlen, const char *soql, size_t pos,
          const char *what)
{
	snprintf(err, errlen, "\n%.200s\n%*s^\nERROR at Row:1:Column:%zu\n%s",
	         soql, (int)(pos > 200 ? 200 : pos), "", pos + 1, what);
}

static int
lex(const char *s, struct lex *lx, char *err, size_t errlen)
{
	size_t i = 0;
	memset(lx, 0, sizeof(*lx));
	for (;;) {
		while (isspace((unsigned char)s[i]))
			i++;
		struct tok *t = lex_push(lx);
		t->s = s + i;
		t->pos = i;
		char c = s[i];
		int64_t v;
		size_t used;
		if (c == '\0') {
			t->k = T_END;
			return 0;
		}
		if (c == '(' || c == ')' || c == ',') {
			t->k = c == '('   ? T_LPAREN
			       : c == ')' ? T_RPAREN
			                  : T_COMMA;
			t->n = 1;
			i++;
		} else if (strchr("=!<>", c) != NULL) {
			t->k = T_OP;
			t->op[0] = c;
			t->n = 1;
			if ((c == '!' || c == '<' || c == '>') &&
			    s[i + 1] == '=') {
				t->op[1] = '=';
				t->n = 2;
			} else if (c == '<' && s[i + 1] == '>') {
				t->op[0] = '!';
				t->op[1] = '=';
				t->n = 2;
			} else if (c == '!') {
				malformed(err, errlen, s, i,
				          "unexpected token: '!'");
				return -1;
			}
			i += t->n;
		} else if (c == '\'') {
			struct evbuffer *b = evbuffer_new();
			size_t j = i + 1;
			for (; s[j] != '\0' && s[j] != '\''; j++) {
				if (s[j] == '\\' && s[j + 1] != '\0') {
					j++;
					char e = s[j] == 'n'   ? '\n'
					         : s[j] == 't' ? '\t'
					         : s[j] == 'r' ? '\r'
					                       : s[j];
					evbuffer_add(b, &e, 1);
				} else {
					evbuffer_add(b, &s[j], 1);
				}
			}
			if (s[j] != '\'') {
				evbuffer_free(b);
				malformed(err, errlen, s, i,
				          "unterminated string literal");
				return -1;
			}
			size_t n = evbuffer_get_length(b);
			t->str = malloc(n + 1);
			if (t->str == NULL)
				abort();
			evbuffer_remove(b, t->str, n);
			t->str[n] = '\0';
			evbuffer_free(b);
			t->k = T_STRING;
			t->n = j + 1 - i;
			i = j + 1;
		} else if ((used = parse_datetime(s + i, &v)) > 0) {
			t->k = T_DATETIME;
			t->ms = v;
			t->n = used;
			i += used;
		} else if ((used = parse_date(s + i, &v)) > 0 &&
		           !isalnum((unsigned char)s[i + used])) {
			t->k = T_DATE;
			t->ms = v;
			t->n = used;
			i += used;
		} else if (isdigit((unsigned char)c) ||
		           (c == '-' && isdigit((unsigned char)s[i + 1]))) {
			char *end;
			t->num = strtod(s + i, &end);
			t->k = T_NUMBER;
			t->n = (size_t)(end - (s + i));
			i += t->n;
		} else if (isalpha((unsigned char)c) || c == '_') {
			size_t j = i;
			while (isalnum((unsigned char)s[j]) || s[j] == '_' ||
			       s[j] == '.')
				j++;
			t->k = T_IDENT;
			t->n = j - i;
			i = j;
		} else {
			char what[64];
			snprintf(what, sizeof(what), "unexpected token: '%c'",
			         c);
			malformed(err, errlen, s, i, what);
			return -1;
		}
	}
}

/* SOQL parsing ---------------------------------------------------------- */

enum vkind { V_NULL, V_BOOL, V_NUM, V_STR, V_DT, V_DATE };

struct value {
	enum vkind k;
	double num;
	int b;
	const char *str; /* borrowed from the token */
	int64_t ms;
};

enum nkind { N_AND, N_OR, N_NOT, N_CMP, N_IN, N_LIKE };

struct node {
	enum nkind k;
	struct node *a, *b;
	char field[256];
	char op[3];
	struct value v;
	struct value *list;
	size_t nlist;
	int negate;
};

struct order {
	char field[256];
	int desc;
	int nulls_first;
};

enum fields_fn { FN_NONE, FN_STANDARD, FN_ALL, FN_CUSTOM };

struct soql {
	char (*select)[256];
	size_t nselect;
	enum fields_fn fn;
	char object[128];
	struct node *where;
	struct order order[8];
	size_t norder;
	long limit;
};

struct parser {
	struct lex *lx;
	size_t i;
	const char *soql;
	char *err;
	size_t errlen;
	const char *code; /* errorCode on failure */
};

static void
node_free(struct node *n)
{
	if (n == NULL)
		return;
	node_free(n->a);
	node_free(n->b);
	free(n->list);
	free(n);
}

static struct tok *
peek(struct parser *p)
{
	return &p->lx->t[p->i];
}

static int
is_kw(const struct tok *t, const char *kw)
{
	return t->k == T_IDENT && t->n == strlen(kw) &&
	       strncasecmp(t->s, kw, t->n) == 0;
}

static int
fail_at(struct parser *p, const struct tok *t)
{
	char what[160];
	if (t->k == T_END)
		snprintf(what, sizeof(what), "unexpected token: <EOF>");
	else
		snprintf(what, sizeof(what), "unexpected token: '%.*s'",
		         (int)(t->n > 60 ? 60 : t->n), t->s);
	malformed(p->err, p->errlen, p->soql, t->pos, what);
	p->code = "MALFORMED_QUERY";
	return -1;
}

static int
expect_kw(struct parser *p, const char *kw)
{
	if (!is_kw(peek(p), kw))
		return fail_at(p, peek(p));
	p->i++;
	return 0;
}

static int
ident_into(struct parser *p, char *buf, size_t len)
{
	struct tok *t = peek(p);
	if (t->k != T_IDENT || t->n >= len)
		return fail_at(p, t);
	memcpy(buf, t->s, t->n);
	buf[t->n] = '\0';
	p->i++;
	return 0;
}

static int
parse_value(struct parser *p, struct value *v)
{
	struct tok *t = peek(p);
	memset(v, 0, sizeof(*v));
	switch (t->k) {
	case T_STRING:
		v->k = V_STR;
		v->str = t->str;
		break;
	case T_NUMBER:
		v->k = V_NUM;
		v->num = t->num;
		break;
	case T_DATETIME:
		v->k = V_DT;
		v->ms = t->ms;
		break;
	case T_DATE:
		v->k = V_DATE;
		v->ms = t->ms;
		break;
	case T_IDENT:
		if (is_kw(t, "null"))
			v->k = V_NULL;
		else if (is_kw(t, "true") || is_kw(t, "false")) {
			v->k = V_BOOL;
			v->b = is_kw(t, "true");
		} else
			return fail_at(p, t);
		break;
	default:
		return fail_at(p, t);
	}
	p->i++;
	return 0;
}

static struct node *parse_or(struct parser *p);

static struct node *
parse_cond(struct parser *p)
{
	struct node *n = calloc(1, sizeof(*n));
	if (n == NULL)
		abort();
	if (ident_into(p, n->field, sizeof(n->field)) != 0)
		goto fail;
	struct tok *t = peek(p);
	if (is_kw(t, "NOT") || is_kw(t, "IN")) {
		if (is_kw(t, "NOT")) {
			n->negate = 1;
			p->i++;
		}
		if (expect_kw(p, "IN") != 0)
			goto fail;
		n->k = N_IN;
		if (peek(p)->k != T_LPAREN) {
			fail_at(p, peek(p));
			goto fail;
		}
		p->i++;
		for (;;) {
			struct value *g =
			    realloc(n->list, (n->nlist + 1) * sizeof(*g));
			if (g == NULL)
				abort();
			n->list = g;
			if (parse_value(p, &n->list[n->nlist]) != 0)
				goto fail;
			n->nlist++;
			if (peek(p)->k == T_COMMA) {
				p->i++;
				continue;
			}
			if (peek(p)->k != T_RPAREN) {
				fail_at(p, peek(p));
				goto fail;
			}
			p->i++;
			break;
		}
		return n;
	}
	if (is_kw(t, "LIKE")) {
		p->i++;
		n->k = N_LIKE;
		if (peek(p)->k != T_STRING) {
			fail_at(p, peek(p));
			goto fail;
		}
		return parse_value(p, &n->v) == 0 ? n : (node_free(n), NULL);
	}
	if (t->k != T_OP) {
		fail_at(p, t);
		goto fail;
	}
	n->k = N_CMP;
	memcpy(n->op, t->op, sizeof(n->op));
	p->i++;
	if (parse_value(p, &n->v) != 0)
		goto fail;
	return n;
fail:
	node_free(n);
	return NULL;
}

static struct node *
parse_factor(struct parser *p)
{
	if (is_kw(peek(p), "NOT")) {
		p->i++;
		struct node *a = parse_factor(p);
		if (a == NULL)
			return NULL;
		struct node *n = calloc(1, sizeof(*n));
		if (n == NULL)
			abort();
		n->k = N_NOT;
		n->a = a;
		return n;
	}
	if (peek(p)->k == T_LPAREN) {
		p->i++;
		struct node *n = parse_or(p);
		if (n == NULL)
			return NULL;
		if (peek(p)->k != T_RPAREN) {
			fail_at(p, peek(p));
			node_free(n);
			return NULL;
		}
		p->i++;
		return n;
	}
	return parse_cond(p);
}

static struct node *
parse_binary(struct parser *p, const char *kw, enum nkind k,
             struct node *(*sub)(struct parser *))
{
	struct node *left = sub(p);
	while (left != NULL && is_kw(peek(p), kw)) {
		p->i++;
		struct node *right = sub(p);
		if (right == NULL) {
			node_free(left);
			return NULL;
		}
		struct node *n = calloc(1, sizeof(*n));
		if (n == NULL)
			abort();
		n->k = k;
		n->a = left;
		n->b = right;
		left = n;
	}
	return left;
}

static struct node *
parse_and(struct parser *p)
{
	return parse_binary(p, "AND", N_AND, parse_factor);
}

static struct node *
parse_or(struct parser *p)
{
	return parse_binary(p, "OR", N_OR, parse_and);
}

static void
soql_clear(struct soql *s)
{
	free(s->select);
	node_free(s->where);
	memset(s, 0, sizeof(*s));
}

static int
parse_select(struct parser *p, struct soql *s)
{
	for (;;) {
		struct tok *t = peek(p);
		if (is_kw(t, "FIELDS") && p->lx->t[p->i + 1].k == T_LPAREN) {
			p->i += 2;
			struct tok *w = peek(p);
			enum fields_fn fn = is_kw(w, "STANDARD") ? FN_STANDARD
			                    : is_kw(w, "ALL")    ? FN_ALL
			                    : is_kw(w, "CUSTOM") ? FN_CUSTOM
			                                         : FN_NONE;
			if (fn == FN_NONE || s->fn != FN_NONE)
				return fail_at(p, w);
			p->i++;
			if (peek(p)->k != T_RPAREN)
				return fail_at(p, peek(p));
			p->i++;
			s->fn = fn;
		} else {
			void *g = realloc(s->select, (s->nselect + 1) *
			                                 sizeof(*s->select));
			if (g == NULL)
				abort();
			s->select = g;
			if (ident_into(p, s->select[s->nselect],
			               sizeof(s->select[0])) != 0)
				return -1;
			if (is_kw(&p->lx->t[p->i - 1], "FROM"))
				return fail_at(p, &p->lx->t[p->i - 1]);
			s->nselect++;
		}
		if (peek(p)->k != T_COMMA)
			return 0;
		p->i++;
	}
}

/* Parses text into s. String values point into lx's tokens: the caller
 * keeps lx (lex_free) until it is done with s (soql_clear). */
static int
parse_soql(const char *text, struct lex *lx, struct soql *s, char *err,
           size_t errlen, const char **code)
{
	struct parser p = {lx, 0, text, err, errlen, "MALFORMED_QUERY"};
	memset(s, 0, sizeof(*s));
	s->limit = -1;
	*code = "MALFORMED_QUERY";
	if (lex(text, lx, err, errlen) != 0)
		return -1;
	if (expect_kw(&p, "SELECT") != 0 || parse_select(&p, s) != 0 ||
	    expect_kw(&p, "FROM") != 0 ||
	    ident_into(&p, s->object, sizeof(s->object)) != 0)
		goto fail;
	if (is_kw(peek(&p), "WHERE")) {
		p.i++;
		if ((s->where = parse_or(&p)) == NULL)
			goto fail;
	}
	if (is_kw(peek(&p), "ORDER")) {
		p.i++;
		if (expect_kw(&p, "BY") != 0)
			goto fail;
		for (;;) {
			if (s->norder ==
			    sizeof(s->order) / sizeof(s->order[0])) {
				fail_at(&p, peek(&p));
				goto fail;
			}
			struct order *o = &s->order[s->norder++];
			if (ident_into(&p, o->field, sizeof(o->field)) != 0)
				goto fail;
			if (is_kw(peek(&p), "ASC")) {
				p.i++;
			} else if (is_kw(peek(&p), "DESC")) {
				o->desc = 1;
				p.i++;
			}
			o->nulls_first = !o->desc;
			if (is_kw(peek(&p), "NULLS")) {
				p.i++;
				if (is_kw(peek(&p), "FIRST"))
					o->nulls_first = 1;
				else if (is_kw(peek(&p), "LAST"))
					o->nulls_first = 0;
				else {
					fail_at(&p, peek(&p));
					goto fail;
				}
				p.i++;
			}
			if (peek(&p)->k != T_COMMA)
				break;
			p.i++;
		}
	}
	if (is_kw(peek(&p), "LIMIT")) {
		p.i++;
		struct tok *t = peek(&p);
		if (t->k != T_NUMBER || t->num < 0 || t->num > 1e9 ||
		    t->num != (double)(long)t->num) {
			fail_at(&p, t);
			goto fail;
		}
		s->limit = (long)t->num;
		p.i++;
	}
	if (peek(&p)->k != T_END) {
		fail_at(&p, peek(&p));
		goto fail;
	}
	return 0;
fail:
	*code = p.code;
	soql_clear(s);
	return -1;
}

/* Validation ----------------------------------------------------------- */

static int
is_custom(const char *f)
{
	size_t n = strlen(f);
	return n > 3 && strcasecmp(f + n - 3, "__c") == 0;
}

static int
unknown_field(const struct qobj *o, const char *f, char *err, size_t errlen)
{
	if (strchr(f, '.') != NULL)
		snprintf(
		    err, errlen,
		    "Didn't understand relationship '%.*s' in field path. "
		    "If you are attempting to use a custom relationship, be "
		    "sure to append the '__r' after the custom relationship "
		    "name. Please reference your WSDL or the describe call "
		    "for the appropriate names.",
		    (int)strcspn(f, "."), f);
	else
		snprintf(
		    err, errlen,
		    "No such column '%s' on entity '%s'. If you are "
		    "attempting to use a custom field, be sure to append the "
		    "'__c' after the custom field name. Please reference your "
		    "WSDL or the describe call for the appropriate names.",
		    f, o->name);
	return -1;
}

static int
check_where(const struct qobj *o, const struct node *n, char *err,
            size_t errlen, const char **code)
{
	if (n == NULL)
		return 0;
	if (n->k == N_AND || n->k == N_OR || n->k == N_NOT)
		return check_where(o, n->a, err, errlen, code) ||
		       check_where(o, n->b, err, errlen, code);
	if (!field_known(o, n->field, NULL)) {
		*code = "INVALID_FIELD";
		return unknown_field(o, n->field, err, errlen);
	}
	if (o->def != NULL && o->def->big &&
	    strcasecmp(n->field, "EventDate") != 0 &&
	    strcasecmp(n->field, "EventIdentifier") != 0) {
		*code = "INVALID_QUERY_FILTER_OPERATOR";
		snprintf(err, errlen,
		         "%s can be filtered only on EventDate and "
		         "EventIdentifier",
		         o->name);
		return -1;
	}
	return 0;
}

static int
validate(const struct qobj *o, const struct soql *s, char *err, size_t errlen,
         const char **code)
{
	*code = "MALFORMED_QUERY";
	if ((s->fn == FN_ALL || s->fn == FN_CUSTOM) &&
	    (s->limit < 0 || s->limit > 200)) {
		snprintf(err, errlen,
		         "The SOQL FIELDS function must have a LIMIT of at "
		         "most 200");
		return -1;
	}
	if (s->nselect == 0 && s->fn == FN_NONE) {
		snprintf(err, errlen, "unexpected token: FROM");
		return -1;
	}
	for (size_t i = 0; i < s->nselect; i++) {
		const char *f = s->select[i];
		if (!field_known(o, f, NULL)) {
			*code = "INVALID_FIELD";
			return unknown_field(o, f, err, errlen);
		}
		int dup = (s->fn == FN_ALL ||
		           (s->fn == FN_STANDARD && !is_custom(f)) ||
		           (s->fn == FN_CUSTOM && is_custom(f))) &&
		          strchr(f, '.') == NULL;
		for (size_t j = 0; j < i && !dup; j++)
			dup = strcasecmp(s->select[j], f) == 0;
		if (dup) {
			*code = "INVALID_FIELD";
			snprintf(err, errlen, "duplicate field selected: %s",
			         f);
			return -1;
		}
	}
	if (check_where(o, s->where, err, errlen, code) != 0)
		return -1;
	for (size_t i = 0; i < s->norder; i++) {
		if (!field_known(o, s->order[i].field, NULL)) {
			*code = "INVALID_FIELD";
			return unknown_field(o, s->order[i].field, err, errlen);
		}
		if (o->def != NULL && o->def->big &&
		    (strcasecmp(s->order[i].field, "EventDate") != 0 ||
		     !s->order[i].desc)) {
			snprintf(err, errlen,
			         "%s can be ordered only by EventDate DESC",
			         o->name);
			return -1;
		}
	}
	return 0;
}

/* Evaluation ------------------------------------------------------------- */

/* The value at a field path (keys matched ignoring case), borrowed. */
static struct json_object *
get_path(struct json_object *r, const char *path)
{
	char seg[256];
	while (r != NULL && *path != '\0') {
		size_t n = strcspn(path, ".");
		if (n >= sizeof(seg) ||
		    !json_object_is_type(r, json_type_object))
			return NULL;
		memcpy(seg, path, n);
		seg[n] = '\0';
		struct json_object *next = NULL;
		json_object_object_foreach(r, key, val)
		{
			if (strcasecmp(key, seg) == 0) {
				next = val;
				break;
			}
		}
		r = next;
		path += n + (path[n] == '.');
	}
	return r;
}

static int
sign(double d)
{
	return d < 0 ? -1 : d > 0 ? 1 : 0;
}

/* -1, 0, 1, or -2 when the two cannot be compared. */
static int
compare(struct json_object *rv, const struct value *v)
{
	int64_t ms;
	const char *s;
	switch (v->k) {
	case V_DT:
		if (!json_object_is_type(rv, json_type_string))
			return -2;
		s = json_object_get_string(rv);
		if (parse_datetime(s, &ms) != strlen(s))
			return -2;
		return ms < v->ms ? -1 : ms > v->ms ? 1 : 0;
	case V_DATE:
		if (!json_object_is_type(rv, json_type_string) ||
		    parse_date(json_object_get_string(rv), &ms) == 0)
			return -2;
		return ms < v->ms ? -1 : ms > v->ms ? 1 : 0;
	case V_NUM:
		if (!json_object_is_type(rv, json_type_int) &&
		    !json_object_is_type(rv, json_type_double))
			return -2;
		return sign(json_object_get_double(rv) - v->num);
	case V_BOOL:
		if (!json_object_is_type(rv, json_type_boolean))
			return -2;
		return json_object_get_boolean(rv) - v->b;
	case V_STR:
		if (!json_object_is_type(rv, json_type_string))
			return -2;
		return sign(strcasecmp(json_object_get_string(rv), v->str));
	case V_NULL:
		break;
	}
	return -2;
}

static int
is_null(struct json_object *rv)
{
	return rv == NULL || json_object_is_type(rv, json_type_null);
}

static int
like(const char *pat, const char *s)
{
	for (; *pat != '\0'; pat++, s++) {
		if (*pat == '%') {
			for (const char *t = s;; t++) {
				if (like(pat + 1, t))
					return 1;
				if (*t == '\0')
					return 0;
			}
		}
		if (*s == '\0')
			return 0;
		if (*pat != '_' &&
		    tolower((unsigned char)*pat) != tolower((unsigned char)*s))
			return 0;
	}
	return *s == '\0';
}

static int
cmp_op(const char *op, struct json_object *rv, const struct value *v)
{
	if (v->k == V_NULL) {
		if (strcmp(op, "=") == 0)
			return is_null(rv);
		if (strcmp(op, "!=") == 0)
			return !is_null(rv);
		return 0;
	}
	if (is_null(rv))
		return strcmp(op, "!=") == 0;
	int c = compare(rv, v);
	if (c == -2)
		return 0;
	if (strcmp(op, "=") == 0)
		return c == 0;
	if (strcmp(op, "!=") == 0)
		return c != 0;
	if (strcmp(op, "<") == 0)
		return c < 0;
	if (strcmp(op, "<=") == 0)
		return c <= 0;
	if (strcmp(op, ">") == 0)
		return c > 0;
	return c >= 0;
}

static int
eval(const struct node *n, struct json_object *r)
{
	if (n == NULL)
		return 1;
	switch (n->k) {
	case N_AND:
		return eval(n->a, r) && eval(n->b, r);
	case N_OR:
		return eval(n->a, r) || eval(n->b, r);
	case N_NOT:
		return !eval(n->a, r);
	case N_CMP:
		return cmp_op(n->op, get_path(r, n->field), &n->v);
	case N_IN: {
		struct json_object *rv = get_path(r, n->field);
		int hit = 0;
		for (size_t i = 0; i < n->nlist && !hit; i++)
			hit = cmp_op("=", rv, &n->list[i]);
		return n->negate ? !hit : hit;
	}
	case N_LIKE: {
		struct json_object *rv = get_path(r, n->field);
		return json_object_is_type(rv, json_type_string) &&
		       like(n->v.str, json_object_get_string(rv));
	}
	}
	return 0;
}

/* Ordering: nulls first or last, then datetimes by time, numbers by value,
 * strings by bytes. */
static int
order_cmp(const struct soql *s, struct json_object *x, struct json_object *y)
{
	for (size_t i = 0; i < s->norder; i++) {
		const struct order *o = &s->order[i];
		struct json_object *a = get_path(x, o->field);
		struct json_object *b = get_path(y, o->field);
		int c;
		if (is_null(a) || is_null(b)) {
			if (is_null(a) && is_null(b))
				continue;
			c = is_null(a) ? -1 : 1;
			if (!o->nulls_first)
				c = -c;
			return c;
		}
		int64_t ta, tb;
		const char *sa = json_object_get_string(a);
		const char *sb = json_object_get_string(b);
		if (json_object_is_type(a, json_type_string) &&
		    json_object_is_type(b, json_type_string) &&
		    parse_datetime(sa, &ta) == strlen(sa) &&
		    parse_datetime(sb, &tb) == strlen(sb))
			c = ta < tb ? -1 : ta > tb;
		else if (!json_object_is_type(a, json_type_string) &&
		         !json_object_is_type(b, json_type_string))
			c = sign(json_object_get_double(a) -
			         json_object_get_double(b));
		else
			c = sign(strcmp(sa, sb));
		if (c != 0)
			return o->desc ? -c : c;
	}
	return 0;
}

/* Stable merge sort (the ties keep insertion order, like a table scan). */
static void
sort_records(const struct soql *s, struct json_object **v, size_t n)
{
	if (n < 2)
		return;
	struct json_object **tmp = malloc(n * sizeof(*tmp));
	if (tmp == NULL)
		abort();
	for (size_t width = 1; width < n; width *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * width) {
			size_t mid = lo + width < n ? lo + width : n;
			size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
			size_t i = lo, j = mid, k = lo;
			while (i < mid && j < hi)
				tmp[k++] = order_cmp(s, v[j], v[i]) < 0
				               ? v[j++]
				               : v[i++];
			while (i < mid)
				tmp[k++] = v[i++];
			while (j < hi)
				tmp[k++] = v[j++];
		}
		memcpy(v, tmp, n * sizeof(*v));
	}
	free(tmp);
}

/* Projection -------------------------------------------------------------- */

static struct json_object *
attributes(const char *type, const char *ver, const char *id)
{
	struct json_object *a = json_object_new_object();
	char url[1024];
	put_str(a, "type", type);
	snprintf(url, sizeof(url), "/services/data/v%s/sobjects/%s/%s", ver,
	         type, id != NULL ? id : "");
	put_str(a, "url", url);
	return a;
}

static const char *
rel_type(const char *rel)
{
	static const char *const users[] = {"CreatedBy", "LastModifiedBy",
	                                    "Owner", "DelegateUser", "User"};
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
		if (strcasecmp(rel, users[i]) == 0)
			return "User";
	return rel;
}

static void
project_field(struct json_object *out, struct json_object *r, const char *canon,
              const char *ver)
{
	const char *dot = strchr(canon, '.');
	if (dot == NULL) {
		if (!json_object_object_get_ex(out, canon, NULL))
			json_object_object_add(
			    out, canon, json_object_get(get_path(r, canon)));
		return;
	}
	char rel[256];
	size_t n = (size_t)(dot - canon);
	if (n >= sizeof(rel))
		return;
	memcpy(rel, canon, n);
	rel[n] = '\0';
	struct json_object *src = get_path(r, rel);
	struct json_object *dst = NULL;
	if (!json_object_is_type(src, json_type_object)) {
		if (!json_object_object_get_ex(out, rel, NULL))
			json_object_object_add(out, rel, NULL);
		return;
	}
	if (!json_object_object_get_ex(out, rel, &dst) || dst == NULL) {
		struct json_object *id = get_path(src, "Id");
		dst = json_object_new_object();
		json_object_object_add(
		    dst, "attributes",
		    attributes(rel_type(rel), ver,
		               id != NULL ? json_object_get_string(id) : NULL));
		json_object_object_add(out, rel, dst);
	}
	json_object_object_add(dst, dot + 1,
	                       json_object_get(get_path(src, dot + 1)));
}

static char *
project(const struct qobj *o, const struct soql *s, struct json_object *r,
        const char *ver)
{
	struct json_object *out = json_object_new_object();
	struct json_object *id = get_path(r, "Id");
	json_object_object_add(
	    out, "attributes",
	    attributes(o->name, ver,
	               id != NULL ? json_object_get_string(id) : NULL));
	for (size_t i = 0; s->fn != FN_NONE && i < o->nfields; i++) {
		const char *f = o->fields[i];
		if (strchr(f, '.') != NULL ||
		    (s->fn == FN_STANDARD && is_custom(f)) ||
		    (s->fn == FN_CUSTOM && !is_custom(f)))
			continue;
		project_field(out, r, f, ver);
	}
	for (size_t i = 0; i < s->nselect; i++) {
		const char *canon = s->select[i];
		field_known(o, s->select[i], &canon);
		project_field(out, r, canon, ver);
	}
	char *text = strdup(json_object_to_json_string_ext(out, JSON_FLAGS));
	json_object_put(out);
	if (text == NULL)
		abort();
	return text;
}

/* Cursors and pages -------------------------------------------------------- */

static void
page_body(struct evbuffer *out, size_t total, int done, const char *next,
          char *const *texts, size_t n)
{
	evbuffer_add_printf(out, "{\"totalSize\":%zu,\"done\":%s", total,
	                    done ? "true" : "false");
	if (!done)
		evbuffer_add_printf(out, ",\"nextRecordsUrl\":\"%s\"", next);
	evbuffer_add(out, ",\"records\":[", 12);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		evbuffer_add(out, texts[i], strlen(texts[i]));
	}
	evbuffer_add(out, "]}", 2);
}

static struct cursor *
cursor_slot(struct query *q)
{
	struct cursor *oldest = &q->cursors[0];
	for (size_t i = 0; i < QUERY_MAX_CURSORS; i++) {
		if (q->cursors[i].texts == NULL)
			return &q->cursors[i];
		if (q->cursors[i].born < oldest->born)
			oldest = &q->cursors[i];
	}
	/* Like an expired query locator: the oldest goes. */
	cursor_clear(oldest);
	return oldest;
}

static void
remember_soql(struct query *q, const char *soql)
{
	if (q->nrecent == QUERY_RECENT) {
		free(q->recent[0]);
		memmove(q->recent, q->recent + 1,
		        (QUERY_RECENT - 1) * sizeof(*q->recent));
		q->nrecent--;
	}
	q->recent[q->nrecent++] = xstrndup(soql, strlen(soql));
}

/* Runs a query; writes the reply body into out and returns the status. */
static int
run_query(struct query *q, const char *ver, const char *text,
          struct evbuffer *out)
{
	char err[1024];
	const char *code = "MALFORMED_QUERY";
	struct lex lx;
	struct soql s;

	q->queries++;
	remember_soql(q, text);
	if (parse_soql(text, &lx, &s, err, sizeof(err), &code) != 0) {
		lex_free(&lx);
		sf_error(out, code, err);
		return 400;
	}
	struct qobj *o = qobj_find(q, s.object);
	int status = 400;
	if (o == NULL) {
		snprintf(
		    err, sizeof(err),
		    "sObject type '%s' is not supported. If you are "
		    "attempting to use a custom object, be sure to append "
		    "the '__c' after the entity name. Please reference your "
		    "WSDL or the describe call for the appropriate names.",
		    s.object);
		sf_error(out, "INVALID_TYPE", err);
		goto done;
	}
	if (validate(o, &s, err, sizeof(err), &code) != 0) {
		sf_error(out, code, err);
		goto done;
	}
	struct json_object **hits = malloc((o->n + 1) * sizeof(*hits));
	if (hits == NULL)
		abort();
	size_t n = 0;
	for (size_t i = 0; i < o->n; i++)
		if (eval(s.where, o->recs[i]))
			hits[n++] = o->recs[i];
	if (s.norder == 0 && o->def != NULL && o->def->big) {
		/* A big object comes back in index order: newest first. */
		s.norder = 1;
		snprintf(s.order[0].field, sizeof(s.order[0].field),
		         "EventDate");
		s.order[0].desc = 1;
	}
	sort_records(&s, hits, n);
	if (s.limit >= 0 && (size_t)s.limit < n)
		n = (size_t)s.limit;
	char **texts = calloc(n + 1, sizeof(*texts));
	if (texts == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		texts[i] = project(o, &s, hits[i], ver);
	free(hits);
	if (n <= QUERY_PAGE) {
		page_body(out, n, 1, NULL, texts, n);
		for (size_t i = 0; i < n; i++)
			free(texts[i]);
		free(texts);
	} else {
		struct cursor *c = cursor_slot(q);
		char next[128];
		snprintf(c->id, sizeof(c->id), "01gxx%010lluAAA",
		         (unsigned long long)++q->cursor_seq);
		c->texts = texts;
		c->n = n;
		c->born = q->cursor_seq;
		snprintf(next, sizeof(next), "/services/data/v%s/query/%s-%d",
		         ver, c->id, QUERY_PAGE);
		page_body(out, n, 0, next, texts, QUERY_PAGE);
	}
	status = 200;
done:
	soql_clear(&s);
	lex_free(&lx);
	return status;
}

/* The next page of a cursor: locator is "<id>-<offset>". */
static int
run_more(struct query *q, const char *ver, const char *locator,
         struct evbuffer *out)
{
	const char *dash = strrchr(locator, '-');
	int64_t off;
	q->query_more++;
	struct cursor *c = NULL;
	if (dash != NULL &&
	    util_parse_i64(dash + 1, 1, QUERY_MAX_RECORDS, &off) == 0) {
		for (size_t i = 0; i < QUERY_MAX_CURSORS && c == NULL; i++)
			if (q->cursors[i].texts != NULL &&
			    strlen(q->cursors[i].id) ==
			        (size_t)(dash - locator) &&
			    strncmp(q->cursors[i].id, locator,
			            (size_t)(dash - locator)) == 0)
				c = &q->cursors[i];
	}
	if (c == NULL || (size_t)off >= c->n) {
		sf_error(out, "INVALID_QUERY_LOCATOR", "invalid query locator");
		return 400;
	}
	size_t start = (size_t)off;
	size_t n = c->n - start < QUERY_PAGE ? c->n - start : QUERY_PAGE;
	int done = start + n == c->n;
	char next[128];
	snprintf(next, sizeof(next), "/services/data/v%s/query/%s-%zu", ver,
	         c->id, start + n);
	page_body(out, c->n, done, next, c->texts + start, n);
	if (done)
		cursor_clear(c);
	return 200;
}

/* Routing ----------------------------------------------------------------- */

/* "/services/data/v61.0/rest" -> ver "61.0" and rest. Returns 0 or -1. */
static int
split_version(const char *path, char *ver, size_t verlen, const char **rest)
{
	const char *p = path + strlen("/services/data/v");
	const char *v = p;
	if (strncmp(path, "/services/data/v", 16) != 0 ||
	    !isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p++ != '.' || !isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p))
		p++;
	if ((size_t)(p - v) >= verlen)
		return -1;
	memcpy(ver, v, (size_t)(p - v));
	ver[p - v] = '\0';
	*rest = p;
	return 0;
}

enum route { R_NONE, R_QUERY, R_MORE, R_COMPOSITE };

static enum route
route_of(const char *rest, const char **locator)
{
	if (strcmp(rest, "/query") == 0 || strcmp(rest, "/query/") == 0)
		return R_QUERY;
	if (strncmp(rest, "/query/", 7) == 0 && strchr(rest + 7, '/') == NULL) {
		*locator = rest + 7;
		return R_MORE;
	}
	if (strcmp(rest, "/composite") == 0 || strcmp(rest, "/composite/") == 0)
		return R_COMPOSITE;
	return R_NONE;
}

/* Runs one GET (top level or a composite subrequest) on path?query. */
static int
run_get(struct query *q, const char *ver, enum route r, const char *locator,
        const char *query, struct evbuffer *out)
{
	if (r == R_MORE)
		return run_more(q, ver, locator, out);
	struct evkeyvalq form;
	form.tqh_first = NULL;
	form.tqh_last = &form.tqh_first;
	const char *soql = NULL;
	if (query != NULL && util_form_parse(query, strlen(query), &form) == 0)
		soql = evhttp_find_header(&form, "q");
	int status;
	if (soql == NULL || soql[0] == '\0') {
		sf_error(out, "MALFORMED_QUERY",
		         "A query string has to be specified");
		status = 400;
	} else {
		status = run_query(q, ver, soql, out);
	}
	evhttp_clear_headers(&form);
	return status;
}

static int
ref_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return 0;
	return 1;
}

/* Composite: validates the whole request first, then runs each
 * subrequest. Returns the status; out holds the body. */
static int
run_composite(struct query *q, const char *body, size_t len,
              struct evbuffer *out)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *root = NULL, *arr = NULL;
	int status = 400;
	if (tok == NULL)
		abort();
	if (len <= 16 * 1024 * 1024)
		root = json_tokener_parse_ex(tok, body, (int)len);
	if (root == NULL || json_tokener_get_parse_end(tok) != len ||
	    !json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "compositeRequest", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		sf_error(out, "JSON_PARSER_ERROR",
		         "The request body must be an object with a "
		         "compositeRequest array");
		goto out;
	}
	size_t n = json_object_array_length(arr), queries = 0;
	if (n == 0 || n > COMPOSITE_MAX_SUBS) {
		sf_error(out, "INVALID_BATCH_REQUEST",
		         "A composite request must have between 1 and 25 "
		         "subrequests");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *sub = json_object_array_get_idx(arr, i);
		struct json_object *m, *u, *r;
		if (!json_object_is_type(sub, json_type_object) ||
		    !json_object_object_get_ex(sub, "method", &m) ||
		    !json_object_object_get_ex(sub, "url", &u) ||
		    !json_object_object_get_ex(sub, "referenceId", &r) ||
		    !json_object_is_type(u, json_type_string) ||
		    !json_object_is_type(m, json_type_string) ||
		    !json_object_is_type(r, json_type_string) ||
		    !ref_ok(json_object_get_string(r))) {
			sf_error(out, "INVALID_BATCH_REQUEST",
			         "Each subrequest needs a method, a url and a "
			         "referenceId of letters, digits and '_'");
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			struct json_object *r2;
			json_object_object_get_ex(
			    json_object_array_get_idx(arr, j), "referenceId",
			    &r2);
			if (strcmp(json_object_get_string(r2),
			           json_object_get_string(r)) == 0) {
				sf_error(out, "INVALID_BATCH_REQUEST",
				         "Duplicate referenceId");
				goto out;
			}
		}
		queries += strstr(json_object_get_string(u), "/query") != NULL;
	}
	if (queries > COMPOSITE_MAX_QUERIES) {
		sf_error(out, "LIMIT_EXCEEDED",
		         "A composite request can contain at most 5 query "
		         "operations");
		goto out;
	}
	q->composites++;
	evbuffer_add(out, "{\"compositeResponse\":[", 22);
	struct evbuffer *sb = evbuffer_new();
	if (sb == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		struct json_object *sub = json_object_array_get_idx(arr, i);
		struct json_object *m, *u, *r;
		json_object_object_get_ex(sub, "method", &m);
		json_object_object_get_ex(sub, "url", &u);
		json_object_object_get_ex(sub, "referenceId", &r);
		char *url = xstrndup(json_object_get_string(u),
		                     strlen(json_object_get_string(u)));
		char *qs = strchr(url, '?');
		char ver[16];
		const char *rest, *locator = NULL;
		int st;
		if (qs != NULL)
			*qs++ = '\0';
		q->subrequests++;
		evbuffer_drain(sb, evbuffer_get_length(sb));
		enum route rt = split_version(url, ver, sizeof(ver), &rest) == 0
		                    ? route_of(rest, &locator)
		                    : R_NONE;
		if (rt == R_NONE || rt == R_COMPOSITE) {
			evbuffer_add(sb, NOT_FOUND, strlen(NOT_FOUND));
			st = 404;
		} else if (strcmp(json_object_get_string(m), "GET") != 0) {
			sf_error(
			    sb, "METHOD_NOT_ALLOWED",
			    "HTTP Method not allowed. Allowed are GET,HEAD");
			st = 405;
		} else {
			st = run_get(q, ver, rt, locator, qs, sb);
		}
		free(url);
		evbuffer_add_printf(out, "%s{\"body\":", i > 0 ? "," : "");
		evbuffer_add_buffer(out, sb);
		evbuffer_add_printf(out,
		                    ",\"httpHeaders\":{},\"httpStatusCode\":%d,"
		                    "\"referenceId\":",
		                    st);
		util_json_str(out, json_object_get_string(r));
		evbuffer_add(out, "}", 1);
	}
	evbuffer_free(sb);
	evbuffer_add(out, "]}", 2);
	status = 200;
out:
	json_object_put(root);
	json_tokener_free(tok);
	return status;
}

static void
do_data(struct query *q, struct evhttp_request *req, const char *ver,
        enum route r, const char *locator)
{
	const char *token = util_bearer(req);
	struct evbuffer *out;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int status;

	if (token == NULL || !org_token_valid(q->org, token)) {
		util_reply_text(req, 401, INVALID_SESSION, "invalid session");
		return;
	}
	if ((r == R_COMPOSITE && cmd != EVHTTP_REQ_POST) ||
	    (r != R_COMPOSITE && cmd != EVHTTP_REQ_GET)) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Allow", r == R_COMPOSITE ? "POST" : "GET");
		util_reply_text(req, 405,
		                "[{\"errorCode\":\"METHOD_NOT_ALLOWED\","
		                "\"message\":\"Method not allowed\"}]",
		                "method not allowed");
		return;
	}
	if ((out = evbuffer_new()) == NULL)
		abort();
	org_stats(q->org)->api_calls++;
	if (r == R_COMPOSITE) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		status = run_composite(q, (const char *)evbuffer_pullup(in, -1),
		                       evbuffer_get_length(in), out);
	} else {
		const struct evhttp_uri *uri =
		    evhttp_request_get_evhttp_uri(req);
		status =
		    run_get(q, ver, r, locator, evhttp_uri_get_query(uri), out);
	}
	limit_header(q, req);
	util_reply(req, status, UTIL_JSON_UTF8, out,
	           status == 200 ? NULL : "query refused");
	evbuffer_free(out);
}

/* Test endpoints ----------------------------------------------------------- */

static void
mock_reply(struct evhttp_request *req, int code, const char *error)
{
	struct evbuffer *b = evbuffer_new();
	if (b == NULL)
		abort();
	evbuffer_add(b, "{\"error\":", 9);
	util_json_str(b, error);
	evbuffer_add(b, "}", 1);
	util_reply(req, code, UTIL_JSON_UTF8, b, error);
	evbuffer_free(b);
}

/* Copies the members of src over dst (a later value replaces one). */
static void
merge(struct json_object *dst, struct json_object *src)
{
	json_object_object_foreach(src, key, val)
	{
		json_object_object_add(dst, key, json_object_get(val));
	}
}

static void
do_records(struct query *q, struct evhttp_request *req)
{
	const char *qs =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq form;
	struct json_object *body = NULL;
	form.tqh_first = NULL;
	form.tqh_last = &form.tqh_first;
	if (qs != NULL && util_form_parse(qs, strlen(qs), &form) != 0) {
		mock_reply(req, 400, "malformed query string");
		goto done;
	}
	const char *name = evhttp_find_header(&form, "object");
	const char *count_s = evhttp_find_header(&form, "count");
	const char *time_s = evhttp_find_header(&form, "time");
	const char *step_s = evhttp_find_header(&form, "step_ms");
	int64_t count = 1, step = 0, t = util_now_ms();
	if (name == NULL || name[0] == '\0' || strlen(name) > 100) {
		mock_reply(req, 400, "missing object");
		goto done;
	}
	for (const char *c = name; *c != '\0'; c++) {
		if (!isalnum((unsigned char)*c) && *c != '_') {
			mock_reply(req, 400, "bad object name");
			goto done;
		}
	}
	if ((count_s != NULL &&
	     util_parse_i64(count_s, 1, QUERY_MAX_RECORDS, &count) != 0) ||
	    (step_s != NULL &&
	     util_parse_i64(step_s, 0, 86400000, &step) != 0)) {
		mock_reply(req, 400,
		           "count must be 1..1000000, step_ms 0..86400000");
		goto done;
	}
	if (time_s != NULL && parse_datetime(time_s, &t) != strlen(time_s)) {
		mock_reply(req, 400, "time must be an ISO-8601 dateTime");
		goto done;
	}
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	if (len > 0) {
		struct json_tokener *tok = json_tokener_new();
		if (tok == NULL)
			abort();
		body = json_tokener_parse_ex(
		    tok, (const char *)evbuffer_pullup(in, -1), (int)len);
		int whole =
		    body != NULL && json_tokener_get_parse_end(tok) == len;
		json_tokener_free(tok);
		if (!whole || (!json_object_is_type(body, json_type_object) &&
		               !json_object_is_type(body, json_type_array))) {
			mock_reply(req, 400,
			           "body must be a JSON object or array");
			goto done;
		}
		if (json_object_is_type(body, json_type_array)) {
			count = (int64_t)json_object_array_length(body);
			for (size_t i = 0; i < (size_t)count; i++) {
				if (!json_object_is_type(
				        json_object_array_get_idx(body, i),
				        json_type_object)) {
					mock_reply(
					    req, 400,
					    "array items must be objects");
					goto done;
				}
			}
		}
	}
	struct qobj *o = qobj_get(q, name);
	if (o->n + (size_t)count > QUERY_MAX_RECORDS) {
		mock_reply(req, 400, "too many records");
		goto done;
	}
	char first[64] = "", last[64] = "";
	for (int64_t i = 0; i < count; i++) {
		struct json_object *r = gen_record(o, ++o->seq, t + i * step);
		if (body != NULL)
			merge(r,
			      json_object_is_type(body, json_type_array)
			          ? json_object_array_get_idx(body, (size_t)i)
			          : body);
		struct json_object *id = get_path(r, "Id");
		struct json_object *ev = get_path(r, "EventIdentifier");
		const char *k = json_object_get_string(
		    o->def != NULL && o->def->big && ev != NULL ? ev : id);
		snprintf(i == 0 ? first : last, sizeof(first), "%s",
		         k != NULL ? k : "");
		record_add(o, r);
	}
	if (count == 1)
		snprintf(last, sizeof(last), "%s", first);
	struct evbuffer *out = evbuffer_new();
	if (out == NULL)
		abort();
	evbuffer_add_printf(out,
	                    "{\"inserted\":%lld,\"object\":", (long long)count);
	util_json_str(out, o->name);
	evbuffer_add(out, ",\"first_id\":", 12);
	util_json_str(out, first);
	evbuffer_add(out, ",\"last_id\":", 11);
	util_json_str(out, last);
	evbuffer_add_printf(out, ",\"total\":%zu}", o->n);
	util_reply(req, 200, UTIL_JSON_UTF8, out, NULL);
	evbuffer_free(out);
done:
	json_object_put(body);
	evhttp_clear_headers(&form);
}

static void
do_usage(struct query *q, struct evhttp_request *req)
{
	const char *qs =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq form;
	int64_t used, max = q->api_max;
	char reply[96];
	form.tqh_first = NULL;
	form.tqh_last = &form.tqh_first;
	if (qs == NULL || util_form_parse(qs, strlen(qs), &form) != 0 ||
	    evhttp_find_header(&form, "used") == NULL ||
	    util_parse_i64(evhttp_find_header(&form, "used"), 0, INT64_MAX / 2,
	                   &used) != 0 ||
	    (evhttp_find_header(&form, "max") != NULL &&
	     util_parse_i64(evhttp_find_header(&form, "max"), 1, INT64_MAX / 2,
	                    &max) != 0)) {
		mock_reply(req, 400,
		           "want used=N and optionally max=M (M > 0)");
	} else {
		org_stats(q->org)->api_calls = (uint64_t)used;
		q->api_max = max;
		snprintf(reply, sizeof(reply), "{\"used\":%lld,\"max\":%lld}",
		         (long long)used, (long long)max);
		log_info("api usage set", "usage", reply, NULL);
		util_reply_text(req, 200, reply, NULL);
	}
	evhttp_clear_headers(&form);
}

static void
do_query_stats(struct query *q, struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();
	if (out == NULL)
		abort();
	evbuffer_add_printf(
	    out,
	    "{\"queries\":%llu,\"query_more\":%llu,\"composites\":%llu,"
	    "\"subrequests\":%llu,\"api_calls\":%llu,\"api_max\":%lld,"
	    "\"records\":{",
	    (unsigned long long)q->queries, (unsigned long long)q->query_more,
	    (unsigned long long)q->composites,
	    (unsigned long long)q->subrequests,
	    (unsigned long long)org_stats(q->org)->api_calls,
	    (long long)q->api_max);
	for (size_t i = 0; i < q->nobjs; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		util_json_str(out, q->objs[i]->name);
		evbuffer_add_printf(out, ":%zu", q->objs[i]->n);
	}
	evbuffer_add(out, "},\"recent_soql\":[", 17);
	for (size_t i = 0; i < q->nrecent; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		util_json_str(out, q->recent[i]);
	}
	evbuffer_add(out, "]}", 2);
	util_reply(req, 200, UTIL_JSON_UTF8, out, NULL);
	evbuffer_free(out);
}

static int
method_ok(struct evhttp_request *req, enum evhttp_cmd_type cmd)
{
	if (evhttp_request_get_command(req) == cmd)
		return 1;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
	                  cmd == EVHTTP_REQ_GET ? "GET" : "POST");
	util_reply_text(req, 405,
	                "[{\"errorCode\":\"METHOD_NOT_ALLOWED\",\"message\":"
	                "\"Method not allowed\"}]",
	                "method not allowed");
	return 0;
}

int
query_handle(struct query *q, struct evhttp_request *req, const char *path)
{
	char ver[16];
	const char *rest, *locator = NULL;
	if (strcmp(path, "/_mock/records") == 0) {
		if (method_ok(req, EVHTTP_REQ_POST))
			do_records(q, req);
		return 1;
	}
	if (strcmp(path, "/_mock/api-usage") == 0) {
		if (method_ok(req, EVHTTP_REQ_POST))
			do_usage(q, req);
		return 1;
	}
	if (strcmp(path, "/_mock/query-stats") == 0) {
		if (method_ok(req, EVHTTP_REQ_GET))
			do_query_stats(q, req);
		return 1;
	}
	if (split_version(path, ver, sizeof(ver), &rest) != 0)
		return 0;
	enum route r = route_of(rest, &locator);
	if (r == R_NONE)
		return 0;
	do_data(q, req, ver, r, locator);
	return 1;
}
