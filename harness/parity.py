"""Exact-parity comparison of one ``ours`` run against one ``upstream`` run of the same budget and seed.

Step by step: the printed (debiased EMA) training loss, the lrm trace and the val BPB at every eval;
then the final weights, loaded straight from both ``model_NNNNNN.pt`` files with ``torch.load`` (no
model code involved), as per-tensor max absolute and max relative differences grouped by role. Upstream
prints loss and BPB with 6 decimals and lrm with 2, so when one side is upstream both sides' loss and
BPB are first formatted the same way (``decimals``): identical prints then compare as exactly 0.

Relative differences: loss and BPB are ``|ours - upstream| / |upstream|``; a tensor's ``max_rel`` is
``max|a - b| / max(max|a|, max|b|)`` (relative to the tensor's scale, so near-zero elements do not
blow it up). Non-finite values are ``null`` and count as beyond every tolerance.

Shape of ``compare_runs(...)`` (goes into ``campaign.comparison["parity"]``)::

    {"ours_run": str | None, "upstream_run": str | None,
     "tolerances": [1e-06, 0.0001, 0.001, 0.01], "within_rel": 0.0001, "decimals": int | None,
     "loss": {"steps": [int], "ours": [float|None], "upstream": [float|None],
              "abs_diff": [float|None], "rel_diff": [float|None],      # parallel lists, one entry per common step
              "first_step_over": {"1e-06": int|None, "0.0001": ..., "0.001": ..., "0.01": ...},
              "max_abs": float|None, "max_rel": float|None, "max_rel_step": int|None, "identical": bool,
              "steps_only_in_ours": [int], "steps_only_in_upstream": [int]},
     "ours_ema_check": {"steps": int, "max_abs": float|None} | None,  # ours' loss field vs debiased_ema(loss_raw)
     "lrm": {"tolerance": float, "max_abs": float|None, "steps_beyond": int, "first_step_beyond": int|None},
     "val_bpb": {"evals": [{"step", "ours", "upstream", "abs_diff", "rel_diff"}],    # every eval step, side by side
                 "final": {same keys} | None, "max_rel": float|None, "identical": bool},
     "weights": None | {                                        # None: a checkpoint was not kept
         "ours_step": int, "upstream_step": int,
         "tensors": [{"name", "group", "shape": [int], "dtype", "max_abs", "max_rel", "identical"}],
         "groups": {group: {"tensors": int, "max_abs", "max_rel", "worst_tensor"}},
         "missing_in_ours": [str], "missing_in_upstream": [str], "shape_mismatches": [str],
         "worst": {"name", "group", "max_abs", "max_rel"} | None, "identical": bool},
     "verdict": "exact" | "within tolerance" | "diverged at step N" | "no verdict: the two runs did not train ...",
     "status": "exact" | "within tolerance" | "diverged" | "unmatched",     # unmatched: see budget_mismatches
     "budget_mismatches": [str],                               # the budget audit's lines naming either run
     "diverged_at_step": int | None,
     "differs_most": {"quantity": "loss"|"val_bpb"|"lrm"|"weights", "name": str,
                      "max_rel": float|None} | None,      # None: non-finite; for lrm the abs diff (lrm <= 1)
     "summary": str}                                            # one line for terminals

Groups: wte, value_embeds, lm_head, attention (c_q/c_k/c_v/c_proj), gates (ve_gate, smear_gate), mlp,
scalars (resid/x0/smear/backout lambdas), other.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable

from protocol.events import EvalEvent, Event, StepEvent
from protocol.upstream_output import LOSS_DECIMALS as PRINT_DECIMALS
from protocol.upstream_output import LRM_PRINT_TOL, debiased_ema

TOLERANCES = (1e-6, 1e-4, 1e-3, 1e-2)
WITHIN_REL = 1e-4              # "within tolerance": loss at every step and final BPB within this, relative
GROUP_RULES = (  # first match wins: ve_gate sits under .attn. but is a gate
    ("wte", r"(^|\.)wte\."), ("value_embeds", r"^value_embeds\."), ("lm_head", r"^lm_head\."),
    ("gates", r"(ve_gate|smear_gate)\."), ("attention", r"\.attn\."), ("mlp", r"\.mlp\."),
    ("scalars", r"^(resid_lambdas|x0_lambdas|smear_lambda|backout_lambda)$"),
)


class ParityError(ValueError):
    """Inputs the parity comparison cannot use (missing checkpoint, no step records)."""


def compare_runs(ours_events: Iterable[Event], upstream_events: Iterable[Event], *,
                 ours_checkpoint: str | Path | None = None, upstream_checkpoint: str | Path | None = None,
                 decimals: int | None = PRINT_DECIMALS, ours_run: str | None = None,
                 upstream_run: str | None = None) -> dict:
    """The parity dict (module docstring) for two runs' events and, if given, their checkpoint dirs."""
    ours_events, upstream_events = list(ours_events), list(upstream_events)
    ours_steps, up_steps = _steps(ours_events), _steps(upstream_events)
    if not ours_steps or not up_steps:
        raise ParityError(f"no step records in the {'ours' if not ours_steps else 'upstream'} run's events: "
                          f"parity needs both runs' step-by-step loss")
    out = {"ours_run": ours_run, "upstream_run": upstream_run, "tolerances": list(TOLERANCES),
           "within_rel": WITHIN_REL, "decimals": decimals,
           "loss": loss_diff({s: e.loss for s, e in ours_steps.items()}, {s: e.loss for s, e in up_steps.items()},
                             decimals),
           "ours_ema_check": ema_check(list(ours_steps.values())),
           "lrm": lrm_diff({s: e.lrm for s, e in ours_steps.items()}, {s: e.lrm for s, e in up_steps.items()},
                           LRM_PRINT_TOL if decimals is not None else 1e-9),
           "val_bpb": bpb_diff(_evals(ours_events), _evals(upstream_events), decimals),
           "weights": None}
    if ours_checkpoint and upstream_checkpoint:
        ours_step, ours_sd = load_model_state(ours_checkpoint)
        up_step, up_sd = load_model_state(upstream_checkpoint)
        out["weights"] = {"ours_step": ours_step, "upstream_step": up_step, **weight_diff(ours_sd, up_sd)}
    out.update(judge(out))
    return out


