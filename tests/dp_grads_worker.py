"""Worker for the 2-process gloo test: each rank takes its own first micro-batch, back-props, and the
gradients are averaged with models.distributed; rank 0 saves them with both ranks' batches."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from models import distributed
from models.config import config_from_depth
from models.data import iter_batches
from models.gpt import GPT
from models.tokenizer import load_tokenizer

B, T = 2, 64


def build(base_dir) -> GPT:
    tok = load_tokenizer(base_dir)
    with torch.device("meta"):
        model = GPT(config_from_depth(2, tok.vocab_size, max_seq_len=T, head_dim=64, window_pattern="L"))
    model.to_empty(device="cpu")
    model.init_weights(seed=42)
    return model


def step0_grads(base_dir, x, y) -> dict[str, torch.Tensor]:
    model = build(base_dir)
    model(x, y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def main(base_dir: str, out: str) -> None:
    info, _ = distributed.init("cpu")
    model = build(base_dir)
    with iter_batches(base_dir, load_tokenizer(base_dir), "train", B, T, rank=info.rank,
                      world_size=info.world_size) as batches:
        x, y, _ = next(batches)
    model(x, y).backward()
    distributed.average_gradients(list(model.parameters()), info.world_size)
    torch.save((x, y), Path(out) / f"batch_rank{info.rank}.pt")
    if info.is_main:
        torch.save({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, Path(out) / "grads_rank0.pt")
    distributed.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
