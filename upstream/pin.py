"""The upstream nanochat commit this project is pinned to, and where upstream lives by default."""

DEFAULT_URL = "https://github.com/karpathy/nanochat"

# Pinned to master of 2026-07-03 ("clean up fragile code"): the newest upstream commit at the time models/ was
# written and checked item by item against it (the upstream-marked tests). Moving the pin means re-checking parity.
PINNED_COMMIT = "92d63d4e8bb4df75c3b71618f31ddde2378b2bcd"
PINNED_DATE = "2026-07-03"

# Environment variable naming an upstream source (URL or local path, bare or not) instead of DEFAULT_URL.
ENV_SOURCE = "NANOCHAT_UPSTREAM"
# Environment variable overriding the clone cache directory (default ~/.cache/nanochat-bench).
ENV_CACHE = "NANOCHAT_BENCH_CACHE"
