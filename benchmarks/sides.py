"""The two implementations behind one small interface, so each benchmark body is written once for both.

``Ours`` wraps models/ (GPT, config_from_depth, build_optimizer, iter_batches, the tokenizer); ``Upstream`` wraps
upstream nanochat's own modules imported in this process from a clone (nanochat.gpt, the optimizer made by
``GPT.setup_optimizer``, nanochat.dataloader). Only the calls differ: a block's argument list, how the optimizer
and the loader are made. Both models are built the same way (meta device, ``to_empty``, seed 42 initialisation).
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks.shapes import BenchShape
from models.config import config_from_depth

OUR_PACKAGES = ("models", "harness", "protocol", "upstream", "tests", "benchmarks")


def model_config(shape: BenchShape):
    """Our GPTConfig for the shape: upstream's GPTConfig takes exactly these fields."""
    return config_from_depth(shape.depth, shape.vocab, max_seq_len=shape.seq_len, aspect_ratio=shape.aspect_ratio,
                             head_dim=shape.head_dim, window_pattern=shape.window_pattern)


def _build(gpt_class, config, device: str, init) -> torch.nn.Module:
    with torch.device("meta"):
        model = gpt_class(config)
    model.to_empty(device=device)
    torch.manual_seed(42)
    init(model)
    return model


class Ours:
    def __init__(self, shape: BenchShape, kernels: str = "fast", free_grads: bool = False):
        self.shape = shape
        self.kernels = kernels  # protocol.kernels.KERNELS: "fast" (the default) or "parity" (upstream's op order)
        # True: grads dropped in the step, as our trainer runs it; False where a benchmark repeats one step on them
        self.free_grads = free_grads
        self.name = "ours" if kernels == "fast" else f"ours-{kernels}"

    def build_model(self) -> torch.nn.Module:
        from models.gpt import GPT
        return _build(lambda cfg: GPT(cfg, compute_dtype=self.shape.torch_dtype, kernels=self.kernels),
                      model_config(self.shape), self.shape.device, lambda m: m.init_weights(seed=42))

    def call_block(self, model, i: int, x: torch.Tensor, ve: torch.Tensor) -> torch.Tensor:
        from models.gpt import FAST_OPS, PLAIN_OPS
        T = x.size(1)
        window = model.windows[i]
        mask = None if window >= T else model._band_mask(T, window, x.device)  # cached, as forward uses it
        ops = FAST_OPS if model.fast_paths else PLAIN_OPS
        return model.transformer.h[i](x, ve, model.rope_cos[:, :T], model.rope_sin[:, :T], mask, ops,
                                      model.kernels == "fast")

    def optimizer(self, model) -> torch.optim.Optimizer:
        from models.optim import build_optimizer
        return build_optimizer(model, compile=self.shape.compile_optimizer, kernels=self.kernels,
                               free_grads=self.free_grads)

    def loader(self, base_dir: Path):
        from models.data import iter_batches
        from models.tokenizer import load_tokenizer
        s = self.shape
        return iter_batches(base_dir, load_tokenizer(base_dir), "train", s.device_batch, s.seq_len, device=s.device)


class Upstream:
    name = "upstream"

    def __init__(self, shape: BenchShape, clone: Path, base_dir: Path):
        self.shape = shape
        self.modules = import_upstream(clone, base_dir, shape)

    def build_model(self) -> torch.nn.Module:
        gpt = self.modules["nanochat.gpt"]
        config = gpt.GPTConfig(**asdict(model_config(self.shape)))
        return _build(gpt.GPT, config, self.shape.device, lambda m: m.init_weights())

    def call_block(self, model, i: int, x: torch.Tensor, ve: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        cos_sin = model.cos[:, :T], model.sin[:, :T]
        return model.transformer.h[i](x, ve, cos_sin, model.window_sizes[i], None)

    def optimizer(self, model) -> torch.optim.Optimizer:
        return model.setup_optimizer()

    def loader(self, base_dir: Path):
        load = self.modules["nanochat.dataloader"].tokenizing_distributed_data_loader_with_state_bos_bestfit
        tokenizer = self.modules["nanochat.tokenizer"].get_tokenizer()
        s = self.shape
        return load(tokenizer, s.device_batch, s.seq_len, "train", device=s.device)


def import_upstream(clone: Path, base_dir: Path, shape: BenchShape) -> dict:
    """Import upstream's modules from ``clone``; its data dir and dtype are read from the environment at import time."""
    clone = Path(clone).resolve()
    os.environ["NANOCHAT_BASE_DIR"] = str(base_dir)  # nanochat.dataset fixes its data dir when imported
    os.environ["NANOCHAT_DTYPE"] = shape.dtype       # nanochat.common fixes COMPUTE_DTYPE when imported
    if str(clone) not in sys.path:
        sys.path.append(str(clone))  # appended, so our packages win the one shared name ("tests")
    names = ("nanochat.common", "nanochat.gpt", "nanochat.tokenizer", "nanochat.dataloader")
    modules = {name: importlib.import_module(name) for name in names}
    _check_origins(clone)
    if modules["nanochat.common"].COMPUTE_DTYPE != shape.torch_dtype:
        raise ImportError(f"upstream computes in {modules['nanochat.common'].COMPUTE_DTYPE}, not {shape.dtype}: "
                          "nanochat was imported earlier in this process; run the benchmarks in a fresh process")
    return modules


def _check_origins(clone: Path) -> None:
    """nanochat must come from the clone, and none of our packages from it (both trees have a ``tests`` package)."""
    def inside(name: str) -> bool:
        module = sys.modules.get(name)
        return module is not None and clone in Path(module.__file__ or "").resolve().parents
    if not inside("nanochat"):
        raise ImportError(f"nanochat was imported from {sys.modules['nanochat'].__file__}, not from the clone "
                          f"{clone}: uninstall that nanochat so upstream's own code is what gets measured")
    clashes = [name for name in OUR_PACKAGES if inside(name)]
    if clashes:
        raise ImportError(f"{clashes} were imported from the upstream clone instead of this repository: "
                          "import them before the clone is put on sys.path")
