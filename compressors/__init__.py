"""Compression techniques: one module each, a frozen config class plus `apply()`."""
