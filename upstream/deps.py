"""Upstream nanochat's run-time Python dependencies, in one place, and a check that they are importable.

Upstream is never pip-installed (it pins a torch that would replace ours): its scripts run with the harness's
own interpreter, so that interpreter must already import everything they import. ``kernels`` only matters
on CUDA, where upstream tries it for Flash Attention 3 and silently falls back to PyTorch SDPA without it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import sys

from upstream.errors import UpstreamError

# import name -> distribution name (what pip installs). yaml and requests are imported but not declared upstream.
RUNTIME = {
    "torch": "torch",
    "filelock": "filelock",
    "numpy": "numpy",
    "psutil": "psutil",
    "pyarrow": "pyarrow",
    "rustbpe": "rustbpe",
    "tiktoken": "tiktoken",
    "wandb": "wandb",
    "setuptools": "setuptools",
    "yaml": "pyyaml",
    "requests": "requests",
}
CUDA_ONLY = {"kernels": "kernels"}  # Flash Attention 3 loader; absent => SDPA fallback (slower, still correct)


def missing(cuda: bool = False) -> list[str]:
    """Distribution names of the required modules this interpreter cannot import."""
    wanted = dict(RUNTIME, **(CUDA_ONLY if cuda else {}))
    return [dist for module, dist in wanted.items() if importlib.util.find_spec(module) is None]


def check() -> None:
    """Raise a one-line UpstreamError naming the pip command when a required module is missing."""
    absent = missing()
    if absent:
        raise UpstreamError(f"upstream nanochat needs {', '.join(absent)}, missing from {sys.executable}; "
                            f"install with: {sys.executable} -m pip install {' '.join(absent)}")


def warnings(cuda: bool) -> list[str]:
    """Things that do not stop a run but change what it measures (said in the results, not raised)."""
    if cuda and missing(cuda=True) != missing():
        return ["'kernels' is not installed: upstream uses PyTorch SDPA instead of Flash Attention 3 on this GPU"]
    return []


def installed_versions() -> dict[str, str | None]:
    """Version of every upstream dependency in this interpreter (None when absent), for result provenance."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in sorted({**RUNTIME, **CUDA_ONLY}.values()):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out
