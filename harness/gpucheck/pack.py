"""``make gpu-check-pack``: everything the GPU check needs that the lent GPU machine lacks, in one folder under 64 MiB.

The lent machine has Python 3.12 with torch, numpy, pyarrow, tiktoken, nvidia-ml-py … but no network, and not
gitpython, gitdb, smmap, rustbpe or wandb. The pack (default ``.gpu-pack/`` in the repo, ignored by git, named in
the device call's ``carry``) holds:

- ``upstream.git``: a shallow bare repository with only the pinned upstream commit, taken from the source the
  harness is told to use (``--upstream`` or ``$NANOCHAT_UPSTREAM``, else upstream's public URL);
- ``data/``: the data workspace of the gpu-smoke preset (embedded corpus shards plus the tokenizer trained here by
  upstream's own tok_train), which the GPU run reuses as it is;
- ``site/<distribution>/``: wheels for the target interpreter (default CPython 3.12, manylinux x86-64), fetched with
  pip from the configured index and unpacked, one folder per distribution, so the check puts on the path only those
  the GPU machine's interpreter cannot import;
- ``site/wandb-standin/``: an import-only ``wandb``. Upstream's base_train imports wandb at the top but with
  ``--run=dummy`` (what the harness passes) never calls it. The real wandb 0.30.0 wheel is 26 MB (80 MB unpacked)
  and needs eleven more distributions the GPU image lacks (opentelemetry-api/-sdk/-proto/-exporter…, pydantic,
  pydantic-core, annotated-types, typing-inspection, platformdirs, googleapis-common-protos): about half the
  64 MiB that may travel, for a module that is never called. The stand-in raises on any use and its version
  (``0+nanochat.bench.standin``) is what the results record;
- ``manifest.json``: what is where, the pinned commit, the preset, the sizes.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PACK = REPO_ROOT / ".gpu-pack"
MANIFEST = "manifest.json"
LIMIT_BYTES = 64 * 2**20          # what may travel to the device machine: the working tree and the carried paths
PRESET = "gpu-smoke"

# distribution -> the module it provides (what `check` tries to import before putting the folder on the path)
CARRIED = {"gitpython": "git", "gitdb": "gitdb", "smmap": "smmap", "rustbpe": "rustbpe"}
STANDIN_VERSION = "0+nanochat.bench.standin"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


class PackError(RuntimeError):
    """The pack cannot be built as asked; one line naming the fix."""


@dataclass
class PackConfig:
    pack_dir: Path = DEFAULT_PACK
    upstream: str | None = None          # None: $NANOCHAT_UPSTREAM, else upstream's public URL (upstream.source)
    cache: str | None = None             # the harness clone cache (default $NANOCHAT_BENCH_CACHE or ~/.cache/...)
    preset: str = PRESET
    python_version: str = "3.12"         # the lent GPU machine's interpreter
    dists: dict[str, str] = field(default_factory=lambda: dict(CARRIED))


def build(cfg: PackConfig, say=print) -> dict:
    """Build the pack from scratch into ``cfg.pack_dir``; returns its manifest. Raises PackError."""
    from harness.budget import load_preset
    from harness import dataprep
    from upstream import source
    from upstream.pin import PINNED_COMMIT

    pack = Path(cfg.pack_dir).resolve()
    if pack.exists():
        shutil.rmtree(pack)
    pack.mkdir(parents=True)
    budget = load_preset(cfg.preset)
    try:
        checkout = source.checkout(cfg.upstream, PINNED_COMMIT, cfg.cache)
    except source.UpstreamError as e:
        raise PackError(str(e)) from None
    say(f"upstream {checkout.sha[:10]} from {checkout.source}")
    shallow_bare_clone(checkout.path, checkout.sha, pack / "upstream.git")
    say("data workspace (shards + tokenizer trained by upstream's tok_train) ...")
    base, data, warnings = dataprep.prepare(budget, pack / "data", checkout.path)
    for w in warnings:
        say(f"note: {w}")
    site = pack / "site"
    for dist in cfg.dists:
        wheel = download_wheel(dist, _installed_version(dist), cfg.python_version, pack / "wheels")
        unpack_wheel(wheel, site / dist)
    shutil.rmtree(pack / "wheels")
    write_wandb_standin(site / "wandb-standin")
    provides = dict(cfg.dists, **{"wandb-standin": "wandb"})
    manifest = dict(preset=cfg.preset, upstream_sha=checkout.sha, upstream_source=checkout.source,
                    upstream_repo="upstream.git", data_root="data", data_dir=str(base.relative_to(pack)),
                    data=asdict(data) | {"base_dir": str(base.relative_to(pack))},
                    python_version=cfg.python_version, site={d: f"site/{d}" for d in provides}, provides=provides)
    (pack / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest["bytes"] = tree_bytes(pack)
    return manifest


def shallow_bare_clone(repo: Path, sha: str, dest: Path) -> None:
    """A bare repository holding only ``sha`` (depth 1) under refs/heads/pinned: about 1 MB instead of upstream's 43."""
    def git(*args: str, cwd: Path | None = None) -> None:
        r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
        if r.returncode != 0:
            raise PackError(f"git {' '.join(args[:2])} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}; "
                            f"is {repo} a clone holding {sha}?")
    git("init", "--quiet", "--bare", str(dest))
    git("fetch", "--quiet", "--depth=1", "--no-tags", str(Path(repo).resolve()), sha, cwd=dest)
    git("update-ref", "refs/heads/pinned", sha, cwd=dest)
    git("symbolic-ref", "HEAD", "refs/heads/pinned", cwd=dest)