# ---- loss, lrm, bpb --------------------------------------------------------------------------------------

def loss_diff(ours: dict[int, float | None], upstream: dict[int, float | None], decimals: int | None) -> dict:
    """Per common step |Δ| and relative Δ, and the first step past each tolerance."""
    steps = sorted(set(ours) & set(upstream))
    a = [_quantize(ours[s], decimals) for s in steps]
    b = [_quantize(upstream[s], decimals) for s in steps]
    absd = [_abs(x, y) for x, y in zip(a, b)]
    reld = [_rel(x, y) for x, y in zip(a, b)]
    first = {_tol_key(t): next((s for s, r in zip(steps, reld) if r is None or r > t), None) for t in TOLERANCES}
    finite = [(r, s) for r, s in zip(reld, steps) if r is not None]
    worst = max(finite) if finite else (None, None)
    return {"steps": steps, "ours": a, "upstream": b, "abs_diff": absd, "rel_diff": reld, "first_step_over": first,
            "max_abs": max((d for d in absd if d is not None), default=None), "max_rel": worst[0],
            "max_rel_step": worst[1], "identical": all(d == 0 for d in absd) and set(ours) == set(upstream),
            "steps_only_in_ours": sorted(set(ours) - set(upstream)),
            "steps_only_in_upstream": sorted(set(upstream) - set(ours))}


def ema_check(steps: list[StepEvent]) -> dict | None:
    """How far the arm's loss field is from debiased_ema of its own raw losses (None if it gives no raw loss)."""
    if not steps or any(e.loss_raw is None or e.loss is None for e in steps):
        return None
    expected = debiased_ema([e.loss_raw for e in steps])
    return {"steps": len(steps), "max_abs": max(abs(e.loss - x) for e, x in zip(steps, expected))}


def lrm_diff(ours: dict[int, float], upstream: dict[int, float], tol: float) -> dict:
    steps = sorted(set(ours) & set(upstream))
    diffs = [(abs(ours[s] - upstream[s]), s) for s in steps]
    beyond = [s for d, s in diffs if d > tol]
    return {"tolerance": tol, "max_abs": max((d for d, _ in diffs), default=None), "steps_beyond": len(beyond),
            "first_step_beyond": beyond[0] if beyond else None}


def bpb_diff(ours: dict[int, float | None], upstream: dict[int, float | None], decimals: int | None) -> dict:
    """Every eval side by side (a step only one side evaluated shows null on the other)."""
    rows = []
    for s in sorted(set(ours) | set(upstream)):
        a, b = _quantize(ours.get(s), decimals), _quantize(upstream.get(s), decimals)
        rows.append({"step": s, "ours": a, "upstream": b, "abs_diff": _abs(a, b), "rel_diff": _rel(a, b)})
    common = [r for r in rows if r["ours"] is not None and r["upstream"] is not None]
    rels = [r["rel_diff"] for r in rows if r["rel_diff"] is not None]
    return {"evals": rows, "final": common[-1] if common else None, "max_rel": max(rels, default=None),
            "identical": bool(rows) and all(r["abs_diff"] == 0 for r in rows)}


# ---- weights ---------------------------------------------------------------------------------------------

