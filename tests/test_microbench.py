"""The component micro-benchmarks (benchmarks/): they run through pytest on the tiny shape, their config is checked
at the edge, and the closing table puts ours next to upstream."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.shapes import ENV_CONFIG, PRESETS, ShapeError, chosen_config, parse_bench_config
from benchmarks.summary import Timing, side_by_side
from upstream.pin import ENV_CACHE, ENV_SOURCE

REPO = Path(__file__).resolve().parents[1]


def run_microbench(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``pytest benchmarks`` as ``make microbench`` runs it, timings off (each benchmark body runs once)."""
    cmd = [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", "--benchmark-disable",
           "--basetemp", str(tmp_path / "basetemp"), "-q", "-rs", *args]
    return subprocess.run(cmd, cwd=REPO, env=env or dict(os.environ), capture_output=True, text=True, timeout=600)


def test_microbench_runs_ours_and_skips_an_unreachable_upstream_with_the_reason(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (ENV_SOURCE, ENV_CONFIG)}
    env[ENV_CACHE] = str(tmp_path / "empty-cache")  # no clone cache: upstream is unreachable
    proc = run_microbench(tmp_path, "--bench-config", "tiny", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "4 passed, 4 skipped" in out, out[-3000:]
    assert "upstream side skipped: no upstream nanochat source reachable" in out


@pytest.mark.upstream
@pytest.mark.slow  # a cold torch.compile of upstream's optimizer kernels takes a minute or more on 2 cores
def test_microbench_runs_both_sides_on_upstreams_own_modules(upstream_repo, tmp_path):
    env = dict(os.environ, **{ENV_SOURCE: str(upstream_repo)})
    proc = run_microbench(tmp_path, "--bench-config", "tiny", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "8 passed" in out, out[-3000:]


def test_bad_bench_config_stops_pytest_with_one_line_naming_the_field(tmp_path):
    proc = run_microbench(tmp_path, "--bench-config", "tiny,depth=0")
    assert proc.returncode == 4
    assert "bench config depth=0: must be a positive integer" in proc.stderr


@pytest.mark.parametrize("text, message", [
    ("huge", "preset 'huge' is unknown"),
    ("cpu,depth", "write key=value"),
    ("cpu,width=3", "key one of depth"),
    ("cpu,seq_len=long", "seq_len='long': must be an integer"),
    ("cpu,vocab=100", "use vocab >= 265"),
    ("cpu,dtype=float16", "use one of float32, bfloat16"),
    ("cpu,device=tpu", "use cpu or cuda[:N]"),
    ("cpu,compile_optimizer=maybe", "use true or false"),
    ("cpu,threads=-1", "use 0 (torch's default) or a positive integer"),
])
def test_bench_config_errors_name_the_item_and_the_fix(text, message):
    with pytest.raises(ShapeError, match=re.escape(message)):
        parse_bench_config(text)


def test_bench_config_is_a_preset_with_overrides():
    assert parse_bench_config(None) == PRESETS["cpu"]
    shape = parse_bench_config("gpu, depth=6 ,compile_optimizer=false")
    assert (shape.depth, shape.seq_len, shape.device, shape.compile_optimizer) == (6, 2048, "cuda", False)
    assert parse_bench_config("seq_len=128") == parse_bench_config("cpu,seq_len=128")


def test_option_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(ENV_CONFIG, "tiny")
    assert chosen_config(None) == "tiny"
    assert chosen_config("gpu") == "gpu"
    monkeypatch.delenv(ENV_CONFIG)
    assert chosen_config(None) == "cpu"


def test_side_by_side_table_puts_ours_next_to_upstream_with_the_ratio():
    table = side_by_side([
        Timing("model fwd+bwd", "ours", 0.2, 0.01, 5), Timing("model fwd+bwd", "upstream", 0.25, 0.02, 5),
        Timing("data loader", "ours", 0.004, 0.001, 50),
    ])
    header, rule, model, loader = table.splitlines()
    assert header.split("  ")[0] == "component" and set(rule) <= {"-", " "}
    assert model.startswith("model fwd+bwd") and "200 ms ±10 ms (5.0/s)" in model and "250 ms" in model
    assert model.endswith("0.80x")
    assert "4 ms ±1 ms (250.0/s)" in loader and loader.split()[-1] == "-"  # upstream did not run: no ratio
