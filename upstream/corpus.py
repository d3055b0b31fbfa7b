"""Training text as a list of documents: the offline corpus that ships with Python, or the user's own files.

The embedded corpus needs no network: pydoc's help topics plus every standard-library docstring of at least
200 characters, read with ``ast`` (nothing is imported). With CPython 3.11 that is ~2,450 documents, ~1.7 MB;
other Python versions give a slightly different text, so results record the workspace's content hash.
"""
from __future__ import annotations

import ast
import functools
import re
import sysconfig
from pathlib import Path

import pyarrow.parquet as pq

from upstream.errors import UpstreamError

MIN_DOCSTRING_CHARS = 200
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
TEXT_SUFFIXES = (".txt", ".md")


def embedded() -> list[str]:
    """The offline corpus, in a fixed order: help topics by name, then docstrings by file path and position.

    Read once per process (parsing the standard library takes seconds); callers get their own list.
    """
    return list(_embedded_once())


@functools.lru_cache(maxsize=1)
def _embedded_once() -> tuple[str, ...]:
    return tuple(collect_embedded())


def collect_embedded() -> list[str]:
    """The embedded corpus read afresh from the standard library (``embedded()`` caches this)."""
    from pydoc_data.topics import topics
    docs = [topics[name] for name in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        if not _SKIP_DIRS.intersection(path.relative_to(stdlib).parts):
            docs.extend(_docstrings(path))
    return require(docs, "the embedded corpus")


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):  # a few stdlib files are templates or other encodings
        return []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = (ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, kinds))
    return [doc for doc in found if doc and len(doc) >= MIN_DOCSTRING_CHARS]


def from_paths(paths: list[str | Path], split_paragraphs: bool = False) -> list[str]:
    """Documents from .txt/.md files (one per file, or one per blank-line-separated paragraph) and parquet
    files (their ``text`` column). Directories are walked in sorted order."""
    docs: list[str] = []
    for path in _expand(paths):
        if path.suffix == ".parquet":
            docs.extend(_parquet_texts(path))
        else:
            docs.extend(_text_docs(path, split_paragraphs))
    return require(docs, ", ".join(str(p) for p in paths) or "no paths")


def _expand(paths: list[str | Path]) -> list[Path]:
    out = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            out.extend(p for p in sorted(path.rglob("*")) if p.suffix in TEXT_SUFFIXES + (".parquet",))
        elif path.suffix in TEXT_SUFFIXES + (".parquet",) and path.is_file():
            out.append(path)
        else:
            raise UpstreamError(f"corpus path {path} is not a directory or a .txt, .md or .parquet file; "
                                f"pass such paths with --data")
    return out


def _text_docs(path: Path, split_paragraphs: bool) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UpstreamError(f"corpus file {path} is not UTF-8 text; convert it or leave it out") from None
    parts = re.split(r"\n\s*\n", text) if split_paragraphs else [text]
    return [part.strip() for part in parts if part.strip()]


def _parquet_texts(path: Path) -> list[str]:
    try:
        table = pq.read_table(path, columns=["text"])
    except Exception as e:  # pyarrow raises several types for bad files and missing columns
        raise UpstreamError(f"corpus file {path} has no readable 'text' column ({type(e).__name__}); "
                            f"fix or remove it") from None
    return [t for t in table.column("text").to_pylist() if isinstance(t, str) and t.strip()]


def require(docs: list[str], where: str) -> list[str]:
    """The documents, or a one-line error when there is no text at all."""
    if not docs:
        raise UpstreamError(f"the corpus from {where} is empty: give files with text in them "
                            f"(or use the embedded corpus)")
    return docs
