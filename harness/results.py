"""The result contract: one typed RunResult per run and one Campaign tying runs together, as JSON on disk.

Everything the report, the history store and the nightly check read comes from these records; nothing there
re-runs anything. Files are written atomically (temp file + rename) so a crash never leaves half a result.
Every file carries ``schema_version``; a file of another version fails to load with a message saying what to do.
Version 2 added warm-up runs (``phase``), the step-time distribution, time to first step, kernel high-water-mark
memory, interference and the machine identity; version-1 files still load (those fields None or defaults).
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protocol.files import UnsafePath, check_name, inside, read_json, write_json_atomic

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)

RUN_STATUSES = ("ok", "failed", "timeout", "interrupted")
HIDDEN_SOURCE = "<upstream source>"  # what a published copy records for a local upstream path (report/render.py)
PHASES = ("warmup", "measure")   # a warm-up run fills the compile cache; it is recorded, never compared


class SchemaError(ValueError):
    """A results file this version of nanochat-bench cannot read."""


@dataclass
class Provenance:
    """Where and with what a run happened."""
    ours_sha: str | None = None
    ours_dirty: bool | None = None
    upstream_sha: str | None = None
    upstream_ref: str | None = None
    upstream_clean: bool | None = None
    upstream_revision: dict | None = None  # upstream/revision.py's record: what was read, adapted or refused
    argv: list[str] = field(default_factory=list)
    python: str | None = None
    torch: str | None = None
    cuda: str | None = None
    driver: str | None = None
    gpu_name: str | None = None
    gpu_count: int | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    aten_cpu_capability: str | None = None      # torch.backends.cpu.get_cpu_capability() as the arms run it
    torch_threads: int | None = None            # torch.get_num_threads() in the harness's environment
    hostname: str | None = None
    packages: dict[str, str] = field(default_factory=dict)  # e.g. upstream's runtime deps as installed
    utc_started: str | None = None
    utc_finished: str | None = None


@dataclass
class DataIdentity:
    """Proof of which data and tokenizer a run used (content hashes)."""
    dataset: str | None = None
    vocab_size: int | None = None
    shards_sha256: str | None = None
    tokenizer_sha256: str | None = None
    base_dir: str | None = None


@dataclass
class EvalMemory:
    """Memory measured by the harness at an eval, to flag memory that grows from eval to eval."""
    step: int
    rss_bytes: int | None = None
    gpu_bytes: int | None = None


@dataclass
class Summary:
    """Per-run figures, computed by the harness from the arm's events and its own telemetry. None = not measurable."""
    steps: int | None = None
    tokens: int | None = None
    steady_state_skip: int | None = None        # first N steps excluded from the medians (compilation, warm-up)
    steps_per_s: float | None = None            # median over steady-state steps
    tokens_per_s: float | None = None           # median over steady-state steps
    train_time_s: float | None = None           # sum of step times, evals excluded
    wall_time_s: float | None = None            # process start to exit, as the harness saw it
    final_val_bpb: float | None = None
    min_val_bpb: float | None = None
    time_to_first_step_s: float | None = None   # process start to the end of step 0 (start-up + compile)
    steady_train_time_s: float | None = None    # sum of the steady-state step times (after steady_state_skip)
    step_ms_median: float | None = None         # steady-state step time distribution, ms/step (nanochat's dt)
    step_ms_iqr: float | None = None            # p75 - p25
    step_ms_p90: float | None = None
    peak_rss_bytes: int | None = None           # summed over the process tree (psutil), sampled: a curve's peak
    trainer_hwm_bytes: int | None = None        # the kernel's VmHWM of the training process(es): max over them
    helper_hwm_bytes: int | None = None         # the same for helper processes (compile workers, launchers)
    peak_gpu_mem_bytes: int | None = None       # device memory used (pynvml)
    torch_peak_mem_bytes: int | None = None     # the arm's own torch peak allocation
    energy_j: float | None = None
    energy_per_token_j: float | None = None
    mfu_percent: float | None = None
    mfu_basis: str | None = None                # which peak FLOP/s the MFU is against, and where it came from
    flops_per_token: float | None = None
    param_counts: dict[str, int] = field(default_factory=dict)
    eval_memory: list[EvalMemory] = field(default_factory=list)
    memory_grows: bool | None = None            # memory rose from eval to eval


