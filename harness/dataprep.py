"""The data workspace a campaign's arms share: parquet shards plus tokenizer, built once before the runs.

With an upstream checkout, upstream.workspace builds it and trains the tokenizer with upstream's own
scripts.tok_train. Without one (campaigns of our arm or external trainers only), the same shards are written by
upstream.workspace's shard writer and the tokenizer is trained by models.tokenizer, in a separate directory
tree so the two kinds of workspace never mix. The content hashes go into every RunResult.data.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
from dataclasses import asdict
from pathlib import Path

from harness.budget import DATASETS, Budget
from harness.results import DataIdentity
from upstream.errors import UpstreamError

OWN_TOKENIZER_DIR = "own-tokenizer"   # workspaces whose tokenizer models.tokenizer trained
CLIMBMIX_HOST = ("huggingface.co", 443)
CLIMBMIX_TOKENS_PER_SHARD = 40e6      # a conservative guess (~60M per shard measured upstream): size the download


class DataPrepError(ValueError):
    """The data workspace cannot be built; the message says what to change."""


def data_spec(budget: Budget, source: str | None = None):
    """upstream.workspace.DataSpec for a budget: enough row groups per shard for every rank."""
    from upstream.workspace import DataSpec
    source = source or (budget.dataset if budget.dataset in DATASETS else "files")
    paths = (budget.dataset,) if source == "files" else ()
    shards = max(8, math.ceil(budget.tokens / CLIMBMIX_TOKENS_PER_SHARD))
    return DataSpec(source=source, vocab_size=budget.vocab_size, paths=paths, row_groups=max(8, budget.world_size),
                    climbmix_shards=shards)


def online(host: tuple[str, int] | None = None, timeout_s: float = 3.0) -> bool:
    """Can this machine open a connection to the climbmix host? (Upstream's download retries for minutes offline.)

    The default is CLIMBMIX_HOST, or the HOST:PORT in $NANOCHAT_BENCH_CLIMBMIX_PROBE (upstream.workspace.probe_address).
    """
    from upstream.workspace import probe_address
    try:
        socket.create_connection(host or probe_address(*CLIMBMIX_HOST), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def prepare(budget: Budget, root: str | Path, checkout: str | Path | None) -> tuple[Path, DataIdentity, list[str]]:
    """(base dir, its identity, warnings) for ``budget`` under ``root``; climbmix offline falls back to embedded."""
    warnings: list[str] = []
    spec = data_spec(budget)
    try:
        if spec.source == "climbmix" and not _cached(spec, Path(root)) and not online():
            raise UpstreamError(f"cannot reach {CLIMBMIX_HOST[0]} to download climbmix (offline?)")
        base = _build(spec, Path(root), checkout)
    except UpstreamError as e:
        if spec.source != "climbmix":
            raise DataPrepError(str(e)) from None
        warnings.append(f"climbmix is unavailable ({e}); using the embedded corpus instead")
        spec = data_spec(budget, source="embedded")
        base = _build(spec, Path(root), checkout)
    return base, identity(base, spec.source, budget.vocab_size), warnings


def _cached(spec, root: Path) -> bool:
    """A climbmix workspace for this spec was built before (upstream.workspace reuses it without downloading)."""
    return (root / spec.key() / "workspace.json").is_file()


def _build(spec, root: Path, checkout: str | Path | None) -> Path:
    from upstream import workspace
    if checkout is not None:
        return workspace.prepare(spec, checkout, root)
    if spec.source == "climbmix":
            raise UpstreamError("downloading climbmix runs upstream's nanochat.dataset: give an upstream source "
                            "(--upstream or NANOCHAT_UPSTREAM)")
    return _build_own(spec, root / OWN_TOKENIZER_DIR)


def _build_own(spec, root: Path) -> Path:
    """Shards as upstream.workspace writes them, tokenizer from models.tokenizer; reused while the marker matches."""
    from upstream import corpus, workspace
    final = root / spec.key()
    marker = {"spec": json.loads(json.dumps(asdict(spec))), "tokenizer": "models.tokenizer"}
    if _marker(final) == marker and all((final / f).is_file() for f in workspace.TOKENIZER_FILES):
        return final
    build = root / f".{spec.key()}.build-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    docs = corpus.embedded() if spec.source == "embedded" else corpus.from_paths(list(spec.paths))
    shards = workspace.write_shards(docs, build / workspace.DATA_DIR, spec)
    _train_own_tokenizer(shards[:-1], spec.vocab_size, build)
    (build / "workspace.json").write_text(json.dumps(marker, indent=2, sort_keys=True))
    shutil.rmtree(final, ignore_errors=True)
    build.rename(final)
    return final


def _train_own_tokenizer(train_shards: list[Path], vocab_size: int, base: Path) -> None:
    """Train on the train shards' text in file and row-group order, as upstream's tok_train reads it."""
    import pyarrow.parquet as pq
    from models.tokenizer import train_tokenizer

    def texts():
        for path in train_shards:
            pf = pq.ParquetFile(path)
            for i in range(pf.num_row_groups):
                yield from pf.read_row_group(i, columns=["text"]).column("text").to_pylist()
    train_tokenizer(texts(), vocab_size, base)


def _marker(base: Path) -> dict | None:
    try:
        return json.loads((base / "workspace.json").read_text())
    except (OSError, ValueError):
        return None


def identity(base: Path, dataset: str, vocab_size: int) -> DataIdentity:
    """Content hashes of the shards and the tokenizer files, so two runs can prove they read the same data."""
    from upstream.workspace import content_hash
    hashes = content_hash(base)
    shards = {k: v for k, v in hashes.items() if k.endswith(".parquet")}
    tokenizer = {k: v for k, v in hashes.items() if k.startswith("tokenizer/")}
    return DataIdentity(dataset=dataset, vocab_size=vocab_size, shards_sha256=_digest(shards),
                        tokenizer_sha256=_digest(tokenizer), base_dir=str(base))


def _digest(files: dict[str, str]) -> str | None:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest() if files else None
