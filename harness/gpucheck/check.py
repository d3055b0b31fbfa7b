"""``make gpu-check OUT=DIR``: the gpu-smoke campaign of both arms on one CUDA device, from a pack, in one go.

Steps, the same on the GPU machine and in ``--dry-run`` on a CPU machine:
1. read the pack's manifest; put on the path only the pack's packages this interpreter cannot import;
2. check ``git`` (the harness clones upstream from the pack's bare repository with it);
3. resolve upstream at the pinned commit from the pack and the data workspace the pack holds (reused, not rebuilt);
4. plan the campaign (``python -m harness run --preset gpu-smoke`` with the pack's upstream, data and caches) and
   every run's command line;
5. the first CUDA call: count CUDA devices. ``--dry-run`` stops just before it and lists what would run;
   without CUDA a real run stops there with one line;
6. run the campaign as a child process under a deadline (what finished is kept when it runs out), render the report,
   and write into OUT: campaign.json, report.md, report.html, summary.txt, campaign.tar.gz (every run's log, events,
   telemetry and result) and gpu-check.log — six files, flat, as the device tool brings back.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.gpucheck.pack import DEFAULT_PACK, MANIFEST, REPO_ROOT

CAMPAIGN_ID = "gpu-check"
OUT_FILES = ("campaign.json", "report.md", "report.html", "summary.txt", "campaign.tar.gz", "gpu-check.log")


class CheckError(RuntimeError):
    """The check cannot run as asked; one line naming the fix."""


@dataclass
class CheckConfig:
    out: Path                                  # where the six result files go (created)
    pack_dir: Path = DEFAULT_PACK
    gpu: int = 0
    dry_run: bool = False
    work: Path | None = None                   # campaign, clone cache, compile cache; default <tmp>/nanochat-gpu-check
    deadline_s: float = 540.0                  # the campaign child is stopped after this (a device call: 600 s)


class Console:
    """Prints each line and keeps it for OUT/gpu-check.log."""

    def __init__(self, log_path: Path | None):
        self.log_path = log_path

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")


def read_manifest(pack_dir: Path) -> dict:
    path = Path(pack_dir) / MANIFEST
    if not path.is_file():
        raise CheckError(f"no gpu-check pack at {pack_dir} ({MANIFEST} missing): run `make gpu-check-pack` on the "
                         f"CPU machine first and carry that folder")
    return json.loads(path.read_text(encoding="utf-8"))


def overlay(pack_dir: Path, manifest: dict) -> list[str]:
    """Put the pack's folders for the modules this interpreter lacks on sys.path and PYTHONPATH (for the runs)."""
    added = []
    for dist, module in manifest["provides"].items():
        if importlib.util.find_spec(module) is None:
            path = str((Path(pack_dir) / manifest["site"][dist]).resolve())
            sys.path.insert(0, path)
            added.append(path)
    if added:
        importlib.invalidate_caches()
        os.environ["PYTHONPATH"] = os.pathsep.join(added + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return added


def run(cfg: CheckConfig) -> int:
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in OUT_FILES:
        (out / name).unlink(missing_ok=True)
    say = Console(out / "gpu-check.log")
    pack = Path(cfg.pack_dir).resolve()
    manifest = read_manifest(pack)
    added = overlay(pack, manifest)
    say(f"gpu-check{' --dry-run' if cfg.dry_run else ''}: pack {pack}, out {out}")
    say(f"interpreter: {sys.executable} (Python {sys.version.split()[0]})")
    say("from the pack: " + (", ".join(Path(p).name for p in added) or "nothing (this interpreter has every module)"))
    if shutil.which("git") is None:
        raise CheckError("git is not on PATH: the harness checks upstream out of the pack's bare repository with it; "
                         "install git or put it on PATH")
    import torch
    from upstream import deps
    say(f"torch {torch.__version__} (CUDA build {torch.version.cuda})")
    missing = deps.missing()
    if missing:
        raise CheckError(f"upstream needs {', '.join(missing)}, missing here and not in the pack: rebuild the pack "
                         f"(`make gpu-check-pack`) or install them")
    for w in deps.warnings(cuda=True):
        say(f"note: {w}")

    work = Path(cfg.work or Path(os.environ.get("TMPDIR", "/tmp")) / "nanochat-gpu-check").resolve()
    campaigns = work / "campaigns"
    if (campaigns / CAMPAIGN_ID).exists():
        shutil.rmtree(campaigns / CAMPAIGN_ID)
    command = campaign_command(pack, manifest, work, cfg.gpu)
    plan = plan_runs(pack, manifest, work, say)
    if cfg.dry_run:
        say("dry run: stopping before the first CUDA call (torch.cuda.device_count). Would run, with a "
            f"{cfg.deadline_s:.0f} s deadline:")
        say("  " + " ".join(command))
        say(f"which runs {len(plan)} runs on CUDA device {cfg.gpu}, in this order:")
        for run_id, words in plan:
            say(f"  {run_id}: {' '.join(words)}")
        say(f"then writes into {out}: {', '.join(OUT_FILES)}")
        return 0

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0   # the first CUDA call
    if count == 0:
        raise CheckError(f"no CUDA device visible to {sys.executable} (torch {torch.__version__}): run gpu-check on "
                         f"a CUDA machine, or add --dry-run to see what it would run")
    if cfg.gpu >= count:
        raise CheckError(f"--gpu {cfg.gpu}: this machine has {count} CUDA device(s) (0..{count - 1})")
    say(f"CUDA: {count} device(s); running on {cfg.gpu}: {torch.cuda.get_device_name(cfg.gpu)}")
    code = run_campaign(command, cfg.deadline_s, say)
    return collect(campaigns / CAMPAIGN_ID, out, code, say)


def campaign_command(pack: Path, manifest: dict, work: Path, gpu: int) -> list[str]:
    return [sys.executable, "-m", "harness", "run", "--preset", manifest["preset"], "--gpu", str(gpu),
            "--upstream", str(pack / manifest["upstream_repo"]), "--upstream-ref", manifest["upstream_sha"],
            "--upstream-cache", str(work / "cache"), "--workspace", str(pack / manifest["data_root"]),
            "--compile-cache", str(work / "compile-cache"), "--out", str(work / "campaigns"),
            "--campaign-id", CAMPAIGN_ID]


def plan_runs(pack: Path, manifest: dict, work: Path, say) -> list[tuple[str, list[str]]]:
    """Upstream from the pack, the pack's workspace (reused), and each planned run's command line, as the runner
    will build them (RunRequests under <work>/plan)."""
    from harness import dataprep
    from harness.adapters.base import RunRequest
    from harness.adapters.ours import OursAdapter
    from harness.adapters.upstream import UpstreamAdapter
    from harness.budget import load_preset
    from harness.runner import plan_runs as interleave
    from upstream import source

    budget = load_preset(manifest["preset"])
    checkout = source.checkout(str(pack / manifest["upstream_repo"]), manifest["upstream_sha"], work / "cache")
    say(f"upstream: {checkout.sha[:10]} ({checkout.subject}) checked out at {checkout.path}")
    base, data, warnings = dataprep.prepare(budget, pack / manifest["data_root"], checkout.path)
    if data.tokenizer_sha256 != manifest["data"]["tokenizer_sha256"] or \
            data.shards_sha256 != manifest["data"]["shards_sha256"]:
        raise CheckError(f"the data workspace at {base} is not the one packed (its hashes differ): rebuild the pack")
    say(f"data: {base.name} (shards {data.shards_sha256[:10]}, tokenizer {data.tokenizer_sha256[:10]}), as packed")
    say(f"budget {budget.name}: depth {budget.depth}, seq {budget.max_seq_len}, {budget.window_pattern}, vocab "
        f"{budget.vocab_size}, {budget.iterations} steps x {budget.total_batch_size:,} tokens, eval every "
        f"{budget.eval_every} on {budget.eval_tokens:,} tokens, {budget.repeats} repeats per arm, "
        f"run timeout {budget.run_timeout_s:.0f} s")
    adapters = {"ours": OursAdapter(compile_cache=work / "compile-cache"),
                "upstream": UpstreamAdapter(checkout=checkout, compile_cache=work / "compile-cache")}
    plan = []
    for i, r in enumerate(interleave(list(adapters), budget.seeds, budget.repeats), 1):
        run_id = f"{i:02d}-{r.implementation}-s{r.seed}-r{r.repeat}"
        req = RunRequest(budget=budget, seed=r.seed, repeat=r.repeat, run_id=run_id,
                         run_dir=work / "plan" / "runs" / run_id, campaign_dir=work / "plan", base_dir=base)
        plan.append((run_id, adapters[r.implementation].launch(req).command))
    return plan


def run_campaign(command: list[str], deadline_s: float, say) -> int | None:
    """The campaign as a child process, its output echoed and logged; its tree is killed at the deadline (None)."""
    import threading
    from harness.process import kill_tree
    say("$ " + " ".join(command))
    t0 = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", bufsize=1, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        kill_tree(proc.pid, grace_s=10)
    timer = threading.Timer(deadline_s, stop)
    timer.start()
    try:
        for line in proc.stdout:
            say(line.rstrip("\n"))
        proc.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        say(f"gpu-check: the campaign passed its {deadline_s:.0f} s deadline and was stopped; keeping what finished")
        return None
    say(f"campaign exited with {proc.returncode} after {time.monotonic() - t0:.0f} s")
    return proc.returncode


def collect(cdir: Path, out: Path, code: int | None, say) -> int:
    """Report, summary, campaign.json and a tarball of the runs into OUT; the exit status of the whole check."""
    from harness.gpucheck.summary import summary_text
    if not (cdir / "campaign.json").is_file():
        say(f"gpu-check: no campaign.json in {cdir}: the campaign did not start (see gpu-check.log)")
        return 1
    try:
        from harness.report import write_report
        files = write_report(cdir)
        shutil.copyfile(files.html, out / "report.html")
        shutil.copyfile(files.markdown, out / "report.md")
    except Exception as e:  # noqa: BLE001 - a partial campaign must still bring back its numbers
        say(f"note: report not rendered: {type(e).__name__}: {e}")
    shutil.copyfile(cdir / "campaign.json", out / "campaign.json")
    text = summary_text(cdir, deadline_hit=code is None)
    (out / "summary.txt").write_text(text, encoding="utf-8")
    with tarfile.open(out / "campaign.tar.gz", "w:gz") as tar:
        tar.add(cdir, arcname=cdir.name, filter=_small_files)
    say(text)
    return 0 if code == 0 else 1


def _small_files(info: tarfile.TarInfo):
    """Everything of the campaign but checkpoints, compile caches and files over 8 MiB."""
    parts = set(Path(info.name).parts)
    if parts & {"checkpoint", "base_checkpoints", "inductor", "tmp", "pycache", "nanochat_base"}:
        return None
    return None if info.isfile() and info.size > 8 * 2**20 else info


def main(cfg: CheckConfig) -> int:
    from harness.dataprep import DataPrepError
    from upstream.errors import UpstreamError
    try:
        return run(cfg)
    except (CheckError, DataPrepError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except UpstreamError as e:   # e.g. a broken pack's clone: one line, not a trace
        print(f"error: {e}; rebuild the pack with `make gpu-check-pack`", file=sys.stderr)
        return 2
