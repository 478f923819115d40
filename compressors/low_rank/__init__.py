"""Low-rank factorization: `low_rank.svd` (truncated SVD of MatMul/Gemm/1x1 Conv weights)."""
