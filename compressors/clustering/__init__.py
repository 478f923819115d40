"""Weight clustering: `cluster.kmeans` (k shared values per layer, as TFMOT)."""
