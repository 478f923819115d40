"""Measuring models: file statistics, quality against a reference, latency, memory, and
the quality budget a variant must meet."""
