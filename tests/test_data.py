"""The pretraining loader: shard listing, row-group striding, epochs, best-fit packing, errors, parity with upstream."""
from __future__ import annotations

import json
import os
import gc
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.data import (DataError, DocPool, Prefetcher, iter_batches, iter_packed_rows, iter_row_groups,
                         list_parquet_files, split_files)
from models.tokenizer import load_tokenizer
from tests.helpers_data import make_base_dir, stdlib_texts, write_shard


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """3 shards x 2 row groups of ~213 documents each (so row groups split into 128-doc chunks), vocab 512."""
    return make_base_dir(tmp_path_factory.mktemp("base"), stdlib_texts(2_000_000), n_shards=3, row_groups_per_shard=2)


@pytest.fixture(scope="module")
def tok(base):
    return load_tokenizer(base)


def _take(loader, n):
    with loader:
        return [next(loader) for _ in range(n)]


# ----------------------------------------------------------------------------------------------- shards

def test_shards_are_listed_by_name_with_legacy_dir_as_fallback(tmp_path):
    legacy = tmp_path / "base_data"
    legacy.mkdir()
    for name in ("shard_00002.parquet", "shard_00000.parquet", "shard_00001.parquet", "notes.txt"):
        (legacy / name).write_bytes(b"")
    assert [p.name for p in list_parquet_files(tmp_path)] == [f"shard_0000{i}.parquet" for i in range(3)]
    files = list_parquet_files(tmp_path)
    assert split_files(files, "train") == files[:2] and split_files(files, "val") == files[2:]


def test_missing_or_too_few_shards_are_refused(tmp_path):
    with pytest.raises(DataError, match="neither base_data_climbmix/ nor base_data/ exists"):
        list_parquet_files(tmp_path)
    (tmp_path / "base_data_climbmix").mkdir()
    (tmp_path / "base_data_climbmix/shard_00000.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="holds 1 .parquet shard.*need at least 2"):
        list_parquet_files(tmp_path)


def test_corrupt_shard_is_named(base, tok, tmp_path):
    for f in list_parquet_files(base):
        (tmp_path / "base_data_climbmix").mkdir(exist_ok=True)
        (tmp_path / "base_data_climbmix" / f.name).write_bytes(f.read_bytes())
    bad = tmp_path / "base_data_climbmix/shard_00001.parquet"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    with pytest.raises(DataError, match=f"{bad}: not a readable parquet file"):
        iter_batches(tmp_path, tok, "train", 2, 32)


def test_shard_without_text_column_is_named(tok, tmp_path):
    d = tmp_path / "base_data_climbmix"
    write_shard(d / "shard_00000.parquet", [["some text"]])
    pq.write_table(pa.table({"body": ["x"]}), d / "shard_00001.parquet")
    with pytest.raises(DataError, match=r"shard_00001.parquet: no 'text' column \(columns: \['body'\]\)"):
        iter_batches(tmp_path, tok, "val", 2, 32)


def test_a_rank_without_any_row_group_is_refused(tok, tmp_path):
    for i in range(2):
        write_shard(tmp_path / f"base_data_climbmix/shard_0000{i}.parquet", [["one row group only"]])
    with pytest.raises(DataError, match="rank 1 of 2 gets no row group.*at least 2 row groups"):
        iter_batches(tmp_path, tok, "train", 2, 32, rank=1, world_size=2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(split="test"), "split must be one of"),
    (dict(seq_len=0), "seq_len must be a positive integer"),
    (dict(rank=2, world_size=2), r"rank must be in \[0, world_size=2\)"),
    (dict(prefetch=-1), "prefetch must be an integer >= 0"),
    (dict(resume_state={"pq_idx": 0}), "resume_state must be a dict with integer pq_idx, rg_idx"),
])
def test_bad_settings_are_refused_naming_the_field(base, tok, kwargs, message):
    args = dict(split="train", device_batch_size=2, seq_len=32) | kwargs
    with pytest.raises(DataError, match=message):
        iter_batches(base, tok, **args)


# ----------------------------------------------------------------------------------------------- document stream

def _tags(files, rank, world, n, resume=None):
    it = iter_row_groups(files, rank, world, resume)
    return [next(it)[1] for _ in range(n)]


def test_ranks_stride_row_groups_disjointly_covering_every_shard(base):
    files = split_files(list_parquet_files(base), "train")
    r0, r1 = _tags(files, 0, 2, 2), _tags(files, 1, 2, 2)
    assert r0 == [(0, 0, 1), (1, 0, 1)] and r1 == [(0, 1, 1), (1, 1, 1)]
    assert sorted(r0 + r1) == sorted(_tags(files, 0, 1, 4))


def test_train_stream_wraps_to_the_first_shard_in_the_next_epoch(base):
    files = split_files(list_parquet_files(base), "train")
    assert _tags(files, 0, 1, 6) == [(0, 0, 1), (0, 1, 1), (1, 0, 1), (1, 1, 1), (0, 0, 2), (0, 1, 2)]
    assert _tags(split_files(list_parquet_files(base), "val"), 0, 1, 3) == [(0, 0, 1), (0, 1, 1), (0, 0, 2)]


