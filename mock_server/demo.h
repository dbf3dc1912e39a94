#ifndef SFMOCK_DEMO_H
#define SFMOCK_DEMO_H

struct event_base;
struct org;

/*
 * --demo: a small, realistic stream on four channels, rotating between
 * them at about rate events per second: Account updates on
 * /topic/AccountWatch, logins on /event/LoginEventStream, Account changes
 * on /data/AccountChangeEvent, and now and then an order on
 * /event/Order_Placed__e. Content comes from a fixed-seed generator, so
 * two runs publish the same sequence (timestamps and uuids aside).
 */

struct demo;

/* Declares the demo channels (so they exist before the listener opens)
 * and starts the publisher; rate 0 declares only. base and org are
 * borrowed and must outlive the demo. Returns NULL on failure. */
struct demo *demo_new(struct event_base *base, struct org *org, int rate);
void demo_free(struct demo *demo);

#endif /* SFMOCK_DEMO_H */
