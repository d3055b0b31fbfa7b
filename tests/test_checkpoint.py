"""Checkpoint files: our save/load round trip, upstream's layout and keys, and clear errors for bad inputs."""
import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

from models.checkpoint import (META_KEYS, CheckpointError, latest_step, load_optimizer_state,
                               load_upstream_checkpoint, save_checkpoint)
from models.config import GPTConfig
from models.gpt import GPT


def small(**overrides) -> GPTConfig:
    fields = dict(sequence_len=64, vocab_size=500, n_layer=3, n_head=2, n_kv_head=1, n_embd=64, window_pattern="SL")
    return GPTConfig(**{**fields, **overrides})


def trained_looking(cfg: GPTConfig, seed: int = 0) -> GPT:
    """A model whose every weight is off its init, so a lost or mixed-up tensor changes the logits."""
    model = GPT(cfg, compute_dtype=torch.float32)
    model.init_weights(42)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def meta_for(step: int, **extra) -> dict:
    meta = {"step": step, "val_bpb": 2.5, "user_config": {"depth": 3}, "device_batch_size": 2, "max_seq_len": 64,
            "total_batch_size": 128, "dataloader_state_dict": {"pq_idx": 0, "rg_idx": 1, "epoch": 1},
            "loop_state": {"min_val_bpb": 2.5, "smooth_train_loss": 6.1, "total_training_time": 3.0}}
    return {**meta, **extra}


def tokens(cfg: GPTConfig) -> torch.Tensor:
    return torch.randint(0, cfg.vocab_size, (2, cfg.sequence_len), generator=torch.Generator().manual_seed(7))


