"""Component micro-benchmarks (pytest-benchmark): ours and upstream nanochat's modules side by side; see docs/microbench.md."""
