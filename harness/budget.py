"""The matched budget: one plain dataclass that every arm is run with, its validation, and the named presets.

A Budget says what to train (shape, vocabulary, data), for how long (iterations or target tokens, batch), with which
schedule (warmup, warmdown shape and ratio, final LR fraction), how to evaluate (every N steps, on M tokens), how often
(seeds x repeats) and where (device, processes). Adapters turn it into each arm's flags; nothing else reads flags.
Presets live as TOML files in harness/presets/; a user's TOML file has the same keys.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.kernels import DEFAULT_KERNELS, KERNELS
from protocol.schedule import SHAPES as WARMDOWN_SHAPES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PRESET_DIR = Path(__file__).parent / "presets"
DATASETS = ("embedded", "climbmix")        # or a path to the user's own text/parquet files
DEVICES = ("cpu", "cuda")
MIN_VOCAB = 256 + 9                         # upstream's tokenizer trainer: 256 byte tokens + 9 special tokens
TOML_TABLES = ("command",)                  # tables a budget file may carry for other parts (the command arm)


class BudgetError(ValueError):
    """A budget that cannot be run; the message names the field and the fix."""


@dataclass
class Budget:
    name: str
    depth: int
    max_seq_len: int
    vocab_size: int
    device_batch_size: int
    total_batch_size: int                   # tokens per optimizer step, summed over all ranks
    eval_every: int                         # steps between val-bpb evals (also at step 0 and the last step); -1 = none
    eval_tokens: int
    num_iterations: int | None = None       # exactly one of num_iterations / target_tokens
    target_tokens: int | None = None        # -> num_iterations = target_tokens // total_batch_size
    aspect_ratio: int = 64
    head_dim: int = 128
    window_pattern: str = "L"
    warmup_steps: int = 40
    warmdown_ratio: float = 0.65
    warmdown_shape: str = "sqrt"            # "sqrt" = 1-sqrt warmdown (swapped into upstream); "linear" = upstream's own
    final_lr_frac: float = 0.05
    seeds: list[int] = field(default_factory=lambda: [42])  # upstream hard-codes 42: its repeats vary only in timing
    repeats: int = 1
    dataset: str = "embedded"
    device: str = "cpu"
    nproc_per_node: int = 1
    nnodes: int = 1
    compile: bool = False                   # torch.compile our arm on CPU (on CUDA both arms always compile)
    run_timeout_s: float = 1800.0
    muon_weight_decay_off: bool = False     # parity mode: Muon weight decay 0 in both arms
    kernels: str = DEFAULT_KERNELS          # ours only: "fast" (same maths, our cheapest order) or "parity" (upstream's
                                            # order: bit-identical compiled graphs; the parity verb sets it)
    fast_setting: bool = False              # ours only: other training arithmetic (bf16 compute; docs/performance.md),
                                            # judged by time-to-target against upstream's final BPB, never parity
    keep_checkpoints: bool = False          # keep final checkpoints (the weight-level parity check needs them)
    steady_state_skip: int = 5              # first N steps (compilation, warm-up) left out of the medians
    warmup_iterations: int = 0              # > 0: one unmeasured warm-up run per arm of this many steps first
    interleave_steps: int = 0               # > 0: a round's two arms run in lock-step, swapping the CPU every N steps
    warmdown_eval_every: int = 0            # > 0: also an eval every N steps from the warmdown's first step (ours and
                                            # command arms; upstream's --eval-every is fixed, so it refuses this)

    def __post_init__(self):
        _validate(self)

    @property
    def iterations(self) -> int:
        """Optimizer steps of one run, whichever way the horizon was given."""
        if self.num_iterations is not None:
            return self.num_iterations
        return self.target_tokens // self.total_batch_size

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def tokens(self) -> int:
        return self.iterations * self.total_batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "budget") -> "Budget":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BudgetError(f"{source}: unknown budget key(s) {unknown}; valid keys: {sorted(known)}")
        missing = sorted(f.name for f in dataclasses.fields(cls) if _required(f) and f.name not in d)
        if missing:
            raise BudgetError(f"{source}: missing budget key(s) {missing}; add them or start from a preset")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | Path) -> "Budget":
        return cls.from_dict(_budget_keys(read_toml(path), str(path)), source=str(path))

    def warmup_budget(self) -> "Budget":
        """The warm-up run's budget: the same shapes, model and evals (step 0 and the last step), fewer steps, so
        it compiles every graph a measured run uses (schedule values reach the compiled code as 0-D tensors in
        both arms, so a shorter schedule compiles nothing different)."""
        n = min(self.warmup_iterations, self.iterations)
        return self.with_overrides(num_iterations=n, warmup_steps=min(self.warmup_steps, n),
                                   steady_state_skip=min(self.steady_state_skip, n - 1), repeats=1)

    def with_overrides(self, **kw: Any) -> "Budget":
        """A copy with some fields replaced (validated again). Setting one horizon clears the other; moving a
        lock-step budget to CUDA or to several processes turns lock-step off unless the overrides set it too."""
        d = self.to_dict()
        moved = {k: kw.get(k, d[k]) for k in ("device", "nproc_per_node", "nnodes")}
        if "interleave_steps" not in kw and (moved["device"] != "cpu" or moved["nproc_per_node"] * moved["nnodes"] > 1):
            d["interleave_steps"] = 0
        if "num_iterations" in kw and "target_tokens" not in kw:
            d["target_tokens"] = None
        if "target_tokens" in kw and "num_iterations" not in kw:
            d["num_iterations"] = None
        d.update(kw)
        return Budget.from_dict(d, source=f"budget {self.name!r} with overrides")


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; every way of failing (missing, not a file, not UTF-8, not TOML) is a BudgetError."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise BudgetError(f"{path}: no such budget file; check the --budget-toml path") from None
    except IsADirectoryError:
        raise BudgetError(f"{path}: is a directory, not a budget file; pass a .toml file to --budget-toml") from None
    except PermissionError:
        raise BudgetError(f"{path}: not readable (permission denied); fix its permissions or copy it") from None
    except UnicodeDecodeError as e:
        raise BudgetError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise BudgetError(f"{path}: not valid TOML ({e}); fix the file") from None


def _budget_keys(doc: dict[str, Any], source: str = "budget file") -> dict[str, Any]:
    """Budget keys of a TOML document: top-level keys, or a [budget] table; other known tables are skipped."""
    doc = doc.get("budget", doc)
    if not isinstance(doc, dict):
        raise BudgetError(f"{source}: 'budget' must be a table ([budget] with key = value lines), "
                          f"not {type(doc).__name__} {doc!r}")
    doc = dict(doc)
    for table in TOML_TABLES:
        doc.pop(table, None)
    return doc


# ---------------------------------------------------------------- presets

def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name: str) -> Budget:
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise BudgetError(f"unknown preset {name!r}; choose one of {preset_names()} or pass --budget-toml FILE")
    return Budget.from_toml(path)


# ---------------------------------------------------------------- validation

def _validate(b: Budget) -> None:
    _check_types(b)
    _check_shape(b)
    _check_horizon(b)
    _check_schedule(b)
    _check_runs(b)
    _check_where(b)


def _fail(fld: str, value: Any, fix: str) -> None:
    raise BudgetError(f"budget {fld}={value!r}: {fix}")


def _check_types(b: Budget) -> None:
    for f in dataclasses.fields(b):
        v = getattr(b, f.name)
        if f.name in ("warmdown_ratio", "final_lr_frac", "run_timeout_s"):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                _fail(f.name, v, "must be a finite number, e.g. 0.5 (not nan or inf)")
        elif f.type in ("int", "int | None") and v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            _fail(f.name, v, "must be a whole number")
        elif f.type == "bool" and not isinstance(v, bool):
            _fail(f.name, v, "must be true or false")
        elif f.type == "str" and not isinstance(v, str):
            _fail(f.name, v, "must be a string")


def _check_shape(b: Budget) -> None:
    for name in ("depth", "aspect_ratio", "head_dim", "max_seq_len", "device_batch_size", "total_batch_size"):
        if getattr(b, name) < 1:
            _fail(name, getattr(b, name), "must be at least 1")
    if b.vocab_size < MIN_VOCAB:
        _fail("vocab_size", b.vocab_size, f"must be at least {MIN_VOCAB} (256 byte tokens + 9 special tokens)")
    if not b.window_pattern or set(b.window_pattern.upper()) - {"S", "L"}:
        _fail("window_pattern", b.window_pattern, "use only the letters S (short window) and L (long), e.g. 'SSSL'")
    per_step = b.device_batch_size * b.max_seq_len * b.world_size
    if b.total_batch_size % per_step:
        _fail("total_batch_size", b.total_batch_size,
              f"must be a multiple of device_batch_size*max_seq_len*world_size = {per_step}")


def _check_horizon(b: Budget) -> None:
    if (b.num_iterations is None) == (b.target_tokens is None):
        _fail("num_iterations", b.num_iterations, "give exactly one of num_iterations and target_tokens")
    if b.num_iterations is not None and b.num_iterations < 1:
        _fail("num_iterations", b.num_iterations, "must be at least 1")
    if b.target_tokens is not None and b.target_tokens < b.total_batch_size:
        _fail("target_tokens", b.target_tokens, f"must be at least one batch ({b.total_batch_size} tokens)")
    if not (isinstance(b.warmup_iterations, int) and b.warmup_iterations >= 0):
        _fail("warmup_iterations", b.warmup_iterations, "must be 0 (no warm-up run) or a number of steps")
    if b.interleave_steps < 0:
        _fail("interleave_steps", b.interleave_steps, "must be 0 (arms one after another) or a number of steps")
    if b.interleave_steps and (b.device != "cpu" or b.nproc_per_node * b.nnodes > 1):
        _fail("interleave_steps", b.interleave_steps, "lock-step runs only one-process CPU budgets; set it to 0")
    if not 0 <= b.steady_state_skip < b.iterations:
        _fail("steady_state_skip", b.steady_state_skip, f"must be between 0 and iterations-1 ({b.iterations - 1})")


def _check_schedule(b: Budget) -> None:
    if b.warmup_steps < 0:
        _fail("warmup_steps", b.warmup_steps, "must be 0 or more")
    if not 0.0 <= b.warmdown_ratio <= 1.0:
        _fail("warmdown_ratio", b.warmdown_ratio, "must be between 0 and 1")
    if b.kernels not in KERNELS:
        _fail("kernels", b.kernels, f"use one of {KERNELS}")
    if b.warmdown_shape not in WARMDOWN_SHAPES:
        _fail("warmdown_shape", b.warmdown_shape, f"use one of {WARMDOWN_SHAPES}")
    if not 0.0 <= b.final_lr_frac <= 1.0:
        _fail("final_lr_frac", b.final_lr_frac, "must be between 0 and 1")
    if b.eval_every < 1 and b.eval_every != -1:
        _fail("eval_every", b.eval_every, "must be at least 1 (or -1: no evaluation)")
    if b.warmdown_eval_every < 0:
        _fail("warmdown_eval_every", b.warmdown_eval_every, "must be 0 (no extra evals) or a number of steps")
    if b.warmdown_eval_every > 0 and b.eval_every == -1:
        _fail("warmdown_eval_every", b.warmdown_eval_every, "needs evals: set eval_every to a number of steps")
    eval_batch = b.device_batch_size * b.max_seq_len * b.world_size
    if b.eval_every > 0 and b.eval_tokens < eval_batch:
        _fail("eval_tokens", b.eval_tokens, f"must be at least one eval batch (device_batch_size*max_seq_len*world_size = {eval_batch})")


def _check_runs(b: Budget) -> None:
    if not isinstance(b.seeds, list) or not b.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in b.seeds):
        _fail("seeds", b.seeds, "must be a non-empty list of whole numbers, e.g. [42]")
    if len(set(b.seeds)) != len(b.seeds):
        _fail("seeds", b.seeds, "must not repeat a seed (use repeats for repetitions)")
    if b.repeats < 1:
        _fail("repeats", b.repeats, "must be at least 1")
    if b.run_timeout_s <= 0:
        _fail("run_timeout_s", b.run_timeout_s, "must be more than 0 seconds")


def _check_where(b: Budget) -> None:
    if b.device not in DEVICES:
        _fail("device", b.device, f"use one of {DEVICES}")
    if b.nproc_per_node < 1 or b.nnodes < 1:
        _fail("nproc_per_node" if b.nproc_per_node < 1 else "nnodes",
              min(b.nproc_per_node, b.nnodes), "must be at least 1")
    if not b.dataset:
        _fail("dataset", b.dataset, f"use one of {DATASETS} or a path to your own text or parquet files")
    if b.dataset not in DATASETS and not Path(b.dataset).expanduser().exists():
        _fail("dataset", b.dataset, f"no such path; use one of {DATASETS} or an existing file or directory")