def test_resume_starts_at_this_ranks_next_row_group(base):
    files = split_files(list_parquet_files(base), "train")
    assert _tags(files, 0, 1, 2, {"pq_idx": 0, "rg_idx": 0, "epoch": 3}) == [(0, 1, 3), (1, 0, 3)]
    assert _tags(files, 0, 1, 1, {"pq_idx": 0, "rg_idx": 1, "epoch": 3}) == [(1, 0, 3)]  # past the end: next shard
    assert _tags(files, 1, 2, 1, {"pq_idx": 0, "rg_idx": 0}) == [(1, 1, 1)]  # rank 1's next after rg 0 is in shard 1


# ----------------------------------------------------------------------------------------------- packing

def _reference_pack(lengths: list[int], batch_size: int, seq_len: int, buffer_size: int, chunk: int, n: int):
    """The packing rule read literally: a list scanned for the longest fit, else the shortest cropped."""
    docs = [np.arange(k * 1000, k * 1000 + n_tok) for k, n_tok in enumerate(lengths)]
    chunks, pool, out = [docs[i:i + chunk] for i in range(0, len(docs), chunk)], [], []
    for _ in range(n):
        rows = []
        for _ in range(batch_size):
            row = []
            while len(row) < seq_len + 1:
                while len(pool) < buffer_size:
                    pool.extend(chunks.pop(0))
                room = seq_len + 1 - len(row)
                fits = [i for i, d in enumerate(pool) if len(d) <= room]
                if fits:
                    row.extend(pool.pop(max(fits, key=lambda i: (len(pool[i]), -i))))
                else:
                    row.extend(pool.pop(min(range(len(pool)), key=lambda i: (len(pool[i]), i)))[:room])
            rows.append(row)
        out.append(np.array(rows))
    return out


