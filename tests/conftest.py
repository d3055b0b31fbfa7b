"""Shared fixtures: where an upstream nanochat checkout comes from, CPU thread settings, one compile cache and one
data workspace per session, and an Inductor cache kept apart per ATen CPU code path."""
from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path

import pytest

from upstream.pin import ENV_SOURCE, PINNED_COMMIT


def _inductor_cache_per_cpu_path() -> None:
    """Inductor's cache key ignores ATEN_CPU_CAPABILITY: kernels compiled on the native path and then loaded under
    ``ATEN_CPU_CAPABILITY=avx2`` gave NaN updates (torch 2.13, AMD EPYC). Each path gets its own cache folder, so
    ``make test-cpu-paths`` after ``make test`` compiles afresh instead of loading the other path's kernels."""
    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                                     f"torchinductor_{getpass.getuser()}")
    path = os.environ.get("ATEN_CPU_CAPABILITY", "native").lower()
    if Path(base).name != f"aten-{path}":
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(base, f"aten-{path}")


_inductor_cache_per_cpu_path()


@pytest.fixture(scope="session")
def upstream_repo() -> Path:
    """A clean work tree of upstream nanochat at the pinned commit, or a skip saying how to get one.

    The source is $NANOCHAT_UPSTREAM (URL or local path) or the harness's clone cache; nothing is
    downloaded unless the variable says so.
    """
    from upstream import source

    try:
        checkout = source.find_for_tests(PINNED_COMMIT)
    except source.UpstreamError as e:
        pytest.skip(f"no upstream nanochat source: {e} (set {ENV_SOURCE} to a URL or local clone)")
    if checkout is None:
        pytest.skip(f"no upstream nanochat source reachable: set {ENV_SOURCE} to a URL or local clone of karpathy/nanochat")
    return checkout


@pytest.fixture(autouse=True, scope="session")
def _cpu_threads():
    import torch
    torch.set_num_threads(int(os.environ.get("NANOCHAT_BENCH_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory) -> Path:
    """One torch.compile cache for every campaign the suite runs (``--compile-cache``): our arm compiles its Muon
    kernels on step 0, ~35 s cold on 2 cores and ~2 s warm, and each test's campaign dir would start cold."""
    return tmp_path_factory.getbasetemp() / "compile-cache"


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """One data workspace root for the session (``--workspace``): shards and tokenizer built once, then reused."""
    return tmp_path_factory.getbasetemp() / "workspace"
