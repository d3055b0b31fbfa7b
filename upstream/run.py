"""One upstream training run: its command line, its environment, and what is collected after it.

The harness's adapter turns a budget into plain base_train flags; this module adds what every run needs
(a fresh model tag, no wandb, no CORE metric or sampling, the schedule swap through launch.py, caches and temp
files under the run or campaign directory, the harness's own interpreter) and, after the run, parses the log
into events, writes them atomically, and deletes upstream's checkpoint unless it is to be kept. It starts
nothing itself: the harness's one subprocess runner (harness/process.py) runs ``command()`` with ``env()``.

Each run gets its own NANOCHAT_BASE_DIR inside the run directory whose data and tokenizer are links to the
shared workspace, so upstream's checkpoints land with the run and the workspace is only ever read.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from protocol import compile_cache
from protocol.events import Event, FinalEvent, to_json
from protocol.files import write_text_atomic
from upstream import logparse, warmdown
from upstream.errors import UpstreamError
from upstream.revision import Layout
from upstream.workspace import DATA_DIR

# The pin's base-dir layout; a revision read by upstream/revision.py may say otherwise (``UpstreamLaunch.layout``).
PIN_LAYOUT = Layout(name="flat", data=DATA_DIR, tokenizer="tokenizer", checkpoints="base_checkpoints/{tag}")

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # so `-m upstream.launch` imports from any interpreter
OURS = ("run", "model-tag", "core-metric-every", "sample-every")  # flags this module sets itself
FORCED = {"core-metric-every": "-1", "sample-every": "-1"}


@dataclass
class UpstreamLaunch:
    """Everything needed to start one upstream run; ``command()`` and ``env()`` have no side effects."""
    checkout: Path                      # upstream work tree (source.Checkout.path)
    base_dir: Path                      # a prepared workspace (workspace.prepare)
    run_dir: Path                       # this run's own directory: log, events, base dir, temp files
    flags: dict | list                  # base_train flags: {"depth": 4, ...} or ["--depth=4", ...]
    warmdown_shape: str = "sqrt"
    muon_weight_decay_off: bool = False
    nproc: int = 1
    keep_checkpoint: bool = False
    cache_dir: Path | None = None       # torch.compile cache and TMPDIR root, shared by a campaign (default run_dir)
    commit: str | None = None           # named in errors and results
    python: str = sys.executable
    extra_env: dict = field(default_factory=dict)
    layout: Layout = PIN_LAYOUT         # where this revision reads shards and tokenizer, writes checkpoints
    spelling: dict = field(default_factory=dict)  # flag (dash form) -> the revision's spelling, where it differs
    model_tag: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:12]}")

    def __post_init__(self):
        self.checkout, self.base_dir, self.run_dir = (Path(p).resolve() for p in
                                                      (self.checkout, self.base_dir, self.run_dir))
        self.cache_dir = Path(self.cache_dir).resolve() if self.cache_dir else self.run_dir
        self._flags = normalise_flags(self.flags)
        if self.warmdown_shape not in warmdown.SHAPES:
            raise UpstreamError(f"warmdown_shape {self.warmdown_shape!r}: use one of {', '.join(warmdown.SHAPES)}")
        if self.nproc < 1:
            raise UpstreamError(f"nproc={self.nproc}: use 1 or more processes")
        if self.nproc > 1 and self.device_type() != "cuda":
            raise UpstreamError(f"nproc={self.nproc} on {self.device_type()}: upstream makes no process group "
                                f"off CUDA, so its ranks would train separate copies; use nproc=1 there")

    # --- paths -----------------------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.run_dir / "upstream.log"

    @property
    def events_path(self) -> Path:
        return self.run_dir / "events.jsonl"

    @property
    def run_base_dir(self) -> Path:
        return self.run_dir / "nanochat_base"

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_base_dir / self.layout.checkpoints.format(tag=self.model_tag)

    def device_type(self) -> str:
        return flag_value(self._flags, "device-type") or _autodetect_device()

    # --- the command -----------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        launch = ["-m", "upstream.launch", "--repo", str(self.checkout), "--warmdown-shape", self.warmdown_shape]
        launch += ["--muon-weight-decay-off"] if self.muon_weight_decay_off else []
        launch += ["--commit", self.commit] if self.commit else []
        ours = [f"--model-tag={self.model_tag}"] + [f"--{k}={v}" for k, v in FORCED.items()]
        flags = self._spelled(self._flags + ours)
        if self.nproc == 1:
            return [self.python, *launch, "--", *flags, self._spelled(["--run=dummy"])[0]]
        # torchrun takes --run for its own --run-path ("ambiguous option"): base_train's default is dummy anyway
        return [self.python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self.nproc}",
                *launch, "--", *flags]

    def _spelled(self, flags: list[str]) -> list[str]:
        """``--name=value`` with the name as this revision spells it (``--num_iterations`` at older ones)."""
        out = []
        for f in flags:
            name, sep, value = f[2:].partition("=")
            out.append(f"--{self.spelling.get(name.replace('_', '-'), name)}{sep}{value}")
        return out

    def env(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        env.update({
            "NANOCHAT_BASE_DIR": str(self.run_base_dir),
            "TMPDIR": str(self.cache_dir / "tmp"),
            "TORCHINDUCTOR_CACHE_DIR": str(compile_cache.inductor_dir(self.cache_dir, env={**env, **self.extra_env})),
            "TORCHINDUCTOR_COMPILE_THREADS": compile_cache.COMPILE_THREADS,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",  # the harness shows progress line by line
            "WANDB_MODE": "disabled",
        })
        for name in ("NANOCHAT_EXPERIMENTS_DIR",):  # would move the experiment layout's paths out of the run
            env.pop(name, None)
        env.update(dict(self.layout.env))
        env.update(self.extra_env)
        return env

    def prepare(self) -> None:
        """Create the run's directories and its base dir (links to the workspace's shards and tokenizer)."""
        inductor = compile_cache.inductor_dir(self.cache_dir, env={**os.environ, **self.extra_env})
        for d in (self.run_dir, self.cache_dir / "tmp", inductor, self.run_base_dir):
            d.mkdir(parents=True, exist_ok=True)
        link_layout(self.base_dir, self.run_base_dir, self.layout)

    # --- after the run ---------------------------------------------------------------------------------------
    def collect(self, parser: logparse.LogParser | None = None) -> list[Event]:
        """Events of the finished run (from ``parser`` if it was fed live, else from the log file), written
        atomically to events.jsonl; the checkpoint is deleted unless ``keep_checkpoint``."""
        if parser is None:
            parser = logparse.LogParser(commit=self.commit)
            parser.feed_all(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines())
        events = parser.finish(meta=self._meta())
        final: FinalEvent = events[-1]
        final.extra = dict(final.extra or {}, model_tag=self.model_tag, warmdown_shape=self.warmdown_shape,
                           muon_weight_decay_off=self.muon_weight_decay_off, nproc=self.nproc)
        if self.keep_checkpoint:
            final.extra["checkpoint_dir"] = str(self.checkpoint_dir)
        else:
            shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
            _remove_if_empty(self.checkpoint_dir.parent)
        write_text_atomic(self.events_path, "".join(to_json(e) + "\n" for e in events))
        return events

    def _meta(self) -> dict | None:
        metas = sorted(self.checkpoint_dir.glob("meta_*.json"))
        return json.loads(metas[-1].read_text()) if metas else None


def link_layout(workspace: Path, base: Path, layout: Layout) -> None:
    """Links in ``base`` at the places ``layout`` reads, to the workspace's shards and tokenizer."""
    for name, where in ((DATA_DIR, layout.data), ("tokenizer", layout.tokenizer)):
        link = base / where
        if not link.exists():
            if not (workspace / name).is_dir():
                raise UpstreamError(f"{workspace / name} is missing: prepare the workspace first "
                                    f"(upstream.workspace.prepare)")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(workspace / name, target_is_directory=True)


def normalise_flags(flags: dict | list) -> list[str]:
    """["--key=value", ...] from a dict (underscores become dashes; True = bare switch, False/None = left out)
    or a list; refuses the flags this module sets itself."""
    out = _from_dict(flags) if isinstance(flags, dict) else [str(f) for f in flags]
    for f in out:
        name = f.lstrip("-").split("=", 1)[0].replace("_", "-")
        if not f.startswith("--"):
            raise UpstreamError(f"base_train flag {f!r} is not of the form --name=value; pass flags that way")
        if name in OURS:
            raise UpstreamError(f"base_train flag --{name} is set by upstream/run.py itself; leave it out")
    return out


def flag_value(flags: list[str], name: str) -> str | None:
    """The value of ``--name=value`` (or ``--name_with_underscores=value``) in a flag list; the last one wins."""
    found = [f.split("=", 1)[1] for f in flags if "=" in f and f[2:].split("=", 1)[0].replace("_", "-") == name]
    return found[-1] if found else None


def _from_dict(flags: dict) -> list[str]:
    names = {key: "--" + str(key).lstrip("-").replace("_", "-") for key in flags}
    return [names[k] if v is True else f"{names[k]}={v}" for k, v in flags.items() if v is not False and v is not None]


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _autodetect_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"