def _chunks(lengths, chunk):
    docs = [np.arange(k * 1000, k * 1000 + n) for k, n in enumerate(lengths)]
    return iter([(docs[i:i + chunk], (0, i // chunk, 1)) for i in range(0, len(docs), chunk)])


def test_packing_takes_the_longest_fitting_doc_else_crops_the_shortest():
    # row width 10; docs 0..4 have 4, 7, 3, 6, 3 tokens; doc k's tokens are k*1000, k*1000+1, ...
    rows, _ = next(iter_packed_rows(_chunks([4, 7, 3, 6, 3, 12, 11], 5), batch_size=4, seq_len=9, buffer_size=1))
    assert rows[0].tolist() == [1000, 1001, 1002, 1003, 1004, 1005, 1006, 2000, 2001, 2002]  # 7 then the first 3
    assert rows[1].tolist() == [3000, 3001, 3002, 3003, 3004, 3005, 0, 1, 2, 3]            # 6 then 4
    assert rows[2].tolist() == [4000, 4001, 4002, 6000, 6001, 6002, 6003, 6004, 6005, 6006]  # 3, then 11 cropped
    assert rows[3].tolist() == list(range(5000, 5010))  # the tail of doc 6 was dropped; 12 cropped


def test_packing_matches_the_literal_rule_on_random_lengths():
    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(1, 40), rng.randint(40, 300)]) for _ in range(3000)]
    got = iter_packed_rows(_chunks(lengths, 16), batch_size=3, seq_len=64, buffer_size=50)
    for expected in _reference_pack(lengths, 3, 64, 50, 16, 40):
        assert np.array_equal(next(got)[0], expected)


def test_doc_pool_breaks_length_ties_by_arrival():
    pool = DocPool()
    for k, n in enumerate([3, 5, 3, 5]):
        pool.add(np.full(n, k))
    assert pool.take_longest_fitting(5)[0] == 1 and pool.take_longest_fitting(4)[0] == 0
    assert pool.take_longest_fitting(2) is None and pool.take_shortest()[0] == 2 and pool.size == 1


# ----------------------------------------------------------------------------------------------- loader

def test_loaders_are_deterministic_with_or_without_prefetch(base, tok):
    a = _take(iter_batches(base, tok, "train", 4, 128, buffer_size=32), 8)
    b = _take(iter_batches(base, tok, "train", 4, 128, buffer_size=32, prefetch=0), 8)
    for (xa, ya, sa), (xb, yb, sb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and sa == sb


def test_rows_start_with_bos_and_targets_are_inputs_shifted(base, tok):
    batches = _take(iter_batches(base, tok, "train", 4, 128, buffer_size=32), 5)
    for (x, y, _), (x_next, _, _) in zip(batches, batches[1:]):
        assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (4, 128)
        assert (x[:, 0] == tok.bos_id).all() and torch.equal(x[:, 1:], y[:, :-1])
        assert not torch.equal(x, x_next)


def test_rows_are_whole_documents_then_one_cropped(base, tok):
    docs = {tuple(d) for d in tok.encode_batch(stdlib_texts(2_000_000))}
    for x, y, _ in _take(iter_batches(base, tok, "train", 4, 256, buffer_size=32), 3):
        for row in torch.cat([x, y[:, -1:]], dim=1).tolist():
            starts = [i for i, t in enumerate(row) if t == tok.bos_id] + [len(row)]
            pieces = [tuple(row[a:b]) for a, b in zip(starts, starts[1:])]
            assert all(p in docs for p in pieces[:-1])
            assert any(d[:len(pieces[-1])] == pieces[-1] for d in docs)


def test_ranks_get_different_batches(base, tok):
    x0 = _take(iter_batches(base, tok, "train", 2, 64, rank=0, world_size=2), 1)[0][0]
    x1 = _take(iter_batches(base, tok, "train", 2, 64, rank=1, world_size=2), 1)[0][0]
    assert not torch.equal(x0, x1)


def test_state_follows_the_row_groups_into_the_next_epoch(base, tok):
    states = [s for _, _, s in _take(iter_batches(base, tok, "train", 4, 512, buffer_size=16), 100)]
    assert states[0] == {"pq_idx": 0, "rg_idx": 0, "epoch": 1}
    assert {"pq_idx": 1, "rg_idx": 1, "epoch": 1} in states and states[-1]["epoch"] == 2


def test_background_errors_reach_the_reader_every_time():
    def source():
        yield 1
        raise DataError("shard_00003.parquet: row group 2 unreadable")
    p = Prefetcher(source(), depth=2)
    assert next(p) == 1
    for _ in range(2):
        with pytest.raises(DataError, match="row group 2 unreadable"):
            next(p)
    p.close()


def _prefetch_threads() -> int:
    return sum(t.name == "batch-prefetch" for t in threading.enumerate())


def test_closed_or_dropped_loaders_stop_their_thread(base, tok):
    before = _prefetch_threads()
    closed, dropped = iter_batches(base, tok, "val", 2, 64), iter_batches(base, tok, "val", 2, 64)
    next(closed), next(dropped)
    closed.close()
    del dropped
    gc.collect()
    deadline = time.monotonic() + 5
    while _prefetch_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _prefetch_threads() == before


# ----------------------------------------------------------------------------------------------- against upstream

_UPSTREAM_DUMP = """
import json, os, sys, torch
from nanochat.tokenizer import get_tokenizer
from nanochat.dataloader import tokenizing_distributed_data_loader_with_state_bos_bestfit as upstream_loader
cases, out = json.loads(sys.argv[1]), sys.argv[2]
tok, dumps = get_tokenizer(), []
for c in cases:
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):   # upstream reads its rank and world size from torchrun's env
        os.environ.pop(k, None)
    if c["world_size"] > 1:
        os.environ.update(RANK=str(c["rank"]), LOCAL_RANK=str(c["rank"]), WORLD_SIZE=str(c["world_size"]))
    it = upstream_loader(tok, c["B"], c["T"], c["split"], device="cpu", buffer_size=c["buffer_size"],
                         resume_state_dict=c["resume"])
    # upstream refills the same tensors on every batch: keep copies
    dumps.append([[x.clone(), y.clone(), dict(s)] for x, y, s in (next(it) for _ in range(c["n"]))])
torch.save(dumps, out)
"""

_CASES = {
    "train": dict(split="train", B=4, T=256, n=20, rank=0, world_size=1, buffer_size=1000, resume=None),
    "val": dict(split="val", B=4, T=256, n=5, rank=0, world_size=1, buffer_size=1000, resume=None),
    "rank1of2": dict(split="train", B=4, T=256, n=20, rank=1, world_size=2, buffer_size=1000, resume=None),
    "shard_boundary_and_epoch": dict(split="train", B=4, T=512, n=100, rank=0, world_size=1, buffer_size=16, resume=None),
    "resumed": dict(split="train", B=4, T=128, n=10, rank=0, world_size=1, buffer_size=64,
                    resume={"pq_idx": 0, "rg_idx": 1, "epoch": 2}),
}


@pytest.fixture(scope="module")
def upstream_batches(upstream_repo, base, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("upstream") / "batches.pt"
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(base), PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(upstream_repo))
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-c", _UPSTREAM_DUMP, json.dumps(list(_CASES.values())), str(out)],
                       cwd=upstream_repo, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(zip(_CASES, torch.load(out)))


@pytest.mark.upstream
@pytest.mark.parametrize("case", list(_CASES))
def test_batches_are_bit_identical_to_upstream(upstream_batches, base, tok, case):
    c = _CASES[case]
    ours = iter_batches(base, tok, c["split"], c["B"], c["T"], rank=c["rank"], world_size=c["world_size"],
                        buffer_size=c["buffer_size"], resume_state=c["resume"])
    theirs = upstream_batches[case]
    for i, ((x, y, s), (ux, uy, us)) in enumerate(zip(_take(ours, c["n"]), theirs)):
        assert torch.equal(x, ux) and torch.equal(y, uy), f"{case}: batch {i} differs"
        assert s == us, f"{case}: state of batch {i} is {s}, upstream's {us}"
    if case == "shard_boundary_and_epoch":  # the case must really cross both
        assert {s["pq_idx"] for _, _, s in theirs} == {0, 1} and theirs[-1][2]["epoch"] == 2
