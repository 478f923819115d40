"""Inference: what a name designates (servables), loaded runtime sessions, the prepare
step of runtimes, and the one data plane every inference request goes through."""