def test_round_trip_gives_identical_logits_and_meta(tmp_path):
    cfg = small()
    model = trained_looking(cfg)
    save_checkpoint(tmp_path, 120, model, meta_for(120))
    loaded, meta = load_upstream_checkpoint(tmp_path, 120)
    assert torch.equal(loaded(tokens(cfg)), model(tokens(cfg)))
    assert meta == {**meta_for(120), "model_config": asdict(cfg)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta_000120.json", "model_000120.pt"]  # no temp files left


def test_meta_json_has_upstreams_keys(tmp_path):
    save_checkpoint(tmp_path, 5, trained_looking(small()), meta_for(5))
    meta = json.loads((tmp_path / "meta_000005.json").read_text())
    assert set(META_KEYS) <= set(meta)
    assert meta["model_config"] == asdict(small()) and meta["model_config"]["vocab_size"] == 500  # unpadded


def test_loader_picks_the_latest_step_when_none_is_given(tmp_path):
    cfg = small()
    for step, seed in ((10, 1), (200, 2), (30, 3)):
        save_checkpoint(tmp_path, step, trained_looking(cfg, seed), meta_for(step))
    assert latest_step(tmp_path) == 200
    loaded, meta = load_upstream_checkpoint(tmp_path)
    assert meta["step"] == 200 and torch.equal(loaded(tokens(cfg)), trained_looking(cfg, 2)(tokens(cfg)))


def test_optimizer_state_is_written_per_rank_and_only_rank_0_writes_the_model(tmp_path):
    model = trained_looking(small())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(tokens(small()), tokens(small())).backward()
    optimizer.step()
    save_checkpoint(tmp_path, 7, model, meta_for(7), optimizer=optimizer, rank=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optim_000007_rank1.pt"]
    state = load_optimizer_state(tmp_path, 7, rank=1)
    assert torch.equal(state["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_compiled_prefixes_are_stripped_and_bf16_tables_upcast_on_cpu(tmp_path):
    cfg = small()
    model = trained_looking(cfg)
    state = {f"_orig_mod.{k}": (v.bfloat16() if "wte" in k or "value_embeds" in k else v)
             for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "model_000003.pt")
    (tmp_path / "meta_000003.json").write_text(json.dumps({**meta_for(3), "model_config": asdict(cfg)}))
    loaded, _ = load_upstream_checkpoint(tmp_path, 3)
    assert loaded.transformer.wte.weight.dtype == torch.float32
    assert torch.equal(loaded.transformer.wte.weight, model.transformer.wte.weight.bfloat16().float())


def test_meta_without_window_pattern_loads_as_full_context(tmp_path):
    cfg = small(window_pattern="L")
    save_checkpoint(tmp_path, 1, trained_looking(cfg), meta_for(1))
    path = tmp_path / "meta_000001.json"
    meta = json.loads(path.read_text())
    del meta["model_config"]["window_pattern"]
    path.write_text(json.dumps(meta))
    loaded, _ = load_upstream_checkpoint(tmp_path, 1)
    assert loaded.config.window_pattern == "L"


def test_missing_directory_step_and_meta_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_upstream_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no model_NNNNNN.pt"):
        load_upstream_checkpoint(tmp_path)
    save_checkpoint(tmp_path, 4, trained_looking(small()), meta_for(4))
    with pytest.raises(CheckpointError, match="model_000009.pt"):
        load_upstream_checkpoint(tmp_path, 9)
    (tmp_path / "meta_000004.json").unlink()
    with pytest.raises(CheckpointError, match="missing .*meta_000004.json"):
        load_upstream_checkpoint(tmp_path, 4)


def test_state_dict_that_does_not_fit_names_the_keys(tmp_path):
    cfg = small()
    state = trained_looking(cfg).state_dict()
    state["extra.weight"] = state.pop("smear_gate.weight")
    state["lm_head.weight"] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "model_000002.pt")
    (tmp_path / "meta_000002.json").write_text(json.dumps({**meta_for(2), "model_config": asdict(cfg)}))
    with pytest.raises(CheckpointError) as err:
        load_upstream_checkpoint(tmp_path, 2)
    message = str(err.value)
    assert "missing: smear_gate.weight" in message and "unexpected: extra.weight" in message
    assert "lm_head.weight (3, 3)!=(512, 64)" in message and "\n" not in message


def test_bad_model_config_in_meta_fails_clearly(tmp_path):
    save_checkpoint(tmp_path, 1, trained_looking(small()), meta_for(1))
    path = tmp_path / "meta_000001.json"
    meta = json.loads(path.read_text())
    meta["model_config"]["n_head"] = 3
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="n_embd=64 is not divisible by n_head=3"):
        load_upstream_checkpoint(tmp_path, 1)


@pytest.mark.parametrize("meta, words", [
    ({**meta_for(1), "step": 2}, "meta\\['step'\\]=2 but saving step 1"),
    ({"step": 1}, "meta lacks val_bpb"),
    (meta_for(1, user_config={"path": object()}), "not JSON-serialisable"),
    (meta_for(1, model_config={"n_layer": 2}), "differs from the model's config"),
])
def test_save_refuses_incomplete_or_contradicting_meta(tmp_path, meta, words):
    with pytest.raises(CheckpointError, match=words):
        save_checkpoint(tmp_path, 1, trained_looking(small()), meta)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------- upstream's side
# In a subprocess (upstream's `nanochat` package never meets ours): load OUR checkpoint with upstream's own
# load_checkpoint + strict load_state_dict, and save one of ITS models with its own save_checkpoint.
UPSTREAM_SIDE = r"""
import json, sys, torch
clone, ours_dir, theirs_dir, idx_path, out = sys.argv[1:]
sys.path.insert(0, clone)
from nanochat.gpt import GPT, GPTConfig
from nanochat.checkpoint_manager import load_checkpoint, save_checkpoint
def build(config):
    with torch.device("meta"):
        model = GPT(GPTConfig(**config))
    model.to_empty(device="cpu")
    model.init_weights()
    return model
idx = torch.load(idx_path)
state, _, meta = load_checkpoint(ours_dir, 11, torch.device("cpu"))
model = build(meta["model_config"])
model.load_state_dict(state, strict=True, assign=True)
with torch.no_grad():
    logits_ours = model(idx)
torch.manual_seed(0)
with torch.no_grad():
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.1)
    logits_theirs = model(idx)
save_checkpoint(theirs_dir, 22, model.state_dict(), None, {**meta, "step": 22})
torch.save({"ours": logits_ours, "theirs": logits_theirs}, out)
"""


@pytest.mark.upstream
def test_checkpoints_load_both_ways_between_upstream_and_us(upstream_repo, tmp_path):
    cfg = small()
    model, idx = trained_looking(cfg), tokens(cfg)
    torch.save(idx, tmp_path / "idx.pt")
    save_checkpoint(tmp_path / "ours", 11, model, meta_for(11))
    args = [str(upstream_repo), str(tmp_path / "ours"), str(tmp_path / "theirs"), str(tmp_path / "idx.pt"),
            str(tmp_path / "out.pt")]
    done = subprocess.run([sys.executable, "-c", UPSTREAM_SIDE, *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "NANOCHAT_DTYPE": "float32"}, timeout=600)
    assert done.returncode == 0, f"upstream side failed:\n{done.stderr[-3000:]}"
    upstream_logits = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        torch.testing.assert_close(model(idx), upstream_logits["ours"], atol=1e-5, rtol=0)
        loaded, meta = load_upstream_checkpoint(tmp_path / "theirs")
        assert meta["step"] == 22
        torch.testing.assert_close(loaded(idx), upstream_logits["theirs"], atol=1e-5, rtol=0)
