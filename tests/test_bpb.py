"""Bits per byte: checked against sums done by hand in plain Python on a model whose losses are known exactly."""
from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F

from models.bpb import eval_steps, evaluate_bpb

V = 7
BYTES = torch.tensor([1, 2, 3, 1, 4, 0, 0], dtype=torch.int32)  # ids 5 and 6 play the special tokens


class TableModel(torch.nn.Module):
    """Logits are a fixed row of a table picked by the input id, so each target's loss is known in closed form."""

    def __init__(self, table: torch.Tensor, flat: bool = True):
        super().__init__()
        self.table, self.flat = table, flat

    def forward(self, x, y, loss_reduction="mean"):
        logits = self.table[x]
        loss = F.cross_entropy(logits.view(-1, V), y.reshape(-1), ignore_index=-1, reduction=loss_reduction)
        return loss if self.flat else loss.view(y.shape)


def _table() -> torch.Tensor:
    return torch.arange(V * V, dtype=torch.float32).view(V, V).sin() * 3


def _batches(seed: int, n: int, with_ignored: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x, y = torch.randint(0, V, (3, 5), generator=g), torch.randint(0, V, (3, 5), generator=g)
        if with_ignored:
            y[0, :2] = -1
        out.append((x, y))
    return out


def _by_hand(table: torch.Tensor, batches) -> float:
    rows = table.tolist()
    nats = nbytes = 0.0
    for x, y in batches:
        for xi, yi in zip(x.reshape(-1).tolist(), y.reshape(-1).tolist()):
            if yi < 0 or BYTES[yi] == 0:
                continue
            nats += math.log(sum(math.exp(v) for v in rows[xi])) - rows[xi][yi]
            nbytes += int(BYTES[yi])
    return nats / (math.log(2) * nbytes)


@pytest.mark.parametrize("flat", [True, False])
def test_bpb_equals_hand_computed_sum_over_counted_targets(flat):
    batches = _batches(0, 4)
    got = evaluate_bpb(TableModel(_table(), flat), batches, 4, BYTES)
    assert got == pytest.approx(_by_hand(_table(), batches), rel=1e-6)


def test_ignored_targets_count_neither_loss_nor_bytes():
    batches = _batches(1, 3, with_ignored=True)
    got = evaluate_bpb(TableModel(_table()), batches, 3, BYTES)
    assert got == pytest.approx(_by_hand(_table(), batches), rel=1e-6)


def test_uniform_model_costs_log2_vocab_bits_per_counted_token():
    x = torch.zeros(1, 4, dtype=torch.long)
    y = torch.tensor([[0, 4, 5, 2]])  # 1 + 4 + 0 + 3 bytes; the special (5) is skipped
    got = evaluate_bpb(TableModel(torch.zeros(V, V)), [(x, y)], 1, BYTES)
    assert got == pytest.approx(3 * math.log2(V) / 8, rel=1e-6)


def test_only_the_first_steps_batches_are_used_and_extra_fields_ignored():
    batches = [(x, y, {"pq_idx": 0}) for x, y in _batches(2, 5)]
    got = evaluate_bpb(TableModel(_table()), batches, 2, BYTES)
    assert got == pytest.approx(_by_hand(_table(), [b[:2] for b in batches[:2]]), rel=1e-6)


def test_no_counted_bytes_gives_inf_and_short_batches_raise():
    x, y = torch.zeros(1, 2, dtype=torch.long), torch.tensor([[5, 6]])
    assert evaluate_bpb(TableModel(_table()), [(x, y)], 1, BYTES) == math.inf
    with pytest.raises(ValueError, match="ran out after 1 of 2"):
        evaluate_bpb(TableModel(_table()), [(x, y)], 2, BYTES)


def test_eval_steps_floors_tokens_over_batch_and_refuses_zero():
    assert eval_steps(80 * 524288, 32, 2048, 8) == 80
    assert eval_steps(16384, 8, 256, 1) == 8
    assert eval_steps(16383, 8, 256, 1) == 7
    with pytest.raises(ValueError, match="raise --eval-tokens"):
        eval_steps(1000, 8, 256, 1)


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mine = _batches(10 + rank, 3)
        bpb = evaluate_bpb(TableModel(_table()), mine, 3, BYTES)
        torch.save(bpb, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ranks_sum_loss_and_bytes_before_dividing(tmp_path):
    out = str(tmp_path / "bpb")
    torch.multiprocessing.spawn(_rank_main, args=(2, _free_port(), out), nprocs=2)
    expected = _by_hand(_table(), _batches(10, 3) + _batches(11, 3))
    for rank in range(2):
        assert torch.load(f"{out}.{rank}") == pytest.approx(expected, rel=1e-6)
