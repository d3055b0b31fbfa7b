"""``python -m harness.gpucheck pack|check``: the two halves of the prepared GPU check (see harness/gpucheck)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.gpucheck.check import CheckConfig
from harness.gpucheck.check import main as check_main
from harness.gpucheck.pack import DEFAULT_PACK, PackConfig
from harness.gpucheck.pack import main as pack_main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.gpucheck", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)
    pk = sub.add_parser("pack", help="build, on the CPU machine, what the GPU check needs (make gpu-check-pack)")
    pk.add_argument("--pack", type=Path, default=DEFAULT_PACK, help=f"pack folder (default {DEFAULT_PACK.name}/)")
    pk.add_argument("--upstream", metavar="URL|PATH", help="upstream nanochat source (default $NANOCHAT_UPSTREAM, "
                                                         "else github.com/karpathy/nanochat)")
    pk.add_argument("--upstream-cache", metavar="DIR", help="clone cache (default $NANOCHAT_BENCH_CACHE or "
                                                           "~/.cache/nanochat-bench)")
    pk.add_argument("--python-version", default="3.12", help="the GPU machine's Python, for its wheels (default 3.12)")
    ck = sub.add_parser("check", help="run the gpu-smoke campaign on one CUDA device (make gpu-check OUT=DIR)")
    ck.add_argument("--out", type=Path, required=True, help="folder for campaign.json, reports, summary.txt, logs")
    ck.add_argument("--pack", type=Path, default=DEFAULT_PACK, help=f"pack folder (default {DEFAULT_PACK.name}/)")
    ck.add_argument("--gpu", type=int, default=0, help="CUDA device index (default 0)")
    ck.add_argument("--work", type=Path, help="campaign and caches (default $TMPDIR/nanochat-gpu-check)")
    ck.add_argument("--deadline", type=float, default=540.0, help="seconds before the campaign is stopped (540)")
    ck.add_argument("--dry-run", action="store_true", help="stop before the first CUDA call and list what would run")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.verb == "pack":
        return pack_main(PackConfig(pack_dir=a.pack, upstream=a.upstream, cache=a.upstream_cache,
                                    python_version=a.python_version))
    return check_main(CheckConfig(out=a.out, pack_dir=a.pack, gpu=a.gpu, dry_run=a.dry_run, work=a.work,
                                  deadline_s=a.deadline))


if __name__ == "__main__":
    sys.exit(main())
