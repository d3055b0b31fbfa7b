"""Pretraining batches from parquet shards, batch for batch the same as upstream nanochat's BOS-aligned best-fit loader.

Shards are the sorted ``*.parquet`` files of ``<base_dir>/base_data_climbmix`` (or the legacy ``base_data``), each with
a string column ``text``; the last shard is validation, the others training. Rank r of W reads row groups r, r+W, ...
of every shard of its split and hands them on in chunks of 128 documents, forever: after the last shard it starts
again at the first (``epoch`` counts passes from 1). Each document is tokenised with BOS in front.

Packing: a row holds T+1 tokens. Before every placement the document pool is topped up (whole chunks) to at least
``buffer_size`` documents; then the longest pooled document that fits in the room left is appended whole (ties: the
one pooled first). When none fits, the shortest (ties: pooled first) is cropped to fill the row and its tail dropped.
inputs = row[:T], targets = row[1:]. The state yielded with a batch names the row group of the latest top-up.

Speed without changing the maths: the pool is indexed by length (a bisect, not a scan over 1000 documents), and a
background thread reads, tokenises and packs a few batches ahead of the trainer.
"""
from __future__ import annotations

import bisect
import queue
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import torch

DATA_DIRS = ("base_data_climbmix", "base_data")  # the first that exists is used, as upstream does
CHUNK_DOCS = 128                                 # documents per top-up (upstream's tokenizer batch)
SPLITS = ("train", "val")

Tag = tuple[int, int, int]  # (pq_idx, rg_idx, epoch) of a row group


class DataError(ValueError):
    """Shards or loader settings that cannot produce batches; the message names the file or field to fix."""


def _brief(e: BaseException) -> str:
    """An exception as one short line: library messages can run over several lines."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:160] if lines else ''}"


# ----------------------------------------------------------------------------------------------- shards

def list_parquet_files(base_dir: str | Path) -> list[Path]:
    """All shards, sorted by name: the training shards then the validation shard (the last)."""
    base = Path(base_dir)
    data_dir = next((base / d for d in DATA_DIRS if (base / d).is_dir()), None)
    if data_dir is None:
        raise DataError(f"no shards under {base}: neither {DATA_DIRS[0]}/ nor {DATA_DIRS[1]}/ exists; run the data "
                        f"workspace step or point --base-dir at a nanochat base dir")
    files = sorted((p for p in data_dir.iterdir() if p.name.endswith(".parquet")), key=lambda p: p.name)
    if len(files) < 2:
        raise DataError(f"{data_dir} holds {len(files)} .parquet shard(s); need at least 2 (training + the last for "
                        f"validation)")
    return files


def split_files(files: list[Path], split: str) -> list[Path]:
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    return files[:-1] if split == "train" else files[-1:]


def open_shard(path: Path) -> pq.ParquetFile:
    """The shard's parquet reader, or a DataError naming the file if it is unreadable or has no ``text`` column."""
    try:
        shard = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable parquet file ({_brief(e)}); delete it and fetch it again") from None
    names = shard.schema_arrow.names
    if "text" not in names:
        raise DataError(f"{path}: no 'text' column (columns: {names}); not a nanochat pretraining shard")
    return shard


def read_texts(shard: pq.ParquetFile, path: Path, rg: int) -> list[str]:
    try:
        return shard.read_row_group(rg, columns=["text"]).column("text").to_pylist()
    except Exception as e:
        raise DataError(f"{path}: row group {rg} unreadable ({_brief(e)}); delete it and fetch it again") from None


# ----------------------------------------------------------------------------------------------- document stream

def resume_start(resume: dict | None) -> tuple[int, int | None, int]:
    """(pq_idx, rg_idx or None, epoch) to start from, checked: a loader state saved in a checkpoint, or None."""
    if resume is None:
        return 0, None, 1
    try:
        pq_idx, rg_idx, epoch = int(resume["pq_idx"]), int(resume["rg_idx"]), int(resume.get("epoch", 1))
    except (KeyError, TypeError, ValueError):
        raise DataError(f"resume_state must be a dict with integer pq_idx, rg_idx (and epoch); got {resume!r}") from None
    if pq_idx < 0 or rg_idx < 0 or epoch < 1:
        raise DataError(f"resume_state {resume!r} out of range: need pq_idx >= 0, rg_idx >= 0, epoch >= 1")
    return pq_idx, rg_idx, epoch


