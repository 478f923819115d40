"""Pruning: `prune.magnitude` (unstructured, zeros in place) and `prune.structured` (whole
channels removed with torch-pruning). Both can fine-tune on a labeled dataset."""
