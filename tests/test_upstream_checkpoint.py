"""Our GPT loads a checkpoint written by upstream's own base_train and evaluates it as upstream does:
same logits on the same input (fp32) and the val BPB upstream recorded in its meta (within 0.1 %)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from models.bpb import eval_steps, evaluate_bpb
from models.checkpoint import load_upstream_checkpoint
from models.data import iter_batches
from models.tokenizer import load_token_bytes, load_tokenizer
from upstream import run, source, workspace
from upstream.pin import PINNED_COMMIT
from tests.helpers_upstream import run_to_end

FLAGS = {"depth": 2, "max_seq_len": 128, "device_batch_size": 4, "total_batch_size": 512, "num_iterations": 8,
         "eval_every": 8, "eval_tokens": 2048, "window_pattern": "L", "device_type": "cpu",
         "warmup_steps": 2, "warmdown_ratio": 0.5}

# Runs in a subprocess with the clone first on sys.path: upstream builds its own model from the checkpoint.
UPSTREAM_LOGITS = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from nanochat.checkpoint_manager import build_model
model, _, _ = build_model(sys.argv[2], int(sys.argv[3]), torch.device("cpu"), phase="eval")
with torch.no_grad():
    torch.save(model(torch.load(sys.argv[4])), sys.argv[5])
"""


@pytest.mark.upstream
def test_upstream_checkpoint_gives_upstreams_logits_and_recorded_val_bpb(upstream_repo, tmp_path):
    base = workspace.prepare(workspace.DataSpec(vocab_size=1024), upstream_repo, tmp_path / "ws")
    launch = run.UpstreamLaunch(upstream_repo, base, tmp_path / "run", FLAGS, warmdown_shape="linear",
                                keep_checkpoint=True, cache_dir=source.cache_root() / "test-compile-cache",
                                commit=PINNED_COMMIT)
    run_to_end(launch)
    model, meta = load_upstream_checkpoint(launch.checkpoint_dir)
    assert meta["step"] == FLAGS["num_iterations"]

    tok = load_tokenizer(base)
    idx = torch.randint(0, tok.vocab_size, (2, FLAGS["max_seq_len"]), generator=torch.Generator().manual_seed(0))
    torch.save(idx, tmp_path / "idx.pt")
    done = subprocess.run([sys.executable, "-c", UPSTREAM_LOGITS, str(upstream_repo), str(launch.checkpoint_dir),
                           str(meta["step"]), str(tmp_path / "idx.pt"), str(tmp_path / "logits.pt")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NANOCHAT_BASE_DIR": str(base), "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    with torch.no_grad():
        torch.testing.assert_close(model(idx), torch.load(tmp_path / "logits.pt"), atol=1e-5, rtol=0)

    steps = eval_steps(FLAGS["eval_tokens"], FLAGS["device_batch_size"], FLAGS["max_seq_len"])
    with iter_batches(base, tok, "val", FLAGS["device_batch_size"], FLAGS["max_seq_len"]) as val:
        ours = evaluate_bpb(model, val, steps, load_token_bytes(base))
    assert ours == pytest.approx(meta["val_bpb"], rel=1e-3)
    assert source.is_clean(upstream_repo)
