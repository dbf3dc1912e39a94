/* The sink wrapper: dispatch through the ops table, fan out reports,
 * keep the counters every sink shares. */
#include "sfrelay/sink.h"

#include <stdlib.h>

struct sink {
	const struct sink_ops *ops;
	void *impl;
	sink_ack_fn *ack;
	sink_error_fn *error;
	sink_writable_fn *writable;
	void *arg;
	size_t max_line;
	uint64_t dropped;
	uint64_t reconnects;
};

struct sink *
sink_new(const struct sink_ops *ops, void *impl)
{
	struct sink *sink = calloc(1, sizeof(*sink));
	if (sink == NULL)
		return NULL;
	sink->ops = ops;
	sink->impl = impl;
	return sink;
}

void
sink_free(struct sink *sink)
{
	if (sink == NULL)
		return;
	sink->ops->free(sink->impl);
	free(sink);
}

void
sink_set_callbacks(struct sink *sink, sink_ack_fn *ack, sink_error_fn *error,
		   void *arg)
{
	sink->ack = ack;
	sink->error = error;
	sink->arg = arg;
}

void
sink_set_writable_callback(struct sink *sink, sink_writable_fn *fn)
{
	sink->writable = fn;
}

int
sink_write(struct sink *sink, uint64_t seq, const char *line, size_t len)
{
	return sink->ops->write(sink->impl, seq, line, len);
}

int
sink_flush(struct sink *sink)
{
	return sink->ops->flush(sink->impl);
}

int
sink_ready(struct sink *sink)
{
	return sink->ops->ready == NULL || sink->ops->ready(sink->impl);
}

const char *
sink_name(const struct sink *sink)
{
	return sink->ops->name;
}

size_t
sink_max_line(const struct sink *sink)
{
	return sink->max_line;
}

void
sink_set_max_line(struct sink *sink, size_t max)
{
	sink->max_line = max;
}

uint64_t
sink_dropped_lines(const struct sink *sink)
{
	return sink->dropped;
}

uint64_t
sink_reconnects(const struct sink *sink)
{
	return sink->reconnects;
}

void
sink_acked(struct sink *sink, uint64_t upto)
{
	if (sink->ack != NULL)
		sink->ack(sink->arg, upto);
}

void
sink_failed(struct sink *sink, const char *msg)
{
	if (sink->error != NULL)
		sink->error(sink->arg, msg);
}

void
sink_dropped(struct sink *sink, uint64_t n)
{
	sink->dropped += n;
}

void
sink_reconnected(struct sink *sink)
{
	sink->reconnects++;
}

void
sink_writable(struct sink *sink)
{
	if (sink->writable != NULL)
		sink->writable(sink->arg);
}
