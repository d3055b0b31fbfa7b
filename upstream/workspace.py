"""A nanochat base directory per data setting: parquet shards plus a tokenizer trained by upstream's own script.

Layout (what upstream reads through $NANOCHAT_BASE_DIR)::

    <root>/<source>-v<vocab>-<hash>/base_data_climbmix/shard_00000.parquet ...   (last shard = validation)
                                    tokenizer/tokenizer.pkl, tokenizer/token_bytes.pt
                                    workspace.json                               (marker: spec, inputs, hashes)

Built once into a temporary directory and renamed into place, then reused while the marker still matches the
spec, the inputs and the files on disk. Both arms read the same directory, which is what makes data matched.
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from protocol.files import write_text_atomic
from upstream import corpus, revision
from upstream.errors import UpstreamError, last_line

DATA_DIR = "base_data_climbmix"
TOKENIZER_FILES = ("tokenizer/tokenizer.pkl", "tokenizer/token_bytes.pt")
MARKER = "workspace.json"
SOURCES = ("embedded", "files", "climbmix")
UPSTREAM_MAX_CHARS = 2_000_000_000  # tok_train's own default: i.e. "all the training text" for small corpora
# HOST:PORT the climbmix reachability check connects to instead of the real host (the tests point it at a closed
# local port, so the offline path runs the same on every machine and no connection leaves it)
ENV_CLIMBMIX_PROBE = "NANOCHAT_BENCH_CLIMBMIX_PROBE"


@dataclass(frozen=True)
class DataSpec:
    """What goes into a base dir. ``row_groups`` must be >= the largest world size that will read it."""
    source: str = "embedded"               # embedded | files | climbmix
    vocab_size: int = 4096
    paths: tuple[str, ...] = ()            # files: .txt/.md/.parquet files or directories
    split_paragraphs: bool = False         # files: one document per blank-line-separated paragraph
    train_shards: int = 2                  # embedded/files: train shards; one validation shard is added
    val_fraction: float = 0.1              # embedded/files: share of documents in the validation shard
    row_groups: int = 8                    # per shard, embedded/files
    climbmix_shards: int = 8               # climbmix: train shards to download (nanochat.dataset -n)
    tokenizer_max_chars: int = UPSTREAM_MAX_CHARS
    seed: int = 0                          # document shuffle before sharding

    def __post_init__(self):
        object.__setattr__(self, "paths", tuple(str(Path(p).expanduser().resolve()) for p in self.paths))
        _check(self.source in SOURCES, f"data source {self.source!r} is unknown; use one of {', '.join(SOURCES)}")
        _check(self.vocab_size >= 256 + 9 + 1, f"vocab size {self.vocab_size} is too small; use at least 266")
        _check((self.source == "files") == bool(self.paths), "data source 'files' needs paths (and only it takes them)")
        _check(self.train_shards >= 2, f"train_shards={self.train_shards}: use >= 2 (upstream needs >= 3 shards)")
        _check(0 < self.val_fraction < 0.5, f"val_fraction={self.val_fraction}: use a value in (0, 0.5)")
        _check(self.row_groups >= 1 and self.climbmix_shards >= 2, "row_groups must be >= 1, climbmix_shards >= 2")

    def key(self) -> str:
        """Directory name: readable prefix plus a hash of every field (the embedded text depends on Python)."""
        d = asdict(self) | ({"python": sys.version_info[:2]} if self.source == "embedded" else {})
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.source}-v{self.vocab_size}-{digest}"


# Upstream's own note (runs/speedrun.sh): a climbmix shard is ~250M characters. Assume >= 3 characters per token
# and that best-fit packing crops ~35% of tokens at T=2048 (upstream's dataloader docstring): a low estimate.
CLIMBMIX_TOKENS_PER_SHARD = int(250e6 / 3 * 0.65)


def climbmix_shards_for(train_tokens: int) -> int:
    """Train shards to download so a run of ``train_tokens`` does not wrap into a second epoch (plus one spare)."""
    return max(2, -(-int(train_tokens) // CLIMBMIX_TOKENS_PER_SHARD) + 1)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UpstreamError(message)


def prepare(spec: DataSpec, checkout: str | Path, root: str | Path, python: str = sys.executable) -> Path:
    """The ready base dir for ``spec`` under ``root``, built with the upstream work tree ``checkout`` if needed."""
    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    final = root / spec.key()
    with FileLock(str(final) + ".lock"):
        if _reusable(final, spec):
            return final
        build = root / f".{spec.key()}.build-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        try:
            _build(spec, Path(checkout), build, python, logs=root / spec.key())
        finally:  # a failed build leaves only its logs (<key>.<step>.log beside it), never half a workspace
            if not (build / MARKER).exists():
                shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        build.rename(final)
    return final


def _build(spec: DataSpec, checkout: Path, base: Path, python: str, logs: Path) -> None:
    """Shards (written or downloaded), validated, then upstream's tok_train; logs go to <logs>.<step>.log."""
    (base / DATA_DIR).mkdir(parents=True)
    if spec.source == "climbmix":
        _require_network(checkout)
        _run_upstream(python, checkout, base, ["-m", "nanochat.dataset", "-n", str(spec.climbmix_shards)],
                      Path(f"{logs}.download.log"))
        _check_downloaded(base / DATA_DIR, spec.climbmix_shards + 1)
    else:
        docs = corpus.embedded() if spec.source == "embedded" else corpus.from_paths(list(spec.paths),
                                                                                     spec.split_paragraphs)
        write_shards(docs, base / DATA_DIR, spec)
    validate_shards(base / DATA_DIR, spec.row_groups)
    _train_tokenizer(python, checkout, base, spec, Path(f"{logs}.tok_train.log"))
    marker = {"spec": asdict(spec), "inputs": _inputs(spec), "built_with": _commit_of(checkout),
              "python": sys.version.split()[0], "content": content_hash(base)}
    write_text_atomic(base / MARKER, json.dumps(marker, indent=2, sort_keys=True))