def iter_row_groups(files: list[Path], rank: int, world_size: int,
                    resume: dict | None = None) -> Iterator[tuple[list[str], Tag]]:
    """This rank's row groups of ``files``, round and round: (texts, (pq_idx, rg_idx, epoch))."""
    start_pq, resume_rg, epoch = resume_start(resume)
    first_pass = True
    while True:
        found = False
        for pq_idx in range(start_pq if first_pass else 0, len(files)):
            shard = open_shard(files[pq_idx])
            first_rg = rank
            if first_pass and resume_rg is not None and pq_idx == start_pq:
                first_rg = (resume_rg // world_size + 1) * world_size + rank  # our next row group after the saved one
            for rg in range(first_rg, shard.num_row_groups, world_size):
                texts = read_texts(shard, files[pq_idx], rg)
                found = found or bool(texts)
                yield texts, (pq_idx, rg, epoch)
        if not first_pass and not found:  # a whole pass gave nothing: looping on would hang the trainer
            raise DataError(f"rank {rank} of {world_size} finds no documents in {[str(f) for f in files]}: each shard "
                            f"needs at least {world_size} non-empty row groups")
        first_pass = False
        epoch += 1


def iter_token_chunks(row_groups: Iterator[tuple[list[str], Tag]], tokenizer,
                      chunk_docs: int = CHUNK_DOCS) -> Iterator[tuple[list[np.ndarray], Tag]]:
    """Row groups tokenised (BOS first) and cut into chunks of ``chunk_docs`` documents, each keeping its tag."""
    for texts, tag in row_groups:
        docs = [np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode_batch(texts)]
        for i in range(0, len(docs), chunk_docs):
            yield docs[i:i + chunk_docs], tag


# ----------------------------------------------------------------------------------------------- packing

class DocPool:
    """Documents waiting for a row, indexed by length so that best fit is a bisect rather than a scan.

    Equal lengths leave in the order they came in, which is the order upstream's list scan breaks ties in.
    """

    def __init__(self):
        self._by_len: dict[int, deque] = {}
        self._lengths: list[int] = []  # the distinct lengths present, ascending
        self.size = 0

    def add(self, doc: np.ndarray) -> None:
        n = len(doc)
        if n not in self._by_len:
            self._by_len[n] = deque()
            bisect.insort(self._lengths, n)
        self._by_len[n].append(doc)
        self.size += 1

    def _take(self, n: int) -> np.ndarray:
        same = self._by_len[n]
        doc = same.popleft()
        if not same:
            del self._by_len[n]
            del self._lengths[bisect.bisect_left(self._lengths, n)]
        self.size -= 1
        return doc

    def take_longest_fitting(self, room: int) -> np.ndarray | None:
        i = bisect.bisect_right(self._lengths, room)
        return self._take(self._lengths[i - 1]) if i else None

    def take_shortest(self) -> np.ndarray:
        return self._take(self._lengths[0])


def iter_packed_rows(chunks: Iterator[tuple[list[np.ndarray], Tag]], batch_size: int, seq_len: int,
                     buffer_size: int) -> Iterator[tuple[np.ndarray, dict]]:
    """(rows int64 (batch_size, seq_len+1), loader state) by best-fit packing of the chunk stream."""
    pool, tag, width = DocPool(), (0, 0, 1), seq_len + 1
    while True:
        rows = np.empty((batch_size, width), dtype=np.int64)
        for row in rows:
            pos = 0
            while pos < width:
                while pool.size < buffer_size:
                    docs, tag = next(chunks)
                    for doc in docs:
                        pool.add(doc)
                room = width - pos
                doc = pool.take_longest_fitting(room)
                if doc is None:  # nothing fits whole: crop the shortest to fill the row exactly
                    doc = pool.take_shortest()[:room]
                row[pos:pos + len(doc)] = doc
                pos += len(doc)
        yield rows, {"pq_idx": tag[0], "rg_idx": tag[1], "epoch": tag[2]}


# ----------------------------------------------------------------------------------------------- prefetch

class Prefetcher:
    """Runs an iterator in a daemon thread, ``depth`` items ahead; an error raised there re-raises in the reader."""

    def __init__(self, source: Iterator, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        # The thread gets only the queue, the flag and the source, so dropping the Prefetcher lets it stop.
        self._thread = threading.Thread(target=self._run, args=(source, self._queue, self._stop),
                                        name="batch-prefetch", daemon=True)
        self._thread.start()

    @staticmethod
    def _run(source: Iterator, out: queue.Queue, stop: threading.Event) -> None:
        try:
            for item in source:
                if not Prefetcher._put(out, stop, (item, None)):
                    return
        except BaseException as e:  # handed to the reader, which raises it where the trainer can see it
            Prefetcher._put(out, stop, (None, e))

    @staticmethod
    def _put(out: queue.Queue, stop: threading.Event, entry) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self):
        if self._error is None:
            item, self._error = self._queue.get()
            if self._error is None:
                return item
        raise self._error

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __del__(self):
        self._stop.set()


# ----------------------------------------------------------------------------------------------- the loader

@dataclass(frozen=True)
class LoaderConfig:
    """What one rank's loader reads and how it shapes batches; checked on construction."""
    split: str
    device_batch_size: int
    seq_len: int
    rank: int = 0
    world_size: int = 1
    buffer_size: int = 1000
    prefetch: int = 2        # batches prepared ahead in a background thread; 0 = prepare in the caller

    def __post_init__(self):
        if self.split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {self.split!r}")
        for name in ("device_batch_size", "seq_len", "world_size", "buffer_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise DataError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.rank, int) or not 0 <= self.rank < self.world_size:
            raise DataError(f"rank must be in [0, world_size={self.world_size}), got {self.rank!r}")
        if not isinstance(self.prefetch, int) or self.prefetch < 0:
            raise DataError(f"prefetch must be an integer >= 0, got {self.prefetch!r}")


def check_shards(files: list[Path], rank: int, world_size: int) -> None:
    """Fail before training if a shard is unreadable or this rank would get no row group at all."""
    groups = {f: open_shard(f).num_row_groups for f in files}
    if not any(len(range(rank, n, world_size)) for n in groups.values()):
        counts = ", ".join(f"{f.name}: {n}" for f, n in groups.items())
        raise DataError(f"rank {rank} of {world_size} gets no row group ({counts}); each shard needs at least "
                        f"{world_size} row groups")


class BatchLoader:
    """Iterator of (inputs, targets, state): int64 (B, T) tensors on ``device`` and {pq_idx, rg_idx, epoch}."""

    def __init__(self, base_dir: str | Path, tokenizer, config: LoaderConfig, device: str | torch.device = "cpu",
                 resume_state: dict | None = None):
        self.config, self.device = config, torch.device(device)
        files = split_files(list_parquet_files(base_dir), config.split)
        check_shards(files, config.rank, config.world_size)
        resume_start(resume_state)  # check it now, not in the background thread
        groups = iter_row_groups(files, config.rank, config.world_size, resume_state)
        rows = iter_packed_rows(iter_token_chunks(groups, tokenizer), config.device_batch_size, config.seq_len,
                                config.buffer_size)
        self._rows = Prefetcher(rows, config.prefetch) if config.prefetch else rows

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        rows, state = next(self._rows)
        rows = torch.from_numpy(rows)
        inputs, targets = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
        if self.device.type == "cuda":  # pinned host memory lets the copy overlap the running step
            inputs, targets = inputs.pin_memory(), targets.pin_memory()
        return (inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True), state)

    def close(self) -> None:
        """Stop the background thread (a validation loader is dropped after a few batches)."""
        if isinstance(self._rows, Prefetcher):
            self._rows.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def iter_batches(base_dir: str | Path, tokenizer, split: str, device_batch_size: int, seq_len: int,
                 rank: int = 0, world_size: int = 1, device: str | torch.device = "cpu", buffer_size: int = 1000,
                 resume_state: dict | None = None, prefetch: int = 2) -> BatchLoader:
    """One rank's endless batch iterator over ``split`` ('train' or 'val'); see the module docstring."""
    config = LoaderConfig(split, device_batch_size, seq_len, rank, world_size, buffer_size, prefetch)
    return BatchLoader(base_dir, tokenizer, config, device, resume_state)
