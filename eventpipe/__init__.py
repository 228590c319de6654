"""eventpipe: the local stack, store access and command line around the collector and processors."""
