/* Replay gap -> bounded SOQL query (see backfill.h). */
#include "sfrelay/backfill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sfrelay/checkpoint.h"
#include "sfrelay/replay.h"

/* Real-Time Event Monitoring streams and the big objects that store
 * the same events. */
static const struct {
	const char *channel;
	const char *object;
} monitoring[] = {
    {"/event/LoginEventStream", "LoginEvent"},
    {"/event/LogoutEventStream", "LogoutEvent"},
    {"/event/ApiEventStream", "ApiEvent"},
    {"/event/ReportEventStream", "ReportEvent"},
    {"/event/ListViewEventStream", "ListViewEvent"},
    {"/event/LightningUriEventStream", "LightningUriEvent"},
    {"/event/UriEventStream", "UriEvent"},
};

static const char *const channel_prefixes[] = {"/topic/", "/event/", "/data/",
                                               "/u/"};

/* Messages quote untrusted text: no control byte may pass. */
static void
scrub(char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/* Length of channel without a "?filter" suffix. */
static size_t
channel_base_len(const char *channel)
{
	return strcspn(channel, "?");
}

static int
same_channel(const char *a, const char *b)
{
	size_t n = channel_base_len(a);
	return n == channel_base_len(b) && strncmp(a, b, n) == 0;
}

int
backfill_cdc_object(const char *channel, char *buf, size_t len)
{
	static const char prefix[] = "/data/";
	static const char suffix[] = "ChangeEvent";
	size_t n = channel_base_len(channel);
	size_t plen = sizeof(prefix) - 1, slen = sizeof(suffix) - 1;
	if (n <= plen + slen || strncmp(channel, prefix, plen) != 0 ||
	    strncmp(channel + n - slen, suffix, slen) != 0)
		return -1;
	const char *name = channel + plen;
	size_t k = n - plen - slen;
	/* A custom object's change events drop the "c" of "__c":
	 * Foo__ChangeEvent carries Foo__c. */
	int custom = k >= 2 && name[k - 1] == '_' && name[k - 2] == '_';
	for (size_t i = 0; i < k; i++) {
		char c = name[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '_'))
			return -1;
	}
	if (k + (custom ? 1 : 0) + 1 > len)
		return -1;
	memcpy(buf, name, k);
	if (custom)
		buf[k++] = 'c';
	buf[k] = '\0';
	return 0;
}

void
backfill_maps_free(struct backfill_map *maps, size_t n)
{
	for (size_t i = 0; maps != NULL && i < n; i++) {
		free(maps[i].channel);
		soql_spec_clear(&maps[i].spec);
	}
	free(maps);
}

/* The mappings accepted so far: room for SOQL_MAX_OBJECTS. */
struct map_parse {
	struct backfill_map *maps;
	size_t n;
};

static int
channel_ok(const char *s, size_t n)
{
	for (size_t i = 0;
	     i < sizeof(channel_prefixes) / sizeof(channel_prefixes[0]); i++) {
		size_t p = strlen(channel_prefixes[i]);
		if (n > p && strncmp(s, channel_prefixes[i], p) == 0) {
			for (size_t j = p; j < n; j++)
				if ((unsigned char)s[j] <= 0x20 || s[j] == '=')
					return 0;
			return 1;
		}
	}
	return 0;
}

static int
map_item(void *arg, const char *item, size_t len, char *why, size_t whylen)
{
	struct map_parse *mp = arg;
	const char *eq = memchr(item, '=', len);
	struct backfill_map m = {0};

	if (eq == NULL) {
		snprintf(why, whylen,
		         "must be channel=Object, like "
		         "/topic/AccountWatch=Account");
		return -1;
	}
	/* The item is trimmed; the channel may still end in blanks. */
	size_t clen = (size_t)(eq - item);
	while (clen > 0 && (item[clen - 1] == ' ' || item[clen - 1] == '\t'))
		clen--;
	if (memchr(item, '?', clen) != NULL) {
		snprintf(why, whylen,
		         "name the channel without its ?filter (the mapping "
		         "applies to every filter of it)");
		return -1;
	}
	if (!channel_ok(item, clen)) {
		snprintf(why, whylen,
		         "the channel must be /topic/X, /event/X, /data/X or "
		         "/u/X");
		return -1;
	}
	if (soql_spec_parse(eq + 1, (size_t)(item + len - eq - 1), 0, &m.spec,
	                    why, whylen) != 0)
		return -1;
	m.channel = strndup(item, clen);
	if (m.channel == NULL) {
		soql_spec_clear(&m.spec);
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < mp->n; i++) {
		if (same_channel(mp->maps[i].channel, m.channel)) {
			snprintf(why, whylen, "channel mapped twice");
			free(m.channel);
			soql_spec_clear(&m.spec);
			return -1;
		}
	}
	if (mp->n == SOQL_MAX_OBJECTS) {
		free(m.channel);
		soql_spec_clear(&m.spec);
		return 0; /* soql_list_parse reports the count */
	}
	mp->maps[mp->n++] = m;
	return 0;
}

