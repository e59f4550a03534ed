"""Compute units: the shared MAC array and its multiplexer, LayerNorm, softmax, the attention
engine, the gate, top-k, expert queues and engine, patch embedding, residual add."""
