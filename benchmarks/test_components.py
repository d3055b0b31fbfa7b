"""The four component micro-benchmarks, each run for ours and upstream (group = component, param id = side)."""
from __future__ import annotations

import pytest

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
    measure(steps.block_step(side, model, shape), params=_params(model))


@pytest.mark.benchmark(group="model fwd+bwd")
def test_model_forward_backward(measure, side, shape):
    model = side.build_model()
    measure(steps.model_step(model, shape), params=_params(model))


@pytest.mark.benchmark(group="optimizer step")
def test_optimizer_step(measure, side, shape):
    model = side.build_model()
    measure(steps.optimizer_step(side.optimizer(model), model, shape), params=_params(model))


@pytest.mark.benchmark(group="data loader")
def test_data_loader_batch(measure, side, shape, base_dir):
    batches = side.loader(base_dir)
    try:
        # Fixed rounds: single batches are uneven (a document refill every few batches; ours may have one ready from
        # its prefetch thread), so one call cannot calibrate a round count. Times are per batch.
        measure(steps.loader_step(batches, shape), rounds=LOADER_ROUNDS, iterations=LOADER_BATCHES_PER_ROUND)
    finally:
        batches.close()  # our loader's prefetch thread; upstream's generator
