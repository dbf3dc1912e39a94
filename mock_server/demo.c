#include <stdlib.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "sfrelay/log.h"

#include "demo.h"
#include "org.h"
#include "shapes.h"
#include "util.h"

#define DEMO_SEED UINT64_C(0x5f0bce5eed)
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

enum demo_kind { DEMO_ACCOUNT, DEMO_LOGIN, DEMO_CDC, DEMO_ORDER };

struct demo {
	struct org *org;
	struct event *timer;
	struct util_rng rng;
	struct evbuffer *members;
	int rate;
	int64_t start_ms; /* monotonic */
	uint64_t n;       /* events published so far */
	int64_t commits;
	uint64_t orders;
	struct org_channel *account, *login, *cdc, *order;
};

static const struct {
	const char *id;
	const char *name;
} accounts[] = {
    {"001xx000003DGb2AAG", "Acme Corp"},
    {"001xx000003DGb3AAG", "Globex"},
    {"001xx000003DGb4AAG", "Initech"},
    {"001xx000003DGb5AAG", "Umbrella Health"},
    {"001xx000003DGb6AAG", "Stark Industries"},
    {"001xx000003DGb7AAG", "Wayne Enterprises"},
    {"001xx000003DGb8AAG", "Hooli"},
    {"001xx000003DGb9AAG", "Soylent"},
};

static const struct {
	const char *id;
	const char *username;
} users[] = {
    {"005xx000001X8UzAAK", "admin@sfmock.test"},
    {"005xx000001X8V0AAK", "jdoe@example.com"},
    {"005xx000001X8V1AAK", "asmith@example.com"},
    {"005xx000001X8V2AAK", "integration@example.com"},
};

static const char *const industries[] = {
    "Technology", "Manufacturing", "Finance", "Healthcare",
    "Retail",     "Energy",        "Media",
};
static const char *const browsers[] = {"Chrome 126", "Firefox 127", "Safari 17",
                                       "Unknown"};
static const char *const platforms[] = {"Mac OSX", "Windows 10", "Linux",
                                        "iOS"};
static const char *const apps[] = {"Browser", "Salesforce for iOS",
                                   "Dataloader Partner", "Workbench"};
static const char *const login_types[] = {"Application", "Remote Access 2.0"};

#define PICK(d, a) (a[util_rng_below(&(d)->rng, NELEM(a))])

