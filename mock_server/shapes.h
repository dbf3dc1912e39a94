#ifndef SFMOCK_SHAPES_H
#define SFMOCK_SHAPES_H

#include <stddef.h>
#include <stdint.h>

#include "org.h"

struct evbuffer;

/*
 * The Bayeux message text of one event, in the shape Salesforce gives
 * each kind of channel (keys as Salesforce names them):
 *   /topic: {"data":{"event":{createdDate,replayId,type},"sobject":{..}},
 *            "channel":..}
 *   /u:     {"data":{"event":{createdDate,replayId},"payload":"<text>"},..}
 *   /event: {"data":{"schema":..,"payload":{..,CreatedDate,CreatedById},
 *            "event":{EventUuid,replayId}},..}
 *   /data:  {"data":{"schema":..,"payload":{"ChangeEventHeader":{..},..},
 *            "event":{"replayId":N}},..}
 */

#define SHAPE_USER_ID "005xx000001X8UzAAK"

/* What varies between events; every pointer is borrowed for the call. */
struct shape {
	/* JSON object members without the braces ("\"A\":1,\"B\":2"), put
	 * into the sobject (topic) or payload (event, data); may be empty.
	 * The caller guarantees it is valid JSON text without the keys the
	 * shape adds itself (CreatedDate and CreatedById for events). */
	const char *members;
	size_t members_len;
	const char *type;           /* topic: "created", "updated", ... */
	const char *text;           /* generic: the payload string */
	const char *uuid;           /* event: EventUuid; data: transactionKey */
	const char *record_id;      /* data: recordIds[0] */
	const char *change_type;    /* data: "UPDATE", "CREATE", ... */
	const char *changed_fields; /* data: JSON array text, or NULL */
	int64_t commit_number;      /* data */
};

/* Appends the message for an event of ch with replay_id, published at
 * now_ms, to out. Returns 0 or -1 (allocation failure). */
int shape_event(struct evbuffer *out, const struct org_channel *ch,
                int64_t replay_id, int64_t now_ms, const struct shape *s);

/* The entity a CDC channel reports on: "/data/AccountChangeEvent" ->
 * "Account", "/data/Foo__ChangeEvent" -> "Foo__c", anything else ->
 * "Account". Written into buf. Returns buf. */
char *shape_entity(const char *channel, char *buf, size_t len);

#endif /* SFMOCK_SHAPES_H */
