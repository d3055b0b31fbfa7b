"""Budget audit across arms: did every ok run of a campaign really train under the same budget?

Checked from each RunResult and its events, every ok run against one reference run (the first ok
run in the order given): parameter counts (total and per group), tokens processed, optimizer step
count, the lrm trace (within the 2-decimal print when one side is upstream, which prints ``lrm:
0.95``), the steps at which evals ran and the eval tokens each used, the data and tokenizer hashes
(``RunResult.data``) and the budget dict itself. Each run's own audit lines (mismatches its arm's
adapter found in its output) are carried over. Every mismatch is one line naming both runs and
both values; ``matched`` is false if there is any. Facts a run did not report are listed under
``unverified`` instead: not knowing is not the same as differing.

Shape of ``audit_runs(...)``::

    {"matched": bool,
     "reference_run": str | None,         # run_id every other ok run is compared with
     "checks": [str],                      # names of the checks made
     "mismatches": [str],                  # one line each
     "unverified": [str],                  # one line each: a fact some run did not report
     "excluded": [str],                    # "run_id (status)" of runs that did not finish ok
     "runs": {run_id: {"implementation": str, "audit": [str], "valid_for_parity": bool}}}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from harness.adapters import registry as arms
from harness.results import RunResult
from protocol.events import EvalEvent, Event, FinalEvent, StepEvent
from protocol.schedule import eval_steps
from protocol.upstream_output import LRM_PRINT_TOL  # upstream prints lrm with 2 decimals

CHECKS = ("param_counts", "tokens", "steps", "lrm", "eval_steps", "eval_cadence", "eval_tokens", "data", "budget",
          "own_audit")
DATA_FIELDS = ("dataset", "vocab_size", "shards_sha256", "tokenizer_sha256")
LRM_EXACT_TOL = 1e-9


@dataclass
class RunFacts:
    """What one run says it did, gathered from its RunResult and its events."""
    run_id: str
    implementation: str
    param_counts: dict[str, int]
    tokens: int | None
    steps: int | None
    step_records: int
    lrm: dict[int, float]
    eval_steps: list[int]
    eval_tokens: list[int | None]
    data: dict[str, Any]
    budget: dict[str, Any]
    printed_lrm: bool = field(default=False)


def run_facts(result: RunResult, events: Iterable[Event]) -> RunFacts:
    """Collect one run's budget facts; the summary wins, the final event fills what it lacks."""
    events = list(events)
    steps = [e for e in events if isinstance(e, StepEvent)]
    evals = [e for e in events if isinstance(e, EvalEvent)]
    final = next((e for e in reversed(events) if isinstance(e, FinalEvent)), None)
    s = result.summary
    return RunFacts(
        run_id=result.run_id, implementation=result.implementation,
        param_counts=dict(s.param_counts or (final.param_counts if final and final.param_counts else {})),
        tokens=s.tokens if s.tokens is not None else (final.tokens if final else None),
        steps=s.steps if s.steps is not None else (final.steps if final else None),
        step_records=len(steps), lrm={e.step: e.lrm for e in steps},
        eval_steps=[e.step for e in evals], eval_tokens=[e.eval_tokens for e in evals],
        data={k: getattr(result.data, k) for k in DATA_FIELDS}, budget=dict(result.budget or {}),
        printed_lrm=arms.prints_rounded_lrm(result.implementation))


def audit_runs(results: list[RunResult], events_by_run: dict[str, list[Event]]) -> dict:
    """Audit every ok run against the first ok run; see the module docstring for the shape."""
    ok = [r for r in results if r.ok]
    out = {"matched": True, "reference_run": ok[0].run_id if ok else None, "checks": list(CHECKS),
           "mismatches": [], "unverified": [], "excluded": [f"{r.run_id} ({r.status})" for r in results if not r.ok],
           "runs": {r.run_id: {"implementation": r.implementation, "audit": list(r.audit),
                               "valid_for_parity": r.valid_for_parity} for r in results}}
    out["mismatches"] += _arms_without_ok_runs(results)
    facts = [run_facts(r, events_by_run.get(r.run_id, [])) for r in ok]
    for r, f in zip(ok, facts):
        out["mismatches"] += _self_consistency(f) + [f"{r.run_id}: {line}" for line in r.audit]
    for f in facts[1:]:
        mism, unver = compare_facts(facts[0], f)
        out["mismatches"] += mism
        out["unverified"] += unver
    out["matched"] = not out["mismatches"]
    return out


def compare_facts(ref: RunFacts, other: RunFacts) -> tuple[list[str], list[str]]:
    """Mismatch lines and unverified lines between two runs."""
    mism: list[str] = []
    unver: list[str] = []
    for check in (_param_counts, _totals, _lrm_trace, _evals, _data, _budget):
        m, u = check(ref, other)
        mism += m
        unver += u
    return mism, unver


def _pair(ref: RunFacts, other: RunFacts, what: str, a: Any, b: Any) -> str:
    return f"{what}: {ref.run_id} {_fmt(a)} vs {other.run_id} {_fmt(b)}"