static int
build(void *arg, struct evbuffer *out, const struct org_channel *ch,
      int64_t replay_id, uint64_t seq, int64_t now_ms)
{
	struct demo *d = arg;
	struct evbuffer *m = d->members;
	struct shape s = {0};
	char now[32], uuid[37], txn[37];
	size_t a = util_rng_below(&d->rng, NELEM(accounts));
	size_t u = util_rng_below(&d->rng, NELEM(users));

	(void)seq;
	evbuffer_drain(m, evbuffer_get_length(m));
	util_iso_ms(now, sizeof(now), now_ms);
	util_rng_uuid(&d->rng, uuid);
	util_rng_uuid(&d->rng, txn);
	if (ch == d->account) {
		s.type = "updated";
		evbuffer_add_printf(m,
		                    "\"Id\":\"%s\",\"Name\":\"%s\","
		                    "\"Industry\":\"%s\",\"OwnerId\":\"%s\","
		                    "\"LastModifiedById\":\"%s\"",
		                    accounts[a].id, accounts[a].name,
		                    PICK(d, industries), users[0].id,
		                    users[u].id);
	} else if (ch == d->login) {
		/* About one login in six fails, as in a real org's noise. */
		int failed = util_rng_below(&d->rng, 6) == 0;

		evbuffer_add_printf(
		    m,
		    "\"EventIdentifier\":\"%s\",\"UserId\":\"%s\","
		    "\"Username\":\"%s\",\"SourceIp\":\"203.0.113.%u\","
		    "\"LoginUrl\":\"login.salesforce.com\","
		    "\"Status\":\"%s\",\"Browser\":\"%s\","
		    "\"Platform\":\"%s\",\"Application\":\"%s\","
		    "\"LoginType\":\"%s\",\"EventDate\":\"%s\"",
		    uuid, users[u].id, users[u].username,
		    (unsigned)util_rng_below(&d->rng, 254) + 1,
		    failed ? "Failed: Invalid Password" : "Success",
		    PICK(d, browsers), PICK(d, platforms), PICK(d, apps),
		    PICK(d, login_types), now);
		s.uuid = txn;
	} else if (ch == d->cdc) {
		s.record_id = accounts[a].id;
		s.change_type = "UPDATE";
		s.changed_fields = "[\"Industry\",\"LastModifiedDate\"]";
		s.uuid = txn;
		s.commit_number = d->commits++;
		evbuffer_add_printf(m,
		                    "\"Industry\":\"%s\","
		                    "\"LastModifiedDate\":\"%s\"",
		                    PICK(d, industries), now);
	} else {
		unsigned cents =
		    (unsigned)util_rng_below(&d->rng, 500000) + 999;

		evbuffer_add_printf(m,
		                    "\"OrderNumber__c\":\"ORD-%06llu\","
		                    "\"Amount__c\":%u.%02u,"
		                    "\"Currency__c\":\"USD\","
		                    "\"AccountId__c\":\"%s\"",
		                    (unsigned long long)++d->orders,
		                    cents / 100, cents % 100, accounts[a].id);
		s.uuid = uuid;
	}
	s.members = (const char *)evbuffer_pullup(m, -1);
	s.members_len = evbuffer_get_length(m);
	return shape_event(out, ch, replay_id, now_ms, &s);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct demo *d = arg;
	uint64_t due;

	(void)fd;
	(void)what;
	/* Publish what the clock says is due, so timer slack does not
	 * lower the rate; after a stall of over a second, skip ahead
	 * rather than burst. */
	due =
	    (uint64_t)(util_mono_ms() - d->start_ms) * (uint64_t)d->rate / 1000;
	if (due > d->n + (uint64_t)d->rate)
		d->n = due - (uint64_t)d->rate;
	while (d->n < due) {
		struct org_channel *ch;
		uint64_t n = d->n++;

		/* Rotate account, login, change event; an order every
		 * tenth event. */
		if (n % 10 == 9)
			ch = d->order;
		else if (n % 3 == 0)
			ch = d->account;
		else if (n % 3 == 1)
			ch = d->login;
		else
			ch = d->cdc;
		if (org_publish(d->org, ch, build, d) < 0)
			log_warn("demo publish failed", "channel",
			         org_channel_name(ch), NULL);
	}
}

struct demo *
demo_new(struct event_base *base, struct org *org, int rate)
{
	struct demo *d = calloc(1, sizeof(*d));
	struct timeval tv;
	long us;

	if (d == NULL)
		return NULL;
	d->org = org;
	d->commits = 20000000000LL;
	util_rng_seed(&d->rng, DEMO_SEED);
	d->account = org_channel_declare(org, "/topic/AccountWatch");
	d->login = org_channel_declare(org, "/event/LoginEventStream");
	d->cdc = org_channel_declare(org, "/data/AccountChangeEvent");
	d->order = org_channel_declare(org, "/event/Order_Placed__e");
	d->members = evbuffer_new();
	if (d->account == NULL || d->login == NULL || d->cdc == NULL ||
	    d->order == NULL || d->members == NULL)
		goto fail;
	if (rate <= 0)
		return d;
	/* One event per tick up to 100/s; beyond, 10 ms ticks. */
	us = rate <= 100 ? 1000000L / rate : 10000L;
	d->rate = rate;
	d->start_ms = util_mono_ms();
	d->timer = event_new(base, -1, EV_PERSIST, tick_cb, d);
	if (d->timer == NULL)
		goto fail;
	tv.tv_sec = us / 1000000L;
	tv.tv_usec = (suseconds_t)(us % 1000000L);
	event_add(d->timer, &tv);
	return d;
fail:
	demo_free(d);
	return NULL;
}

void
demo_free(struct demo *d)
{
	if (d == NULL)
		return;
	if (d->timer != NULL)
		event_free(d->timer);
	if (d->members != NULL)
		evbuffer_free(d->members);
	free(d);
}
