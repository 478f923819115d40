"""Persistent state: content-addressed blobs on disk plus a metadata repository."""