def download_wheel(dist: str, version: str, python_version: str, dest: Path) -> Path:
    """pip download of one binary wheel for the target interpreter and platform (no dependencies)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "-d", str(dest), f"{dist}=={version}"]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    r = subprocess.run(cmd, capture_output=True, text=True)
    found = [w for w in dest.glob("*.whl") if _wheel_dist(w) == _normal(dist)]
    if r.returncode != 0 or not found:
        last = [ln for ln in r.stderr.splitlines() if ln.strip() and "is ignored" not in ln][-1:] or ["no wheel"]
        raise PackError(f"pip cannot download {dist}=={version} for CPython {python_version} manylinux x86-64 "
                        f"({last[0].strip()}); check the package index (pip config list)")
    return found[0]


def unpack_wheel(wheel: Path, dest: Path) -> None:
    """A wheel is a zip of what ``pip install --target`` would write (scripts aside): unpack it as it is."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)


def write_wandb_standin(dest: Path) -> None:
    pkg = dest / "wandb"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        '"""nanochat-bench\'s import-only stand-in for wandb on a machine without it (harness/gpucheck/pack.py).\n\n'
        'Upstream imports wandb at the top of base_train and, with --run=dummy, never uses it. Any use fails loudly.\n"""\n'
        f'__version__ = "{STANDIN_VERSION}"\n\n\n'
        'def __getattr__(name):\n'
        '    raise RuntimeError(f"wandb.{name}: this is nanochat-bench\'s import-only wandb stand-in; run upstream "\n'
        '                       f"with --run=dummy (the harness does) or install the real wandb")\n', encoding="utf-8")
    info = dest / f"wandb-{STANDIN_VERSION}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: wandb\nVersion: {STANDIN_VERSION}\n"
                                   "Summary: import-only stand-in carried by nanochat-bench's gpu-check pack\n",
                                   encoding="utf-8")
    (info / "top_level.txt").write_text("wandb\n", encoding="utf-8")


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


def travelling_tree_bytes(repo: Path = REPO_ROOT) -> int:
    """Bytes of what a device call sends besides the carried paths: tracked and untracked-not-ignored files."""
    r = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                       capture_output=True)
    if r.returncode != 0:
        return 0
    files = [repo / f for f in r.stdout.decode().split("\0") if f]
    return sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())


def _installed_version(dist: str) -> str:
    import importlib.metadata
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise PackError(f"{dist} is not installed in {sys.executable}; run `make setup` first") from None


def _wheel_dist(wheel: Path) -> str:
    return _normal(wheel.name.split("-")[0])


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def main(cfg: PackConfig) -> int:
    from harness.dataprep import DataPrepError
    from upstream.errors import UpstreamError
    try:
        manifest = build(cfg)
    except (PackError, DataPrepError, UpstreamError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pack_b, tree_b = manifest["bytes"], travelling_tree_bytes()
    total = pack_b + tree_b
    print(f"pack: {cfg.pack_dir} ({pack_b / 2**20:.1f} MiB; with the working tree {total / 2**20:.1f} MiB of the "
          f"{LIMIT_BYTES / 2**20:.0f} MiB that may travel)")
    if total > LIMIT_BYTES:
        print(f"error: pack + working tree is {total / 2**20:.1f} MiB, over {LIMIT_BYTES / 2**20:.0f} MiB: "
              f"remove untracked files from the checkout or carry less", file=sys.stderr)
        return 2
    return 0
