"""Entry point that runs upstream's scripts/base_train.py with our schedule swapped in, as if it were __main__.

    python -m upstream.launch --repo CLONE --warmdown-shape sqrt|linear [--muon-weight-decay-off] -- FLAGS...

Also what torchrun starts (``torchrun ... -m upstream.launch ...``) on every rank. The script runs with the
clone first on sys.path and as the working directory, under its real file name, exactly as ``python -m
scripts.base_train FLAGS`` would; only the swapped functions differ. Nothing is written into the clone.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import types
from pathlib import Path

from upstream import deps, warmdown
from upstream.errors import UpstreamError

SCRIPT = Path("scripts") / "base_train.py"


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options, then base_train's flags (everything after ``--``, or every option we do not know)."""
    ours, flags = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m upstream.launch", description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True, type=Path, help="upstream nanochat work tree")
    parser.add_argument("--warmdown-shape", choices=warmdown.SHAPES, default="sqrt",
                        help="sqrt = our 1-sqrt warmdown; linear = upstream's schedule untouched")
    parser.add_argument("--muon-weight-decay-off", action="store_true", help="replace get_weight_decay by 0")
    parser.add_argument("--commit", default=None, help="upstream commit, named in errors (default: git HEAD)")
    opts, unknown = parser.parse_known_args(ours)
    return opts, unknown + flags


def prepared_code(repo: Path, shape: str, muon_weight_decay_off: bool, commit: str | None) -> types.CodeType:
    script = (repo / SCRIPT).resolve()
    if not script.is_file():
        raise UpstreamError(f"{script} not found: --repo must be an upstream nanochat work tree")
    where = commit or _head(repo)
    tree = warmdown.swap(script.read_text(encoding="utf-8"), str(script), shape, muon_weight_decay_off, where)
    return compile(tree, str(script), "exec")


def _head(repo: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    return out or "an unknown commit"


def run_as_main(code: types.CodeType, repo: Path, flags: list[str]) -> None:
    """Execute like ``python -m scripts.base_train``: fresh __main__, argv, sys.path[0] and cwd = the clone."""
    repo = repo.resolve()
    # Never drop __pycache__ into the clone, but keep reading the installed packages' bytecode as our arm does: a
    # PYTHONPYCACHEPREFIX would hide site-packages' .pyc files and make upstream compile ~3,000 modules of torch
    # from source at every start (9.5 s of its time to first step on a 2-core EPYC, none of it upstream's doing).
    if not sys.pycache_prefix:
        sys.dont_write_bytecode = True
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=code.co_filename, __package__="scripts", __spec__=None, __builtins__=__builtins__)
    sys.modules["__main__"] = main
    sys.argv = [code.co_filename, *flags]
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    exec(code, main.__dict__)


def main(argv: list[str] | None = None) -> int:
    opts, flags = parse(sys.argv[1:] if argv is None else argv)
    try:
        deps.check()
        code = prepared_code(opts.repo, opts.warmdown_shape, opts.muon_weight_decay_off, opts.commit)
    except UpstreamError as e:
        print(f"nanochat-bench: {e}", file=sys.stderr)
        return 2
    run_as_main(code, opts.repo, flags)
    return 0


if __name__ == "__main__":
    sys.exit(main())
