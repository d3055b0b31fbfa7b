"""Test helper: a tiny but real nanochat base dir (parquet shards + a trained tokenizer) from text shipped with Python.

The corpus is pydoc's topic help plus long docstrings of standard-library modules, read with ``ast``: real prose
and code, available offline, the same on every machine with the same Python.
"""
from __future__ import annotations

import ast
import functools
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from models.tokenizer import train_tokenizer

MIN_DOC_CHARS = 200


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)))]
    docs = (ast.get_docstring(n) for n in nodes)
    return [d for d in docs if d and len(d) >= MIN_DOC_CHARS]


@functools.lru_cache(maxsize=None)
def _corpus(max_chars: int) -> tuple[str, ...]:
    from pydoc_data.topics import topics
    texts = [topics[k] for k in sorted(topics)]
    total = sum(map(len, texts))
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        if total >= max_chars:
            break
        for doc in _docstrings(path):
            texts.append(doc)
            total += len(doc)
    return tuple(texts)


def stdlib_texts(max_chars: int = 600_000) -> list[str]:
    """Documents (pydoc topics first, then stdlib docstrings of >= 200 chars) until about ``max_chars`` characters."""
    return list(_corpus(max_chars))


def write_shard(path: Path, row_groups: list[list[str]]) -> Path:
    """A parquet file with one string column ``text`` and exactly the given row groups."""
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for texts in row_groups:
            writer.write_table(pa.table({"text": texts}, schema=schema), row_group_size=max(len(texts), 1))
    return path


def _split(items: list, parts: int) -> list[list]:
    """``items`` in ``parts`` contiguous pieces whose sizes differ by at most one."""
    q, r = divmod(len(items), parts)
    bounds = [i * q + min(i, r) for i in range(parts + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:])]


def write_shards(base_dir: Path, texts: list[str], n_shards: int = 3, row_groups_per_shard: int = 2) -> list[Path]:
    """``texts`` in order over ``base_dir/base_data_climbmix/shard_NNNNN.parquet``; the last shard is validation."""
    if len(texts) < n_shards * row_groups_per_shard:
        raise ValueError(f"{len(texts)} texts cannot fill {n_shards} shards x {row_groups_per_shard} row groups")
    data_dir = Path(base_dir) / "base_data_climbmix"
    return [write_shard(data_dir / f"shard_{i:05d}.parquet", _split(part, row_groups_per_shard))
            for i, part in enumerate(_split(texts, n_shards))]


def make_base_dir(root: Path, texts: list[str], n_shards: int = 3, row_groups_per_shard: int = 2,
                  vocab_size: int = 512) -> Path:
    """A nanochat base dir at ``root``: shards of ``texts`` and a tokenizer trained on the training shards' text."""
    root = Path(root)
    shards = write_shards(root, texts, n_shards, row_groups_per_shard)
    train_texts = (t for shard in shards[:-1] for t in pq.read_table(shard).column("text").to_pylist())
    train_tokenizer(train_texts, vocab_size, root)
    return root
