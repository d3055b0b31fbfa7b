"""Our arm: ``python -m models.train`` with upstream's base_train flag names plus our own few.

``budget_flags`` is the one place a Budget becomes training flags; the ``command`` arm's protocol reuses it,
so an external trainer receives exactly the words our trainer does.
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.adapters.base import Adapter, AdapterError, Launch, RunRequest, torchrun_prefix
from harness.budget import Budget
from protocol import compile_cache
from protocol.kernels import DEFAULT_KERNELS

MODULE = "models.train"


def budget_flags(budget: Budget, *, seed: int, metrics_out: Path, base_dir: Path | None,
                 checkpoint_dir: Path | None = None) -> list[str]:
    """Training flags for one run, in upstream's base_train spelling (and ours for the extras)."""
    b = budget
    flags = [f"--depth={b.depth}", f"--aspect-ratio={b.aspect_ratio}", f"--head-dim={b.head_dim}",
             f"--max-seq-len={b.max_seq_len}", f"--window-pattern={b.window_pattern}",
             f"--device-batch-size={b.device_batch_size}", f"--total-batch-size={b.total_batch_size}",
             f"--num-iterations={b.iterations}", f"--warmup-steps={b.warmup_steps}",
             f"--warmdown-ratio={b.warmdown_ratio}", f"--final-lr-frac={b.final_lr_frac}",
             f"--eval-every={b.eval_every}", f"--eval-tokens={b.eval_tokens}", f"--device-type={b.device}",
             f"--warmdown-shape={b.warmdown_shape}", f"--seed={seed}", f"--metrics-out={metrics_out}",
             "--compile" if b.compile or b.device == "cuda" else "--no-compile"]
    if base_dir is not None:
        flags.append(f"--base-dir={base_dir}")
    if b.muon_weight_decay_off:
        flags.append("--muon-weight-decay-off")
    if b.kernels != DEFAULT_KERNELS:   # only when asked: an external trainer need not know the flag
        flags.append(f"--kernels={b.kernels}")
    if b.fast_setting:
        flags.append("--fast-setting")
    if b.warmdown_eval_every:   # only when asked: a trainer that predates the flag still runs every other budget
        flags.append(f"--warmdown-eval-every={b.warmdown_eval_every}")
    if checkpoint_dir is not None:
        flags.append(f"--checkpoint-dir={checkpoint_dir}")
    return flags


class OursAdapter(Adapter):
    name = "ours"
    role = "candidate"

    def __init__(self, compile_cache: Path | None = None):
        self.compile_cache = compile_cache  # TMPDIR + TORCHINDUCTOR_CACHE_DIR root; None = <campaign>/ours-cache

    @classmethod
    def from_setup(cls, setup) -> "OursAdapter":
        return cls(compile_cache=setup.compile_cache)

    def check(self, budget: Budget) -> None:
        if budget.device == "cpu" and budget.nnodes > 1:
            raise AdapterError("ours: multi-node runs need CUDA; use nnodes=1 on CPU")

    def launch(self, req: RunRequest) -> Launch:
        flags = budget_flags(req.budget, seed=req.seed, metrics_out=req.events_path, base_dir=req.base_dir,
                             checkpoint_dir=req.checkpoint_dir)
        prefix = torchrun_prefix(req.budget, req.rdzv_endpoint)
        command = (prefix + ["-m", MODULE] if prefix else [sys.executable, "-m", MODULE]) + flags
        env = compile_cache_env((self.compile_cache or req.campaign_dir / "ours-cache"))
        if req.base_dir:
            env["NANOCHAT_BASE_DIR"] = str(req.base_dir)
        return Launch(command=command, env=env, cwd=_repo_root())


def compile_cache_env(cache: Path) -> dict[str, str]:
    """torch.compile's caches inside the campaign, as for upstream: repeats share them, /tmp is left alone; one
    Inductor folder per torch version and ATen CPU path, compiled in-process (protocol/compile_cache.py)."""
    return compile_cache.compile_env(cache)


def _repo_root() -> Path:
    """Where `models` is importable from: the directory holding the harness package."""
    return Path(__file__).resolve().parents[2]