def _fmt(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else repr(v) if isinstance(v, str) else str(v)


def _compare_value(ref: RunFacts, other: RunFacts, what: str, a: Any, b: Any) -> tuple[list[str], list[str]]:
    if a is None or b is None:
        missing = ref.run_id if a is None else other.run_id
        return [], [f"{what}: not reported by {missing}"]
    return ([_pair(ref, other, what, a, b)] if a != b else []), []


def _param_counts(ref: RunFacts, other: RunFacts) -> tuple[list[str], list[str]]:
    if not ref.param_counts or not other.param_counts:
        return _compare_value(ref, other, "param_counts", ref.param_counts or None, other.param_counts or None)
    mism, unver = [], []
    for group in sorted(set(ref.param_counts) | set(other.param_counts)):
        m, u = _compare_value(ref, other, f"param_counts.{group}", ref.param_counts.get(group),
                              other.param_counts.get(group))
        mism, unver = mism + m, unver + u
    return mism, unver


def _totals(ref: RunFacts, other: RunFacts) -> tuple[list[str], list[str]]:
    m1, u1 = _compare_value(ref, other, "tokens", ref.tokens, other.tokens)
    m2, u2 = _compare_value(ref, other, "steps", ref.steps, other.steps)
    return m1 + m2, u1 + u2


def _lrm_trace(ref: RunFacts, other: RunFacts) -> tuple[list[str], list[str]]:
    if not ref.lrm or not other.lrm:
        return _compare_value(ref, other, "lrm trace", ref.lrm or None, other.lrm or None)
    tol = LRM_PRINT_TOL if (ref.printed_lrm or other.printed_lrm) else LRM_EXACT_TOL
    bad = [s for s in sorted(set(ref.lrm) & set(other.lrm)) if abs(ref.lrm[s] - other.lrm[s]) > tol]
    mism = []
    if set(ref.lrm) != set(other.lrm):
        mism.append(f"lrm trace: {ref.run_id} has {len(ref.lrm)} steps, {other.run_id} {len(other.lrm)}"
                    f" ({len(set(ref.lrm) ^ set(other.lrm))} steps only on one side)")
    if bad:
        s = bad[0]
        mism.append(f"lrm trace: {ref.run_id} and {other.run_id} differ at {len(bad)} steps beyond {tol:.3g},"
                    f" first at step {s} ({ref.lrm[s]:.6g} vs {other.lrm[s]:.6g})")
    return mism, []


def _evals(ref: RunFacts, other: RunFacts) -> tuple[list[str], list[str]]:
    mism, unver = _compare_value(ref, other, "eval steps", ref.eval_steps, other.eval_steps)
    tokens_a = sorted({t for t in ref.eval_tokens if t is not None})
    tokens_b = sorted({t for t in other.eval_tokens if t is not None})
    m, u = _compare_value(ref, other, "eval tokens", tokens_a or None, tokens_b or None)
    return mism + m, unver + u


def _data(ref: RunFacts, other: RunFacts) -> tuple[list[str], list[str]]:
    mism, unver = [], []
    for k in DATA_FIELDS:
        m, u = _compare_value(ref, other, f"data.{k}", ref.data.get(k), other.data.get(k))
        mism, unver = mism + m, unver + u
    return mism, unver


def _budget(ref: RunFacts, other: RunFacts) -> tuple[list[str], list[str]]:
    keys = sorted(set(ref.budget) | set(other.budget))
    diff = [k for k in keys if ref.budget.get(k) != other.budget.get(k)]
    return [_pair(ref, other, f"budget.{k}", ref.budget.get(k), other.budget.get(k)) for k in diff], []


def _self_consistency(f: RunFacts) -> list[str]:
    """A run whose step records disagree with its own step count, or whose evals are not the budget's eval
    cadence (``protocol.schedule.eval_steps``), did not do what it says."""
    out = []
    if f.steps is not None and f.step_records and f.step_records != f.steps:
        out.append(f"{f.run_id}: {f.step_records:,} step records but {f.steps:,} steps reported")
    planned = planned_eval_steps(f.budget, f.steps)
    if planned is not None and f.eval_steps != planned:
        out.append(f"{f.run_id}: evals at steps {_short(f.eval_steps)} but the budget's cadence plans "
                   f"{_short(planned)}")
    return out


def planned_eval_steps(budget: dict, steps: int | None) -> list[int] | None:
    """The eval steps a budget asks for, over its own horizon (else the steps the run reports; None when neither
    is known)."""
    n = budget.get("num_iterations")
    if n is None and budget.get("target_tokens") and budget.get("total_batch_size"):
        n = budget["target_tokens"] // budget["total_batch_size"]
    n = n if n is not None else steps
    if n is None or "eval_every" not in budget:
        return None
    return eval_steps(n, budget["eval_every"], budget.get("warmdown_ratio", 0.0),
                      budget.get("warmdown_eval_every", 0))


def _short(steps: list[int]) -> str:
    return str(steps) if len(steps) <= 12 else f"{steps[:6]} ... {steps[-3:]} ({len(steps)} evals)"


def _arms_without_ok_runs(results: list[RunResult]) -> list[str]:
    impls = dict.fromkeys(r.implementation for r in results)
    return [f"{impl}: no run finished ok, so its budget cannot be audited"
            for impl in impls if not any(r.ok and r.implementation == impl for r in results)]
