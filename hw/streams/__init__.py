"""Stream and buffer plumbing: pipeline helpers, fork, router, word/lane converters, widening,
gather and scatter over row buffers."""
