#include "sfrelay/loop.h"

#include <event2/event.h>

struct event_base *
loop_base_new(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (cfg == NULL)
		return NULL;
	/* Read the clock whenever a timer is added (see loop.h); the cost
	 * is one vDSO clock read per timer, a few per reply. */
	if (event_config_set_flag(cfg, EVENT_BASE_FLAG_NO_CACHE_TIME) != 0) {
		event_config_free(cfg);
		return NULL;
	}
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}
