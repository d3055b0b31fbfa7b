"""Where torch.compile's caches go for one arm process, defined once for both arms.

Inductor's cache key ignores the ATen CPU dispatch path: kernels compiled on the native path (e.g. AVX512) and
then loaded under ``ATEN_CPU_CAPABILITY=avx2`` from the same cache gave NaN updates (torch 2.13). So the Inductor
cache lives in a subfolder per torch version and ATen CPU capability. ``TORCHINDUCTOR_COMPILE_THREADS=1`` makes
Inductor compile in the training process itself, for both arms: no pool of compile workers is started, so none
lingers into the measured steps or adds its memory to the tree (the harness's warm-up run fills the cache, so
measured runs compile little anyway).

Standard library only; torch is imported lazily, and only when the caller does not pass the facts.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

COMPILE_THREADS = "1"


def capability(env: dict | None = None) -> str:
    """The ATen CPU path the arm will use: ``ATEN_CPU_CAPABILITY`` when set, else torch's native choice."""
    forced = (env if env is not None else os.environ).get("ATEN_CPU_CAPABILITY")
    if forced:
        return forced.lower()
    import torch
    return str(torch.backends.cpu.get_cpu_capability()).lower()


def torch_version() -> str:
    import torch
    return torch.__version__


def inductor_dir(root: str | Path, torch_ver: str | None = None, cpu_capability: str | None = None,
                 env: dict | None = None) -> Path:
    """``<root>/inductor/torch-<version>-<capability>``."""
    ver = torch_ver or torch_version()
    cap = cpu_capability or capability(env)
    return Path(root) / "inductor" / re.sub(r"[^A-Za-z0-9_.+-]", "_", f"torch-{ver}-{cap}")


def compile_env(root: str | Path, torch_ver: str | None = None, cpu_capability: str | None = None,
                env: dict | None = None) -> dict[str, str]:
    """TMPDIR, the per-path Inductor cache and in-process compilation, under ``root`` (directories created)."""
    root = Path(root)
    inductor = inductor_dir(root, torch_ver, cpu_capability, env)
    for d in (root / "tmp", inductor):
        d.mkdir(parents=True, exist_ok=True)
    return {"TMPDIR": str(root / "tmp"), "TORCHINDUCTOR_CACHE_DIR": str(inductor),
            "TORCHINDUCTOR_COMPILE_THREADS": COMPILE_THREADS}
