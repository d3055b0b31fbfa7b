"""Provenance: where and with what a run happened — our commit, upstream's, the software and the machine.

Every probe degrades to None instead of failing: a GPU box without gitpython still records the git SHA through
the git command, a machine without CUDA records no driver. The result is a harness.results.Provenance.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from harness.results import Provenance

REPO_ROOT = Path(__file__).resolve().parents[1]


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_state(path: str | Path = REPO_ROOT) -> tuple[str | None, bool | None]:
    """(HEAD SHA, dirty) of the git work tree holding ``path``; (None, None) when it is not one."""
    try:
        import git
        repo = git.Repo(path, search_parent_directories=True)
        return repo.head.commit.hexsha, repo.is_dirty(untracked_files=False)
    except ImportError:
        return _git_cli(path)
    except Exception:   # not a repository, no commits yet
        return None, None


def _git_cli(path: str | Path) -> tuple[str | None, bool | None]:
    try:
        sha = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return sha.stdout.strip(), bool(status.stdout.strip())


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def torch_facts() -> dict:
    """torch, CUDA runtime, GPU name and count as this interpreter's torch sees them."""
    try:
        import torch
    except ImportError:
        return {}
    facts = {"torch": torch.__version__, "cuda": torch.version.cuda, "torch_threads": torch.get_num_threads()}
    forced = os.environ.get("ATEN_CPU_CAPABILITY")     # the path the arms will take (they inherit the variable)
    facts["aten_cpu_capability"] = forced.lower() if forced else str(torch.backends.cpu.get_cpu_capability()).lower()
    if torch.cuda.is_available():
        facts["gpu_count"] = torch.cuda.device_count()
        facts["gpu_name"] = torch.cuda.get_device_name(0)
    return facts


def driver_version() -> str | None:
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else v
        finally:
            pynvml.nvmlShutdown()
    except Exception:   # no pynvml, no driver library
        return None


def upstream_packages() -> dict[str, str]:
    """Installed versions of upstream nanochat's runtime dependencies (missing ones left out)."""
    try:
        from upstream.deps import installed_versions
    except ImportError:
        return {}
    return {k: v for k, v in installed_versions().items() if v is not None}


IDENTITY_FIELDS = ("cpu_model", "aten_cpu_capability", "torch", "torch_threads", "gpu_name", "driver")


def numerics_identity(p: Provenance) -> str:
    """What a run's numerics (BPB to the 4th decimal) depend on beyond code and data: the CPU model, its ATen
    dispatch path, torch and its thread count, the GPU and its driver. History and nightly compare BPB only
    between runs with the same identity; "" when none of it is known (results from before version 2)."""
    values = [getattr(p, name, None) for name in IDENTITY_FIELDS]
    if all(v is None for v in values):
        return ""
    return " | ".join(f"{name}={v}" for name, v in zip(IDENTITY_FIELDS, values))


def collect(argv: list[str] | None = None, upstream: dict | None = None) -> Provenance:
    """A Provenance for runs starting now. ``upstream``: the upstream checkout's facts (sha, ref, clean)."""
    sha, dirty = git_state()
    up = upstream or {}
    return Provenance(
        ours_sha=sha, ours_dirty=dirty, upstream_sha=up.get("sha"), upstream_ref=up.get("ref"),
        upstream_clean=up.get("clean"), argv=list(sys.argv if argv is None else argv),
        python=platform.python_version(), driver=driver_version(), cpu_model=cpu_model(), cpu_count=os.cpu_count(),
        hostname=socket.gethostname(), packages=upstream_packages(), utc_started=utc_now(),
        **{k: v for k, v in torch_facts().items()})
