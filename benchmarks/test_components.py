"""The four component micro-benchmarks, each run for ours and upstream (group = component, param id = side)."""
from __future__ import annotations

import math

import pytest
import torch

from benchmarks import steps

# torch.compile of upstream's optimizer kernels trips a torch-internal deprecation warning: noise, not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

LOADER_ROUNDS = 20
LOADER_BATCHES_PER_ROUND = 10


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.benchmark(group="block fwd+bwd")
def test_block_forward_backward(measure, side, shape):
    model = side.build_model()
    x_grad = measure(steps.block_step(side, model, shape), params=_params(model))
    # the backward really ran through the block: a finite, non-zero gradient for its input and its weights
    assert torch.isfinite(x_grad).all() and x_grad.abs().sum() > 0
    block = model.transformer.h[shape.depth - 1]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters() if p.requires_grad)


@pytest.mark.benchmark(group="model fwd+bwd")
def test_model_forward_backward(measure, side, shape):
    model = side.build_model()
    loss = measure(steps.model_step(model, shape), params=_params(model))
    # a freshly initialised model on random tokens: cross-entropy near ln(vocab), and gradients everywhere
    assert abs(loss.item() - math.log(shape.vocab)) < 1.0
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.benchmark(group="optimizer step")
def test_optimizer_step(measure, side, shape):
    model = side.build_model()
    before = [p.detach().clone() for p in model.parameters()]
    measure(steps.optimizer_step(side.optimizer(model), model, shape), params=_params(model))
    # every parameter with a non-zero gradient moved (zero-initialised projections start with zero gradients)
    stuck = [n for (n, p), b in zip(model.named_parameters(), before)
             if p.grad is not None and p.grad.abs().sum() > 0 and torch.equal(b, p.detach())]
    assert not stuck and any(p.grad.abs().sum() > 0 for p in model.parameters()), f"not updated: {stuck}"


@pytest.mark.benchmark(group="data loader")
def test_data_loader_batch(measure, side, shape, base_dir):
    batches = side.loader(base_dir)
    try:
        # Fixed rounds: single batches are uneven (a document refill every few batches; ours may have one ready from
        # its prefetch thread), so one call cannot calibrate a round count. Times are per batch.
        inputs, targets = measure(steps.loader_step(batches, shape), rounds=LOADER_ROUNDS,
                                  iterations=LOADER_BATCHES_PER_ROUND)[:2]
        # a packed batch of real tokens: the shape asked for, ids inside the vocab, targets = inputs shifted by one
        assert inputs.shape == targets.shape == (shape.device_batch, shape.seq_len)
        assert 0 <= int(inputs.min()) and int(inputs.max()) < shape.vocab
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
    finally:
        batches.close()  # our loader's prefetch thread; upstream's generator
