"""The metric registry: every per-run figure the harness compares, reports, stores and watches, defined once.

A ``Metric`` says what it is called (``name``: the key in the comparison and the history, by default the
``RunResult.summary`` field it reads), how it reads (``label`` in tables and charts, ``title`` as a row of its
report section, ``kind`` for the formatter, ``unit``), which way is better (``direction``) and where it goes:
its report ``section``, whether the comparison computes a ratio and verdict (``compared``), and which watchers
follow it (``tracked``: "nightly" regression checks, "trend" charts on the site, "table" in the `history` verb).
Every metric is stored in the history database. Standard library only (no numpy or scipy), so the verbs that
list metrics start fast; harness/stats.py computes with the ``Direction`` defined here.

The comparison (harness/compare.py), the report tables (harness/report/), the history database and its table,
the nightly check and the site's trend charts all iterate ``all_metrics()``: a new metric is one ``register`` call
(or one entry below) plus the code that measures it (a Summary field, or ``read``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


SECTIONS = ("throughput", "memory", "energy", "quality")   # the report's metric tables, in page order
KINDS = ("num", "seconds", "bpb", "bytes", "percent")       # formatters: harness/report/fmt.py
WATCHERS = ("nightly", "trend", "table")


@dataclass(frozen=True)
class Direction:
    """Which way is good for a metric, and the words its verdict uses."""
    higher_is_better: bool
    up_word: str      # the word for a ratio that is clearly good
    down_word: str    # the word for a ratio that is clearly bad


THROUGHPUT = Direction(True, "faster", "slower")
DURATION = Direction(False, "faster", "slower")      # less time = faster
COST = Direction(False, "better", "worse")           # memory, energy, loss
SCORE = Direction(True, "better", "worse")           # e.g. MFU


@dataclass(frozen=True)
class Metric:
    name: str
    label: str                       # short: runs table column, comparison, history table, trend chart
    unit: str                        # of the stored value (SI): "tok/s", "s", "B", "J/tok", "%", "bpb"
    direction: Direction
    kind: str = "num"                # how a value is printed
    section: str | None = None       # report metric table it is a row of (None: the runs table only)
    title: str = ""                  # its row label in that table (default: label)
    shown_unit: str = ""             # unit printed after a mean ± std in that table
    compared: bool = True            # the comparison computes ratio, CI and verdict for it
    tracked: frozenset[str] = frozenset()
    read: Callable[[Any], float | int | None] | None = None   # RunResult -> value; default: summary.<name>
    per_target: bool = False         # read from the comparison's target reach per run (harness/targets.py), not
                                     # from the RunResult: it depends on the campaign's target BPB

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name}: kind={self.kind!r}; use one of {KINDS}")
        if self.section is not None and self.section not in SECTIONS:
            raise ValueError(f"metric {self.name}: section={self.section!r}; use one of {SECTIONS} or None")
        if set(self.tracked) - set(WATCHERS):
            raise ValueError(f"metric {self.name}: tracked={sorted(self.tracked)}; use names from {WATCHERS}")

    @property
    def higher_is_better(self) -> bool:
        return self.direction.higher_is_better

    @property
    def row_title(self) -> str:
        return self.title or self.label

    def value(self, result, targets: dict | None = None) -> float | int | None:
        """This metric of one RunResult (None: not measured). ``targets``: the comparison's per-run target reach
        (``Comparison.targets["runs"]``), which ``per_target`` metrics read instead of the RunResult."""
        if self.per_target:
            return ((targets or {}).get(result.run_id) or {}).get(self.name)
        return self.read(result) if self.read else getattr(result.summary, self.name, None)


_NIGHTLY_TREND_TABLE = frozenset({"nightly", "trend", "table"})
_REGISTRY: dict[str, Metric] = {m.name: m for m in (
    Metric("tokens_per_s", "tokens/s", "tok/s", THROUGHPUT, section="throughput", title="tokens / s",
           tracked=_NIGHTLY_TREND_TABLE),
    Metric("steps_per_s", "steps/s", "step/s", THROUGHPUT, section="throughput", title="steps / s"),
    Metric("train_time_s", "train time", "s", DURATION, kind="seconds", section="throughput",
           title="training time (all steps, evals excluded)", shown_unit="s", compared=False),
    Metric("steady_train_time_s", "steady time", "s", DURATION, kind="seconds", section="throughput",
           title="steady-state training time (steps after steady_state_skip)", shown_unit="s"),
    Metric("time_to_first_step_s", "first step", "s", DURATION, kind="seconds", section="throughput",
           title="time to first step (start-up + compile)", shown_unit="s"),
    Metric("step_ms_median", "step ms p50", "ms", DURATION, section="throughput",
           title="step time median", shown_unit="ms/step", compared=False),
    Metric("step_ms_iqr", "step ms IQR", "ms", DURATION, section="throughput",
           title="step time IQR", shown_unit="ms/step", compared=False),
    Metric("step_ms_p90", "step ms p90", "ms", DURATION, section="throughput",
           title="step time p90", shown_unit="ms/step", compared=False),
    Metric("wall_time_s", "wall time", "s", DURATION, kind="seconds", compared=False),
    Metric("final_val_bpb", "final BPB", "bpb", COST, kind="bpb", section="quality", title="final val BPB",
           tracked=_NIGHTLY_TREND_TABLE),
    Metric("min_val_bpb", "min BPB", "bpb", COST, kind="bpb", section="quality", title="minimum val BPB"),
    # matched quality (harness/targets.py): read from the eval curve at the campaign's target BPB
    Metric("time_to_target_s", "time to target", "s", DURATION, kind="seconds", section="quality",
           title="training time to the target BPB (steady-state step times)", shown_unit="s", per_target=True),
    Metric("tokens_to_target", "tokens to target", "tok", COST, section="quality",
           title="training tokens to the target BPB", per_target=True),
    Metric("flops_to_target", "FLOPs to target", "FLOP", COST, section="quality",
           title="training FLOPs to the target BPB", per_target=True),
    Metric("compute_multiplier", "compute multiplier", "x", SCORE, section="quality",
           title="compute multiplier (baseline FLOPs to the candidate's final BPB ÷ candidate FLOPs; baseline = 1)",
           per_target=True),
    Metric("peak_gpu_mem_bytes", "peak GPU", "B", COST, kind="bytes", section="memory",
           title="peak GPU memory (device, pynvml)", tracked=frozenset({"nightly", "table"})),
    Metric("torch_peak_mem_bytes", "torch peak", "B", COST, kind="bytes", section="memory",
           title="peak torch allocation (the arm's own: max_memory_allocated; upstream's printed peak)",
           tracked=frozenset({"nightly"})),
    Metric("trainer_hwm_bytes", "trainer HWM", "B", COST, kind="bytes", section="memory",
           title="peak RSS of the trainer (kernel high-water mark, VmHWM)",
           tracked=frozenset({"nightly", "table"})),
    Metric("helper_hwm_bytes", "helper HWM", "B", COST, kind="bytes", section="memory",
           title="peak RSS of helper processes (compile workers; VmHWM)", compared=False),
    Metric("peak_rss_bytes", "tree RSS", "B", COST, kind="bytes", section="memory",
           title="peak of the sampled process-tree RSS sum (0.5 s curve)", compared=False,
           tracked=_NIGHTLY_TREND_TABLE),
    Metric("energy_per_token_j", "J/token", "J/tok", COST, section="energy", title="energy per token",
           shown_unit="J/token", tracked=frozenset({"nightly"})),
    Metric("mfu_percent", "MFU", "%", SCORE, kind="percent", section="energy", shown_unit="%"),
)}


def all_metrics() -> list[Metric]:
    """Every registered metric, in registry order (the order of every table)."""
    return list(_REGISTRY.values())


def get(name: str) -> Metric:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no metric {name!r}; registered: {sorted(_REGISTRY)}") from None


def compared() -> list[Metric]:
    return [m for m in _REGISTRY.values() if m.compared]


def in_section(section: str) -> list[Metric]:
    return [m for m in _REGISTRY.values() if m.section == section]


def tracked(watcher: str) -> list[Metric]:
    """The metrics ``watcher`` ("nightly", "trend", "table") follows."""
    return [m for m in _REGISTRY.values() if watcher in m.tracked]


def register(metric: Metric) -> Metric:
    """Add (or replace) a metric; it goes last in the tables unless it replaces one."""
    _REGISTRY[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
