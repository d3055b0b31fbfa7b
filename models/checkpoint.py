"""Checkpoint files in upstream nanochat's layout, written by our trainer and read from either arm.

One directory per model holds, per saved step N (zero-padded to six digits):
  model_NNNNNN.pt            the model's state_dict (rank 0)
  meta_NNNNNN.json           step, val_bpb, model_config (GPTConfig fields), user_config, loop and loader state (rank 0)
  optim_NNNNNN_rankR.pt      the optimizer's state_dict, one file per rank (its state is sharded)
Every file is written to a temporary name in the same directory and renamed into place, so a crash never
leaves a half-written checkpoint under a real name.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import torch

from models.config import ConfigError, GPTConfig
from models.gpt import GPT
from protocol.files import write_atomic

# The keys upstream's base_train writes into meta_NNNNNN.json; readers (its loader, our harness) expect all of them.
META_KEYS = ("step", "val_bpb", "model_config", "user_config", "device_batch_size", "max_seq_len",
             "total_batch_size", "dataloader_state_dict", "loop_state")
_MODEL_FILE = re.compile(r"model_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint directory, file or state_dict that cannot be used; the message says what to fix."""


def model_path(checkpoint_dir, step: int) -> Path:
    return Path(checkpoint_dir) / f"model_{step:06d}.pt"


def meta_path(checkpoint_dir, step: int) -> Path:
    return Path(checkpoint_dir) / f"meta_{step:06d}.json"


def optim_path(checkpoint_dir, step: int, rank: int = 0) -> Path:
    return Path(checkpoint_dir) / f"optim_{step:06d}_rank{rank:d}.pt"


# ------------------------------------------------------------------------------------------- writing
def save_checkpoint(checkpoint_dir, step: int, model: torch.nn.Module, meta: dict, optimizer=None, rank: int = 0) -> None:
    """Write model + meta (rank 0 only) and this rank's optimizer state (if given), each atomically."""
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves its inner model's plain keys
    meta = _complete_meta(meta, step, model)
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_atomic(model_path(checkpoint_dir, step), lambda f: torch.save(model.state_dict(), f), binary=True)
        text = json.dumps(meta, indent=2)
        write_atomic(meta_path(checkpoint_dir, step), lambda f: f.write(text.encode("utf-8")), binary=True)
    if optimizer is not None:
        write_atomic(optim_path(checkpoint_dir, step, rank), lambda f: torch.save(optimizer.state_dict(), f),
                     binary=True)


def _complete_meta(meta: dict, step: int, model) -> dict:
    """Fill step and model_config from the model; refuse missing keys, contradictions and non-JSON values."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"meta must be a dict, got {type(meta).__name__}")
    config = asdict(model.config)
    meta = {"step": step, "model_config": config, **meta}
    if meta["step"] != step:
        raise CheckpointError(f"meta['step']={meta['step']!r} but saving step {step}: pass the same step")
    if meta["model_config"] != config:
        raise CheckpointError(f"meta['model_config']={meta['model_config']} differs from the model's config {config}: "
                              "leave it out or pass asdict(model.config)")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"meta lacks {', '.join(missing)}: upstream's meta json has all of {', '.join(META_KEYS)}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"meta is not JSON-serialisable ({e}): pass plain numbers, strings, lists and dicts") from None
    return meta


# ------------------------------------------------------------------------------------------- reading
def latest_step(checkpoint_dir) -> int:
    """The highest N with a model_NNNNNN.pt in the directory."""
    directory = _existing_dir(checkpoint_dir)
    steps = [int(m.group(1)) for p in directory.iterdir() if (m := _MODEL_FILE.fullmatch(p.name))]
    if not steps:
        raise CheckpointError(f"no model_NNNNNN.pt in {directory}: point at a directory a training run saved into")
    return max(steps)


def load_meta(checkpoint_dir, step: int) -> dict:
    path = meta_path(checkpoint_dir, step)
    if not path.is_file():
        raise CheckpointError(f"missing {path}: every model_{step:06d}.pt needs its meta json beside it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}): the file is damaged") from None


def load_upstream_checkpoint(checkpoint_dir, step: int | None = None, device="cpu") -> tuple[GPT, dict]:
    """Build our GPT from a model_NNNNNN.pt + meta_NNNNNN.json pair (ours or upstream's); latest step if None."""
    _existing_dir(checkpoint_dir)
    step = latest_step(checkpoint_dir) if step is None else step
    meta = load_meta(checkpoint_dir, step)
    config = _config_from_meta(meta, meta_path(checkpoint_dir, step))
    device = torch.device(device)
    state = _read_state_dict(model_path(checkpoint_dir, step), device)
    _patch_old_state(state, config)
    with torch.device("meta"):
        model = GPT(config)
    check_state_dict(model, state, source=str(model_path(checkpoint_dir, step)))
    model.to_empty(device=device)
    model.load_state_dict(state, strict=True, assign=True)
    model.reset_rotary()  # cos/sin are not saved
    model.cast_embeddings()
    return model, meta


def load_optimizer_state(checkpoint_dir, step: int, rank: int = 0, device="cpu") -> dict:
    path = optim_path(checkpoint_dir, step, rank)
    if not path.is_file():
        raise CheckpointError(f"missing {path}: resume needs the optimizer file of every rank")
    return torch.load(path, map_location=device)


def _existing_dir(checkpoint_dir) -> Path:
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist: pass the dir holding model_NNNNNN.pt")
    return directory


def _config_from_meta(meta: dict, path: Path) -> GPTConfig:
    fields = meta.get("model_config") if isinstance(meta, dict) else None
    if not isinstance(fields, dict):
        raise CheckpointError(f"{path} has no 'model_config' object: it is not a nanochat checkpoint meta")
    fields = {"window_pattern": "L", **fields}  # checkpoints older than sliding windows were all full-context
    try:
        return GPTConfig(**fields)
    except TypeError as e:
        raise CheckpointError(f"{path}: model_config does not match GPTConfig ({e})") from None
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None


def _read_state_dict(path: Path, device: torch.device) -> dict:
    if not path.is_file():
        raise CheckpointError(f"missing {path}: pass a step that was saved (see latest_step)")
    state = torch.load(path, map_location=device)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state_dict")
    upcast = device.type in ("cpu", "mps")  # GPU runs store embeddings in bf16; CPU/MPS compute in fp32
    return {k.removeprefix("_orig_mod."): (v.float() if upcast and v.dtype == torch.bfloat16 else v)
            for k, v in state.items()}


def _patch_old_state(state: dict, config: GPTConfig) -> None:
    """Checkpoints older than the per-layer scalars lack them; their neutral values reproduce that model."""
    state.setdefault("resid_lambdas", torch.ones(config.n_layer))
    state.setdefault("x0_lambdas", torch.zeros(config.n_layer))


def check_state_dict(model: torch.nn.Module, state: dict, source: str = "state_dict") -> None:
    """Raise a one-line CheckpointError naming missing, unexpected and mis-shaped keys."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)}!={expected[k]}" for k in expected
                 if k in state and tuple(state[k].shape) != expected[k]]
    problems = [f"{label}: {_first(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)) if keys]
    if problems:
        raise CheckpointError(f"{source} does not fit GPT({model.config}): {'; '.join(problems)}")


def _first(keys: list[str], n: int = 4) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
