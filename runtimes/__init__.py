"""Inference runtimes behind one small interface (see `runtimes.base`)."""