int
backfill_parse(const char *text, struct backfill_map **maps, size_t *n,
               soql_problem_fn *problem, void *arg)
{
	struct map_parse mp = {NULL, 0};

	*maps = NULL;
	*n = 0;
	mp.maps = calloc(SOQL_MAX_OBJECTS, sizeof(*mp.maps));
	if (mp.maps == NULL) {
		if (problem != NULL)
			problem(arg, "out of memory");
		return -1;
	}
	if (soql_list_parse(text, SOQL_MAX_OBJECTS, map_item, &mp, problem,
	                    arg) != 0) {
		backfill_maps_free(mp.maps, mp.n);
		return -1;
	}
	*maps = mp.maps;
	*n = mp.n;
	return 0;
}

void
backfill_plan_clear(struct backfill_plan *plan)
{
	if (plan == NULL)
		return;
	soql_spec_clear(&plan->spec);
	memset(plan, 0, sizeof(*plan));
}

/* The spec for object: a polled object's own, else its built-in or
 * default one. */
static int
spec_for_object(const char *object, const struct soql_spec *polls,
                size_t npolls, struct soql_spec *out)
{
	char err[128];
	for (size_t i = 0; i < npolls; i++)
		if (strcasecmp(polls[i].object, object) == 0)
			return soql_spec_copy(out, &polls[i]);
	return soql_spec_parse(object, strlen(object), 0, out, err,
	                       sizeof(err));
}

enum backfill_verdict
backfill_plan(const struct checkpoint_gap *gap, const struct backfill_map *maps,
              size_t nmaps, const struct soql_spec *polls, size_t npolls,
              struct backfill_plan *plan, char *why, size_t whylen)
{
	char object[128];
	const char *ch = gap->key;
	int rc = 1; /* 1: no object found yet */

	memset(plan, 0, sizeof(*plan));
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (gap->after_created == NULL ||
	    replay_iso_to_ms(gap->after_created, &plan->from_ms) != 0) {
		snprintf(why, whylen,
		         "the gap has no start time (the last event before "
		         "it carried none), so no query can bound it");
		return BACKFILL_INVALID;
	}
	if (gap->detected == NULL ||
	    replay_iso_to_ms(gap->detected, &plan->to_ms) != 0) {
		snprintf(why, whylen, "the gap has no valid detection time");
		return BACKFILL_INVALID;
	}
	plan->from_ms -= BACKFILL_MARGIN_MS;
	if (plan->to_ms < plan->from_ms) {
		snprintf(why, whylen, "the gap ends before it starts");
		return BACKFILL_INVALID;
	}
	for (size_t i = 0; i < nmaps && rc == 1; i++)
		if (same_channel(maps[i].channel, ch))
			rc = soql_spec_copy(&plan->spec, &maps[i].spec);
	for (size_t i = 0;
	     rc == 1 && i < sizeof(monitoring) / sizeof(monitoring[0]); i++)
		if (same_channel(monitoring[i].channel, ch))
			rc = soql_spec_big_object(monitoring[i].object,
			                          &plan->spec);
	if (rc == 1 && backfill_cdc_object(ch, object, sizeof(object)) == 0)
		rc = spec_for_object(object, polls, npolls, &plan->spec);
	if (rc == 0)
		return BACKFILL_PLANNED;
	if (rc < 0) {
		snprintf(why, whylen, "out of memory");
		backfill_plan_clear(plan);
		return BACKFILL_NOMEM;
	}
	size_t n = channel_base_len(ch);
	if (strncmp(ch, "/topic/", 7) == 0)
		snprintf(why, whylen,
		         "no object is mapped to this PushTopic: set "
		         "SFRELAY_BACKFILL=%.*s=<its object>",
		         (int)(n > 100 ? 100 : n), ch);
	else if (strncmp(ch, "/data/", 6) == 0)
		snprintf(why, whylen,
		         "this change event channel carries several objects: "
		         "map it with SFRELAY_BACKFILL=%.*s=<object>",
		         (int)(n > 100 ? 100 : n), ch);
	else if (strncmp(ch, "/event/", 7) == 0)
		snprintf(why, whylen,
		         "platform events are not stored as records: map the "
		         "channel with SFRELAY_BACKFILL=%.*s=<object> if an "
		         "object holds the same data",
		         (int)(n > 100 ? 100 : n), ch);
	else
		snprintf(why, whylen,
		         "generic streaming events are not stored and cannot "
		         "be queried");
	if (whylen > 0)
		scrub(why);
	backfill_plan_clear(plan);
	return BACKFILL_UNMAPPED;
}