@dataclass
class Interference:
    """What processes outside the run's tree (and the harness) did to the machine during the run."""
    others_cpu_s: float | None = None           # system busy CPU time minus the run tree's and the harness's
    others_cores_mean: float | None = None      # others_cpu_s / wall time: cores' worth used by others on average
    others_cores_max: float | None = None       # the same over the busiest sampling window
    load1_max: float | None = None              # os.getloadavg()[0], highest seen (includes the run itself)
    cpu_freq_mhz_min: float | None = None       # psutil.cpu_freq() where the machine exposes it
    cpu_freq_mhz_max: float | None = None
    gpu_other_procs: int | None = None          # (CUDA) most processes outside the tree seen on the watched GPUs
    gpu_throttle_reasons: list[str] = field(default_factory=list)   # (CUDA) NVML reasons seen, idle excluded
    threshold_cores: float | None = None        # the rule's threshold (harness/interference.py)
    disturbed: bool = False
    why: str | None = None


@dataclass
class RunResult:
    """One run of one implementation with one seed and repeat index."""
    run_id: str
    implementation: str                         # "ours", "upstream", or "command:<name>"
    seed: int
    repeat: int
    status: str                                 # one of RUN_STATUSES
    budget: dict[str, Any]                      # the Budget as a dict (harness.budget.Budget.to_dict)
    provenance: Provenance = field(default_factory=Provenance)
    data: DataIdentity = field(default_factory=DataIdentity)
    summary: Summary = field(default_factory=Summary)
    error: str | None = None                    # one line: why it failed
    log_tail: str | None = None                 # last lines of the raw log of a failed run
    audit: list[str] = field(default_factory=list)  # budget mismatches found in the arm's own output
    valid_for_parity: bool = True
    log_path: str | None = None                 # paths relative to the campaign dir
    events_path: str | None = None
    telemetry_path: str | None = None
    checkpoint_dir: str | None = None
    phase: str = "measure"                      # one of PHASES
    interference: Interference | None = None    # what else used the machine during the run
    lockstep_paused_s: float | None = None      # lock-step rounds: seconds held paused while the round-mate ran
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.status not in RUN_STATUSES:
            raise ValueError(f"RunResult.status={self.status!r}: must be one of {RUN_STATUSES}")
        if self.phase not in PHASES:
            raise ValueError(f"RunResult.phase={self.phase!r}: must be one of {PHASES}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def measured(self) -> bool:
        """A measured repeat (not a warm-up run)."""
        return self.phase == "measure"

    @property
    def disturbed(self) -> bool:
        return bool(self.interference and self.interference.disturbed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        result = _build(cls, _checked(d, "run result"))
        for name in ("log_path", "events_path", "telemetry_path"):
            value = getattr(result, name)
            if value is not None:
                _relative(value, name)
        return result

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "RunResult":
        return _named(path, lambda: cls.from_dict(_read_json(path)))


@dataclass
class CampaignRun:
    """A campaign's pointer to one run: where its RunResult lives and how it ended."""
    run_id: str
    implementation: str
    seed: int
    repeat: int
    status: str                                 # "pending" until the run has a result
    result_path: str | None = None              # relative to the campaign dir
    phase: str = "measure"                      # "warmup": fills the compile cache, recorded, not compared


@dataclass
class Campaign:
    """One matched-budget campaign: the budget, the planned run order, and the runs' results."""
    campaign_id: str
    preset: str
    budget: dict[str, Any]
    runs: list[CampaignRun] = field(default_factory=list)  # in execution order (interleaved arms)
    created_utc: str | None = None
    finished_utc: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None    # harness.compare output: ratios, CIs, verdicts, audit
    notes: list[str] = field(default_factory=list)
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)  # implementation -> how to rebuild its adapter
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Campaign":
        campaign = _build(cls, _checked(d, "campaign"))
        check_name(campaign.campaign_id, "campaign_id")
        for r in campaign.runs:
            check_name(r.run_id, "run_id")
            if r.result_path is not None:
                _relative(r.result_path, f"run {r.run_id} result_path")
        return campaign

    def save(self, campaign_dir: str | Path) -> Path:
        path = Path(campaign_dir) / "campaign.json"
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, campaign_dir: str | Path) -> "Campaign":
        path = Path(campaign_dir) / "campaign.json"
        return _named(path, lambda: cls.from_dict(_read_json(path)))

    def results(self, campaign_dir: str | Path) -> list[RunResult]:
        """The RunResults of every run that has one, in execution order (each file inside ``campaign_dir``)."""
        return [RunResult.load(result_file(campaign_dir, r)) for r in self.runs if r.result_path]