def load_model_state(checkpoint_dir: str | Path, step: int | None = None) -> tuple[int, dict]:
    """(step, state_dict) of model_NNNNNN.pt in a checkpoint dir: the given step, else the latest."""
    import torch
    d = Path(checkpoint_dir)
    found = {int(m.group(1)): p for p in d.glob("model_*.pt") if (m := re.fullmatch(r"model_(\d+)\.pt", p.name))}
    if not found:
        raise ParityError(f"{d}: no model_NNNNNN.pt checkpoint; run with keep_checkpoints=True to keep one")
    if step is not None and step not in found:
        raise ParityError(f"{d}: no checkpoint for step {step}; it has steps {sorted(found)}")
    step = max(found) if step is None else step
    sd = torch.load(found[step], map_location="cpu", weights_only=True)
    return step, {k.removeprefix("_orig_mod."): v for k, v in sd.items()}


def tensor_group(name: str) -> str:
    return next((g for g, pat in GROUP_RULES if re.search(pat, name)), "other")


def weight_diff(ours: dict, upstream: dict) -> dict:
    """Per-tensor max abs/rel differences (in float64), grouped, plus what exists on one side only."""
    common = [k for k in upstream if k in ours]
    shape_bad = [f"{k}: {list(ours[k].shape)} vs {list(upstream[k].shape)}" for k in common
                 if ours[k].shape != upstream[k].shape]
    tensors = [_tensor_row(k, ours[k], upstream[k]) for k in common if ours[k].shape == upstream[k].shape]
    worst = max(tensors, key=lambda t: (_order(t["max_rel"]), _order(t["max_abs"])), default=None)
    missing_o, missing_u = sorted(set(upstream) - set(ours)), sorted(set(ours) - set(upstream))
    return {"tensors": tensors, "groups": _groups(tensors), "missing_in_ours": missing_o,
            "missing_in_upstream": missing_u, "shape_mismatches": shape_bad,
            "worst": None if worst is None else {k: worst[k] for k in ("name", "group", "max_abs", "max_rel")},
            "identical": all(t["identical"] for t in tensors) and not (missing_o or missing_u or shape_bad)}


def _tensor_row(name: str, a, b) -> dict:
    a64, b64 = a.detach().double(), b.detach().double()
    max_abs = float((a64 - b64).abs().max()) if a64.numel() else 0.0
    scale = max(float(a64.abs().max()), float(b64.abs().max())) if a64.numel() else 0.0
    finite = math.isfinite(max_abs)  # a NaN/inf weight: no number describes the difference
    rel = (max_abs / scale if scale > 0 else 0.0) if finite else None
    return {"name": name, "group": tensor_group(name), "shape": list(a.shape), "dtype": _dtype(a, b),
            "max_abs": max_abs if finite else None, "max_rel": rel, "identical": finite and max_abs == 0.0}


def _dtype(a, b) -> str:
    da, db = str(a.dtype).removeprefix("torch."), str(b.dtype).removeprefix("torch.")
    return da if da == db else f"{da}/{db}"


