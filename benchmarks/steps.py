"""What each micro-benchmark times, written once for both implementations: closures that do one unit of work.

Every closure leaves the device idle when it returns (a CUDA sync), so the wall clock pytest-benchmark reads is the
work's own time, and returns what it computed so a test can check the work was real. Inputs are fixed random tensors drawn on the CPU from one seed, so both sides see the same numbers.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from benchmarks.shapes import BenchShape

SEED = 1234


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device != "cpu" else (lambda: None)


def _randn(g: torch.Generator, shape: BenchShape, *dims: int, grad: bool = False) -> torch.Tensor:
    t = torch.randn(*dims, generator=g).to(shape.device, shape.torch_dtype)
    return t.requires_grad_(grad)


def token_batch(shape: BenchShape) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (inputs, targets) token ids of the shape, on its device."""
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, shape.vocab, (shape.device_batch, shape.seq_len + 1), generator=g)
    return ids[:, :-1].contiguous().to(shape.device), ids[:, 1:].contiguous().to(shape.device)


def block_step(side, model: torch.nn.Module, shape: BenchShape) -> Callable[[], torch.Tensor]:
    """Forward + backward of the last block: full-context attention with a value embedding in both models."""
    i = shape.depth - 1
    cfg = model.config
    B, T, C, kv = shape.device_batch, shape.seq_len, cfg.n_embd, cfg.n_kv_head * (cfg.n_embd // cfg.n_head)
    g = torch.Generator().manual_seed(SEED)
    x, ve = _randn(g, shape, B, T, C, grad=True), _randn(g, shape, B, T, kv, grad=True)
    grad_out = _randn(g, shape, B, T, C)
    block, sync = model.transformer.h[i], _sync(shape.device)

    def step():
        block.zero_grad(set_to_none=True)
        x.grad = ve.grad = None
        side.call_block(model, i, x, ve).backward(grad_out)
        sync()
        return x.grad
    return step


def model_step(model: torch.nn.Module, shape: BenchShape) -> Callable[[], torch.Tensor]:
    """Forward + backward of the whole model on one micro-batch: embeddings to the mean cross-entropy loss."""
    inputs, targets = token_batch(shape)
    sync = _sync(shape.device)

    def step():
        model.zero_grad(set_to_none=True)
        loss = model(inputs, targets)
        loss.backward()
        sync()
        return loss.detach()
    return step


def optimizer_step(optimizer: torch.optim.Optimizer, model: torch.nn.Module, shape: BenchShape) -> Callable[[], None]:
    """One optimizer step over every parameter, with real gradients from one forward + backward taken first."""
    inputs, targets = token_batch(shape)
    model(inputs, targets).backward()
    sync = _sync(shape.device)

    def step():
        optimizer.step()
        sync()
    return step


def loader_step(batches: Iterator, shape: BenchShape) -> Callable[[], tuple]:
    """The next (inputs, targets) batch on the device: read, tokenise, pack, copy (as each trainer consumes it)."""
    sync = _sync(shape.device)

    def step():
        batch = next(batches)
        sync()
        return batch
    return step
