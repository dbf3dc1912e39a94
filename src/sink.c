/* The sink wrapper: dispatch through the ops table, fan out reports. */
#include "sfrelay/sink.h"

#include <stdlib.h>

struct sink {
	const struct sink_ops *ops;
	void *impl;
	sink_ack_fn *ack;
	sink_error_fn *error;
	void *arg;
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

const char *
sink_name(const struct sink *sink)
{
	return sink->ops->name;
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
