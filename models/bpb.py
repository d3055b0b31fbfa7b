"""Validation bits per byte: the model's cross-entropy in bits divided by the UTF-8 bytes its targets stand for.

Dividing by bytes instead of tokens makes the number comparable across vocabularies. Targets whose byte length is 0
(the special tokens) and targets < 0 (ignored positions) count neither loss nor bytes. Sums are taken over every
rank when torch.distributed is initialised, so all ranks return the same value.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.distributed as dist


def eval_steps(eval_tokens: int, device_batch_size: int, seq_len: int, world_size: int = 1) -> int:
    """Batches each rank evaluates so that all ranks together see about ``eval_tokens`` tokens."""
    per_step = device_batch_size * seq_len * world_size
    if eval_tokens < per_step:
        raise ValueError(f"eval_tokens={eval_tokens} is less than one evaluation step ({device_batch_size} x {seq_len} "
                         f"x {world_size} ranks = {per_step} tokens); raise --eval-tokens")
    return eval_tokens // per_step


def _batch_sums(losses: torch.Tensor, targets: torch.Tensor, token_bytes: torch.Tensor):
    """(nats, bytes) of one batch over the targets that count."""
    targets = targets.reshape(-1)
    losses = losses.reshape(-1)
    valid = targets >= 0
    nbytes = torch.where(valid, token_bytes[targets.clamp(min=0)], 0)  # never index with an ignored (-1) target
    return (losses * (nbytes > 0)).sum(), nbytes.sum(dtype=torch.int64)


@torch.no_grad()
def evaluate_bpb(model, batches: Iterable, steps: int, token_bytes: torch.Tensor) -> float:
    """Bits per byte of ``model`` over the next ``steps`` batches; each batch is (inputs, targets, ...).

    ``model(x, y, loss_reduction="none")`` must return the per-token cross-entropy in nats, (B, T) or (B*T,).
    Returns inf when no target counts.
    """
    it = iter(batches)
    nats = bytes_ = None
    for step in range(steps):
        try:
            x, y = next(it)[:2]
        except StopIteration:
            raise ValueError(f"the validation batches ran out after {step} of {steps} steps") from None
        n, b = _batch_sums(model(x, y, loss_reduction="none"), y, token_bytes)
        nats, bytes_ = (n.float(), b) if nats is None else (nats + n, bytes_ + b)
    if nats is None:
        nats, bytes_ = torch.zeros((), device=token_bytes.device), torch.zeros((), dtype=torch.int64, device=token_bytes.device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(nats, op=dist.ReduceOp.SUM)
        dist.all_reduce(bytes_, op=dist.ReduceOp.SUM)
    total_nats, total_bytes = nats.item(), bytes_.item()  # one device sync each, at the end
    return total_nats / (math.log(2) * total_bytes) if total_bytes else float("inf")