def _groups(tensors: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for t in tensors:
        g = out.setdefault(t["group"], {"tensors": 0, "max_abs": 0.0, "max_rel": 0.0, "worst_tensor": t["name"]})
        g["tensors"] += 1
        if _worse(t["max_abs"], g["max_abs"]):
            g["max_abs"] = t["max_abs"]
        if _worse(t["max_rel"], g["max_rel"]):
            g["max_rel"], g["worst_tensor"] = t["max_rel"], t["name"]
    return out


def _worse(x: float | None, than: float | None) -> bool:
    """x > than, where None (not finite) is worse than any number."""
    return _order(x) > _order(than)


def _order(x: float | None) -> float:
    return math.inf if x is None else x


# ---- verdict ---------------------------------------------------------------------------------------------

def judge(p: dict) -> dict:
    """verdict/status/diverged_at_step/differs_most/summary from the computed parts."""
    loss, bpb, lrm, w = p["loss"], p["val_bpb"], p["lrm"], p["weights"]
    most = _differs_most(p)
    if loss["identical"] and bpb["identical"] and lrm["steps_beyond"] == 0 and (w is None or w["identical"]):
        status, step = "exact", None
    elif _within(p):
        status, step = "within tolerance", None
    else:
        status, step = "diverged", _divergence_step(p)
    verdict = f"diverged at step {step}" if status == "diverged" else status
    return {"verdict": verdict, "status": status, "diverged_at_step": step, "differs_most": most,
            "summary": _summary(p, verdict, most)}


def _within(p: dict) -> bool:
    loss, final = p["loss"], p["val_bpb"]["final"]
    loss_ok = all(r is not None and r <= WITHIN_REL for r in loss["rel_diff"]) and not (
        loss["steps_only_in_ours"] or loss["steps_only_in_upstream"])
    rows = p["val_bpb"]["evals"]
    bpb_ok = not rows or (final is not None and final["rel_diff"] <= WITHIN_REL
                          and all(r["rel_diff"] is not None for r in rows))
    return loss_ok and bpb_ok and p["lrm"]["steps_beyond"] == 0


def _divergence_step(p: dict) -> int:
    """The earliest step at which any compared quantity leaves the tolerance."""
    loss = p["loss"]
    candidates = [loss["first_step_over"][_tol_key(WITHIN_REL)], p["lrm"]["first_step_beyond"]]
    candidates += [r["step"] for r in p["val_bpb"]["evals"] if r["rel_diff"] is None or r["rel_diff"] > WITHIN_REL]
    candidates += (loss["steps_only_in_ours"] + loss["steps_only_in_upstream"])[:1]
    found = [c for c in candidates if c is not None]
    # nothing stepwise left the tolerance, so only the weights did: they are from the last step
    return min(found) if found else max(loss["steps"]) + 1


def _differs_most(p: dict) -> dict | None:
    """The quantity with the largest relative difference (a non-finite one beats any number)."""
    loss, bpb, w, lrm = p["loss"], p["val_bpb"], p["weights"], p["lrm"]
    cands = []
    if loss["steps"]:
        bad = next((s for s, r in zip(loss["steps"], loss["rel_diff"]) if r is None), None)
        cands.append(("loss", f"loss at step {loss['max_rel_step'] if bad is None else bad}",
                      loss["max_rel"] if bad is None else None))
    if bpb["evals"]:
        bad = any(r["rel_diff"] is None for r in bpb["evals"])
        cands.append(("val_bpb", "val bpb", None if bad else bpb["max_rel"]))
    if w and w["worst"]:
        cands.append(("weights", f"{w['worst']['group']} ({w['worst']['name']})", w["worst"]["max_rel"]))
    if lrm["steps_beyond"]:
        cands.append(("lrm", f"lrm at step {lrm['first_step_beyond']}", lrm["max_abs"]))
    cands = [c for c in cands if c[2] != 0.0]
    if not cands:
        return None
    q, name, rel = max(cands, key=lambda c: _order(c[2]))
    return {"quantity": q, "name": name, "max_rel": rel}


def _summary(p: dict, verdict: str, most: dict | None) -> str:
    first = p["loss"]["first_step_over"][_tol_key(WITHIN_REL)]
    final = p["val_bpb"]["final"]
    bpb = f"{final['rel_diff']:.2e}" if final and final["rel_diff"] is not None else "n/a"
    w = p["weights"]
    if w is None:
        worst = "not compared"
    elif w["identical"] or not w["worst"]:
        worst = "none (identical)"
    else:
        worst = f"{w['worst']['name']} max rel {_sci(w['worst']['max_rel'])}"
    detail = f"; differs most: {most['name']}" if most and verdict != "exact" else ""
    return (f"parity: {verdict}{detail} | first step past 1e-4 rel loss: {first if first is not None else 'none'}"
            f" | final bpb rel diff: {bpb} | worst tensor: {worst}")


def unmatched(p: dict, mismatches: list[str]) -> dict:
    """``p`` with no verdict when the budget audit found the two runs did not train the same budget (different
    tokenizer, data, steps, schedule ...): a step-by-step agreement between different budgets proves nothing."""
    runs = [r for r in (p.get("ours_run"), p.get("upstream_run")) if r]
    named = [m for m in mismatches if any(re.search(rf"(?<![\w-]){re.escape(r)}(?![\w-])", m) for r in runs)]
    if not named:
        return p
    verdict = (f"no verdict: the two runs did not train the same budget ({len(named)} budget audit mismatch(es), "
               f"first: {named[0]})")
    return {**p, "status": "unmatched", "verdict": verdict, "diverged_at_step": None, "budget_mismatches": named,
            "summary": f"parity: {verdict}"}


# ---- helpers ---------------------------------------------------------------------------------------------

def _steps(events: list[Event]) -> dict[int, StepEvent]:
    return {e.step: e for e in events if isinstance(e, StepEvent)}


def _evals(events: list[Event]) -> dict[int, float | None]:
    return {e.step: e.val_bpb for e in events if isinstance(e, EvalEvent)}


def _quantize(x: float | None, decimals: int | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{decimals}f}") if decimals is not None else float(x)


def _abs(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else abs(a - b)


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if b == 0:
        return 0.0 if a == 0 else None
    return abs(a - b) / abs(b)


def _sci(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2e}"


def _tol_key(t: float) -> str:
    return repr(t)