def result_file(campaign_dir: str | Path, run: CampaignRun) -> Path:
    """The result.json of ``run``: inside ``campaign_dir`` or a SchemaError naming campaign.json."""
    return _named(Path(campaign_dir) / "campaign.json",
                  lambda: inside(campaign_dir, run.result_path, f"run {run.run_id} result_path"))


def run_file(campaign_dir: str | Path, result: RunResult, name: str) -> Path | None:
    """A file a RunResult names (``events_path``, ``log_path``, ``telemetry_path``), inside ``campaign_dir``;
    None when the result names none. SchemaError when it would lead out of the folder."""
    rel = getattr(result, name)
    if not rel:
        return None
    return _named(Path(campaign_dir) / "runs" / result.run_id / "result.json",
                  lambda: inside(campaign_dir, rel, f"run {result.run_id} {name}"))


def damage(campaign_dir: str | Path, run: CampaignRun) -> str | None:
    """Why the recorded ok result of ``run`` cannot be trusted (one phrase), or None when it holds up: its
    result.json loads, is this run and ok, and its events file is inside the folder, readable and has a final event."""
    from protocol.events import EventFormatError, FinalEvent, read_events
    if not run.result_path:
        return "has no result_path"
    try:
        result = RunResult.load(result_file(campaign_dir, run))
        events = run_file(campaign_dir, result, "events_path")
    except SchemaError as e:
        return f"its result is unreadable ({e})"
    if (result.run_id, result.status) != (run.run_id, "ok"):
        return f"its result.json says run {result.run_id!r} status {result.status!r}"
    if events is None or not events.is_file():
        return "its events file is missing"
    try:
        if not any(isinstance(e, FinalEvent) for e in read_events(events)):
            return "its events file has no final event"
    except (EventFormatError, UnicodeDecodeError) as e:
        return f"its events file is damaged ({e})"
    return None


def _relative(value: Any, what: str) -> None:
    if not isinstance(value, str) or not value or Path(value).is_absolute() or ".." in Path(value).parts:
        raise SchemaError(f"{what} {value!r} must be a relative path inside the campaign folder")


def _named(path: str | Path, read):
    """``read()``, with any SchemaError or unsafe path prefixed by the file it came from (once)."""
    try:
        return read()
    except (SchemaError, UnsafePath) as e:
        text = str(e)
        raise SchemaError(text if text.startswith(str(path)) else f"{path}: {text}") from None


def _read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return read_json(path)
    except FileNotFoundError:
        raise SchemaError(f"{path}: no such results file; check the campaign directory") from None
    except IsADirectoryError:
        raise SchemaError(f"{path}: is a directory, not a results file; the campaign folder is damaged") from None
    except UnicodeDecodeError:
        raise SchemaError(f"{path}: not UTF-8 text; the file is damaged") from None
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); the file is damaged") from None


def _checked(d: Any, what: str) -> dict:
    if not isinstance(d, dict):
        raise SchemaError(f"{what} is {type(d).__name__}, not a JSON object; the file is damaged")
    v = d.get("schema_version")
    if v not in READABLE_VERSIONS:
        raise SchemaError(
            f"{what} has schema_version {v!r} but this nanochat-bench reads version {' or '.join(map(str, READABLE_VERSIONS))}: "
            f"re-run the campaign with this version, or read it with the nanochat-bench release that wrote it")
    return d


def _build(cls, d: Any, where: str = ""):
    """Rebuild a (nested) dataclass from plain JSON data, ignoring unknown keys; SchemaError (naming the field)
    for a value of the wrong JSON type or a missing required field."""
    where = where or cls.__name__
    if not isinstance(d, dict):
        raise SchemaError(f"{where} is {_json_type(d)}, not an object; the file is damaged")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            kwargs[f.name] = _coerce(hints[f.name], d[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SchemaError(f"{where} has no {f.name!r}; the file is damaged")
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise SchemaError(f"{where}: {e}") from None


_PLAIN = {int: "a number", float: "a number", str: "a string", bool: "true or false", dict: "an object",
          list: "a list"}


def _coerce(tp, value, where: str):
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where) if len(inner) == 1 else value
    plain = origin or tp
    if plain in _PLAIN and not _is(value, plain):
        raise SchemaError(f"{where} = {value!r:.60} should be {_PLAIN[plain]}, not {_json_type(value)}; "
                          f"the file is damaged")
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _is(value: Any, plain: type) -> bool:
    if plain in (int, float):   # JSON writers may store a count as 9e8: any number will do
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, plain)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)