def _train_tokenizer(python: str, checkout: Path, base: Path, spec: DataSpec, log: Path) -> None:
    """Upstream's tok_train into ``base/tokenizer``; a revision with another layout (upstream/revision.py) sees a
    view of ``base`` with links where it looks for shards and writes its tokenizer."""
    args = ["-m", "scripts.tok_train", f"--vocab-size={spec.vocab_size}", f"--max-chars={spec.tokenizer_max_chars}"]
    layout = revision.layout_at(checkout)
    if layout is None or (layout.data, layout.tokenizer) == (DATA_DIR, "tokenizer"):
        _run_upstream(python, checkout, base, args, log)
        return
    view = base / ".layout-view"
    (base / "tokenizer").mkdir(exist_ok=True)
    for target, where in ((base / DATA_DIR, layout.data), (base / "tokenizer", layout.tokenizer)):
        (view / where).parent.mkdir(parents=True, exist_ok=True)
        (view / where).symlink_to(target, target_is_directory=True)
    try:
        _run_upstream(python, checkout, view, args, log, dict(layout.env))
    finally:
        shutil.rmtree(view, ignore_errors=True)


def _reusable(base: Path, spec: DataSpec) -> bool:
    try:
        marker = json.loads((base / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("spec") != json.loads(json.dumps(asdict(spec))) or marker.get("inputs") != _inputs(spec):
        return False
    validate_shards(base / DATA_DIR, spec.row_groups)  # a corrupted shard is an error, not a silent rebuild
    return all((base / f).is_file() for f in TOKENIZER_FILES) and content_hash(base) == marker.get("content")


def _inputs(spec: DataSpec) -> dict:
    """What the user's files looked like (size, mtime): edits to them rebuild the workspace."""
    if spec.source != "files":
        return {}
    files = [p for raw in spec.paths for p in ([Path(raw)] if Path(raw).is_file() else sorted(Path(raw).rglob("*")))]
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.is_file()}


# --- shards ------------------------------------------------------------------------------------------------

def write_shards(docs: list[str], data_dir: Path, spec: DataSpec) -> list[Path]:
    """Shuffle once (seeded), cut off the validation share, split the rest into train shards; last = val."""
    order = list(docs)
    random.Random(spec.seed).shuffle(order)
    n_val = max(spec.row_groups, round(len(order) * spec.val_fraction))
    train, val = order[n_val:], order[:n_val]
    per = math.ceil(len(train) / spec.train_shards)
    parts = [train[i * per:(i + 1) * per] for i in range(spec.train_shards)] + [val]
    if min(len(p) for p in parts) < spec.row_groups:
        raise UpstreamError(f"the corpus has {len(docs)} documents: too few for {len(parts)} shards of "
                            f"{spec.row_groups} row groups; give more text or lower row_groups")
    data_dir.mkdir(parents=True, exist_ok=True)
    return [_write_shard(part, data_dir / f"shard_{i:05d}.parquet", spec.row_groups) for i, part in enumerate(parts)]


def _write_shard(docs: list[str], path: Path, row_groups: int) -> Path:
    bounds = [round(i * len(docs) / row_groups) for i in range(row_groups + 1)]
    schema = pa.schema([("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for lo, hi in zip(bounds, bounds[1:]):
            writer.write_table(pa.table({"text": docs[lo:hi]}, schema=schema))
    return path


def validate_shards(data_dir: Path, min_row_groups: int) -> list[Path]:
    """Every shard readable, with a string ``text`` column and enough row groups; at least 3 shards."""
    shards = sorted(Path(data_dir).glob("*.parquet"))
    _check(len(shards) >= 3, f"{data_dir} has {len(shards)} parquet shards; upstream needs >= 3 "
                             f"(train + validation): delete {Path(data_dir).parent} to rebuild it")
    for path in shards:
        try:
            meta = pq.ParquetFile(path)
            column = meta.schema_arrow.field("text")
        except Exception as e:  # ArrowInvalid, OSError, KeyError: all mean "not a shard upstream can read"
            raise UpstreamError(f"shard {path} is not a readable parquet file with a 'text' column "
                                f"({type(e).__name__}); delete {Path(data_dir).parent} to rebuild it") from None
        _check(pa.types.is_string(column.type) or pa.types.is_large_string(column.type),
               f"shard {path}: column 'text' is {column.type}, not string")
        _check(meta.num_row_groups >= min_row_groups, f"shard {path} has {meta.num_row_groups} row groups; "
               f"it needs >= {min_row_groups} (one per rank): rebuild with more row groups")
    return shards


def _require_network(checkout: Path) -> None:
    """Fail in seconds, not after upstream's minutes of retries, when the shards' host cannot be reached."""
    host = _climbmix_host(checkout)
    try:
        socket.create_connection(probe_address(host), timeout=10).close()
    except OSError as e:
        raise UpstreamError(f"cannot reach {host} to download climbmix ({e.__class__.__name__}); "
                            f"use --data embedded or --data PATH on an offline machine") from None


def probe_address(host: str, port: int = 443) -> tuple[str, int]:
    """Where to check that ``host`` can be reached: (host, port), unless $NANOCHAT_BENCH_CLIMBMIX_PROBE gives HOST:PORT."""
    override = os.environ.get(ENV_CLIMBMIX_PROBE, "").strip()
    if not override:
        return host, port
    probe_host, _, probe_port = override.rpartition(":")
    if not probe_host or not probe_port.isdigit():
        raise UpstreamError(f"{ENV_CLIMBMIX_PROBE}={override!r}: use HOST:PORT, e.g. 127.0.0.1:9")
    return probe_host, int(probe_port)


def _climbmix_host(checkout: Path) -> str:
    """The host in upstream's own nanochat/dataset.py BASE_URL, read without importing it."""
    tree = ast.parse((checkout / "nanochat" / "dataset.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "BASE_URL" for t in node.targets):
            return urllib.parse.urlparse(ast.literal_eval(node.value)).hostname or "huggingface.co"
    return "huggingface.co"


def _check_downloaded(data_dir: Path, expected: int) -> None:
    got = len(list(data_dir.glob("*.parquet")))
    _check(got >= expected, f"only {got} of {expected} climbmix shards downloaded (no network?); "
                            f"use --data embedded or --data PATH on an offline machine")


# --- running upstream's own data scripts -----------------------------------------------------------------------

def _run_upstream(python: str, checkout: Path, base: Path, args: list[str], log: Path,
                  extra_env: dict | None = None) -> None:
    """Run an upstream module from its work tree with NANOCHAT_BASE_DIR=base, its output going to ``log``."""
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(base), PYTHONDONTWRITEBYTECODE="1", **(extra_env or {}))
    env.pop("NANOCHAT_EXPERIMENTS_DIR", None)
    with open(log, "w") as out:
        rc = subprocess.run([python, *args], cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise UpstreamError(f"upstream {' '.join(args[1:2])} failed (exit {rc}): "
                            f"{last_line(log.read_text(errors='replace'))} (full log: {log})")


def _commit_of(checkout: Path) -> str | None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True)
    return head.stdout.strip() or None


# --- hashes ------------------------------------------------------------------------------------------------

def content_hash(base_dir: str | Path) -> dict:
    """sha256 of every shard and tokenizer file (relative path -> hex), plus ``all`` over them in order.

    Digests are cached beside the files (``.sha256.json``, keyed by size and mtime) so reusing a workspace of
    many large downloaded shards does not re-read them all.
    """
    base = Path(base_dir)
    files = sorted((base / DATA_DIR).glob("*.parquet")) + [base / f for f in TOKENIZER_FILES if (base / f).exists()]
    out = {str(p.relative_to(base)): _sha256_cached(p) for p in files}
    out["all"] = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    return out


def _sha256_cached(path: Path) -> str:
    real = path.resolve()
    cache_file = real.parent / ".sha256.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    stat = [real.stat().st_size, real.stat().st_mtime_ns]
    if cache.get(real.name, [None])[:2] != stat:
        cache[real.name] = stat + [_sha256(real)]
        write_text_atomic(cache_file, json.dumps(cache, sort_keys=True))
    return cache[real.name][2]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
