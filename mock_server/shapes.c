#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "shapes.h"
#include "util.h"

char *
shape_entity(const char *channel, char *buf, size_t len)
{
	static const char pre[] = "/data/", suf[] = "ChangeEvent";
	size_t n = strlen(channel), p = sizeof(pre) - 1, s = sizeof(suf) - 1;

	if (n > p + s && strncmp(channel, pre, p) == 0 &&
	    strcmp(channel + n - s, suf) == 0) {
		int name = (int)(n - p - s);

		/* Custom objects drop the trailing "c" of "__c" in the
		 * channel name ("Foo__ChangeEvent" for "Foo__c"). */
		if (name > 2 && channel[p + (size_t)name - 1] == '_' &&
		    channel[p + (size_t)name - 2] == '_')
			snprintf(buf, len, "%.*sc", name, channel + p);
		else
			snprintf(buf, len, "%.*s", name, channel + p);
	} else {
		snprintf(buf, len, "Account");
	}
	return buf;
}

static int
members(struct evbuffer *out, const struct shape *s, int comma_after)
{
	if (s->members == NULL || s->members_len == 0)
		return 0;
	if (evbuffer_add(out, s->members, s->members_len) != 0)
		return -1;
	return comma_after ? evbuffer_add(out, ",", 1) : 0;
}

static int
topic(struct evbuffer *out, const struct org_channel *ch, int64_t id,
      const char *created, const struct shape *s)
{
	int rc = 0;

	rc |=
	    evbuffer_add_printf(out,
	                        "{\"data\":{\"event\":{\"createdDate\":\"%s\","
	                        "\"replayId\":%lld,\"type\":\"%s\"},"
	                        "\"sobject\":{",
	                        created, (long long)id,
	                        s->type != NULL ? s->type : "created") < 0;
	rc |= members(out, s, 0);
	rc |= evbuffer_add_printf(out, "}},\"channel\":\"%s\"}",
	                          org_channel_name(ch)) < 0;
	return rc ? -1 : 0;
}

static int
generic(struct evbuffer *out, const struct org_channel *ch, int64_t id,
        const char *created, const struct shape *s)
{
	int rc = 0;

	rc |=
	    evbuffer_add_printf(out,
	                        "{\"data\":{\"event\":{\"createdDate\":\"%s\","
	                        "\"replayId\":%lld},\"payload\":",
	                        created, (long long)id) < 0;
	rc |= util_json_str(out, s->text != NULL ? s->text : "");
	rc |= evbuffer_add_printf(out, "},\"channel\":\"%s\"}",
	                          org_channel_name(ch)) < 0;
	return rc ? -1 : 0;
}

static int
platform(struct evbuffer *out, const struct org_channel *ch, int64_t id,
         const char *created, const struct shape *s)
{
	int rc = 0;

	rc |= evbuffer_add_printf(out,
	                          "{\"data\":{\"schema\":\"%s\",\"payload\":{",
	                          org_channel_schema(ch)) < 0;
	rc |= members(out, s, 1);
	rc |= evbuffer_add_printf(out,
	                          "\"CreatedDate\":\"%s\","
	                          "\"CreatedById\":\"" SHAPE_USER_ID "\"",
	                          created) < 0;
	rc |= evbuffer_add_printf(out,
	                          "},\"event\":{\"EventUuid\":\"%s\","
	                          "\"replayId\":%lld}},\"channel\":\"%s\"}",
	                          s->uuid != NULL ? s->uuid : "", (long long)id,
	                          org_channel_name(ch)) < 0;
	return rc ? -1 : 0;
}

static int
cdc(struct evbuffer *out, const struct org_channel *ch, int64_t id,
    int64_t now_ms, const struct shape *s)
{
	char entity[256];
	int rc = 0;

	shape_entity(org_channel_name(ch), entity, sizeof(entity));
	rc |= evbuffer_add_printf(
	          out,
	          "{\"data\":{\"schema\":\"%s\",\"payload\":{"
	          "\"ChangeEventHeader\":{\"entityName\":\"%s\","
	          "\"recordIds\":[\"%s\"],\"changeType\":\"%s\","
	          "\"changedFields\":%s,\"nulledFields\":[],"
	          "\"diffFields\":[],"
	          "\"changeOrigin\":\"com/salesforce/api/soap/61.0;"
	          "client=sfmock\",\"transactionKey\":\"%s\","
	          "\"sequenceNumber\":1,\"commitTimestamp\":%lld,"
	          "\"commitNumber\":%lld,"
	          "\"commitUser\":\"" SHAPE_USER_ID "\"}",
	          org_channel_schema(ch), entity,
	          s->record_id != NULL ? s->record_id : "",
	          s->change_type != NULL ? s->change_type : "UPDATE",
	          s->changed_fields != NULL ? s->changed_fields : "[]",
	          s->uuid != NULL ? s->uuid : "", (long long)now_ms,
	          (long long)s->commit_number) < 0;
	if (s->members != NULL && s->members_len > 0) {
		rc |= evbuffer_add(out, ",", 1);
		rc |= members(out, s, 0);
	}
	rc |= evbuffer_add_printf(out,
	                          "},\"event\":{\"replayId\":%lld}},"
	                          "\"channel\":\"%s\"}",
	                          (long long)id, org_channel_name(ch)) < 0;
	return rc ? -1 : 0;
}

int
shape_event(struct evbuffer *out, const struct org_channel *ch,
            int64_t replay_id, int64_t now_ms, const struct shape *s)
{
	char created[32];

	util_iso_ms(created, sizeof(created), now_ms);
	switch (org_channel_kind(ch)) {
	case ORG_TOPIC:
		return topic(out, ch, replay_id, created, s);
	case ORG_GENERIC:
		return generic(out, ch, replay_id, created, s);
	case ORG_EVENT:
		return platform(out, ch, replay_id, created, s);
	case ORG_DATA:
		return cdc(out, ch, replay_id, now_ms, s);
	}
	return -1;
}
