"""A second, not numerically identical trainer for the ``command`` arm: our model under bf16 autocast on CPU.

It is the worked example of docs/protocol.md ("a real second implementation"): it takes the same budget flags
as ``python -m models.train`` and writes the same protocol/events.py records, but every matmul the autocast
policy covers runs in bfloat16 (weights and optimizer state stay fp32; the model's own activation dtype stays
fp32, so autocast, not NANOCHAT_DTYPE, is what changes the numbers). The loss curve therefore differs from the
fp32 arm's, which is what time-to-target and the compute multiplier are for (docs/measurement.md).

    nanochat-bench run --budget-toml examples/bf16-tiny.toml --impl ours,command

It is a wrapper, not a port: ~10 lines around ``models.train.main``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository root: ``models`` importable

from models import train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    a, _ = train.build_parser().parse_known_args(args)
    if a.compile and (a.device_type or "cpu") == "cpu":
        # measured on the smoke budget (CPU, torch 2.13): compiled under autocast the model barely learns (val BPB
        # 3.07 after 40 steps, eager bf16 2.61, fp32 2.61-2.63), so refuse rather than time a broken run
        print("bf16_autocast_trainer: --compile under bf16 autocast does not train on CPU here; set compile = false "
              "in the budget", file=sys.stderr)
        return 2
    # Autocast is entered around the whole run: the training steps and the evals compute in bf16 alike.
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        return train.main(args)


if __name__ == "__main__":
    sys.exit(main())
