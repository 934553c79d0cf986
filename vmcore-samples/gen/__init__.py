"""Generator of the synthetic kernel dumps in vmcore-samples/ (see ../README.md)."""
