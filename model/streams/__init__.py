"""Golden twins of hw/streams/ (the same module names): stream and buffer plumbing: pipeline
helpers, fork, router, word/lane converters, widening, gather and scatter over row buffers."""
