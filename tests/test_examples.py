"""The worked examples under examples/ as a user starts them: the bf16 autocast trainer of docs/protocol.md."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINER = REPO / "examples" / "bf16_autocast_trainer.py"


def test_bf16_trainer_refuses_torch_compile_in_one_line():
    # compiled under autocast the model does not learn on CPU (measured): a clear refusal, not a broken timing
    r = subprocess.run([sys.executable, str(TRAINER), "--no-compile", "--compile", "--num-iterations=1"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "set compile = false" in r.stderr
