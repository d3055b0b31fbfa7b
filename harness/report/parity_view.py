"""The report's exact-parity section, from ``campaign.comparison["parity"]`` (shape: harness/parity.py).

It shows how far our arm's trajectory is from upstream's: |Δ loss| per step (chart), the first step past each
tolerance, val BPB at every eval side by side, the per-tensor final-weight differences, and the verdict.
"""
from __future__ import annotations

from harness.report import fmt
from harness.report.charts import Series, line_chart
from harness.report.load import need

WHERE = "campaign.json comparison.parity"


def parity_section(parity: dict | None) -> dict | None:
    """The section's context from the comparison's parity dict, or None when the campaign has none."""
    if not parity:
        return None
    loss = need(parity, "loss", WHERE)
    weights = parity.get("weights")
    return {
        "verdict": f"Parity: {need(parity, 'verdict', WHERE)}",
        "status": _status(parity, weights),
        "lines": _lines(parity, loss),
        "chart": _chart(loss),
        "tolerances": _tolerances(loss),
        "bpb": _bpb(need(parity, "val_bpb", WHERE)),
        "tensors": _tensors(weights),
        "tensors_note": "Final checkpoints were not kept for this campaign, so weights were not compared."
                        if weights is None else "No tensors to compare.",
    }


def _status(parity: dict, weights: dict | None) -> str:
    """bad: diverged; warn: within the rule but a final weight differs by more than the rule's tolerance (the
    weights are reported, not judged); ok otherwise."""
    if need(parity, "status", WHERE) in ("diverged", "unmatched"):
        return "bad"
    worst = (weights or {}).get("worst") or {}
    rel = worst.get("max_rel", 0.0) if worst else 0.0
    return "warn" if rel is None or rel > (parity.get("within_rel") or 1e-4) else "ok"


def _lines(parity: dict, loss: dict) -> list[str]:
    lines = [f"runs compared: ours {parity.get('ours_run') or fmt.NA}, upstream {parity.get('upstream_run') or fmt.NA}"]
    lines.append("training loss identical at every step" if loss.get("identical") else
                 f"training loss: max |Δ| {_sci(loss.get('max_abs'))}, max relative {_sci(loss.get('max_rel'))}"
                 f" (at step {loss.get('max_rel_step') if loss.get('max_rel_step') is not None else fmt.NA})")
    final = (parity.get("val_bpb") or {}).get("final")
    if final:
        lines.append(f"final val BPB: ours {fmt.fixed(final.get('ours'), 6)}, upstream "
                     f"{fmt.fixed(final.get('upstream'), 6)}, relative difference {_sci(final.get('rel_diff'))}")
    lrm = parity.get("lrm") or {}
    if lrm:
        lines.append(f"lrm trace: max |Δ| {_sci(lrm.get('max_abs'))}, {lrm.get('steps_beyond', 0)} step(s) beyond "
                     f"{_sci(lrm.get('tolerance'))}")
    most = parity.get("differs_most")
    if most:
        lines.append(f"differs most: {most.get('name') or most.get('quantity')} "
                     f"(max relative {_sci(most.get('max_rel'))})")
    if parity.get("decimals") is not None:
        lines.append(f"loss and BPB compared as printed with {parity['decimals']} decimals (upstream's log)")
    return lines


def _chart(loss: dict) -> dict | None:
    steps = need(loss, "steps", WHERE + ".loss")
    series = []
    for key, label in (("abs_diff", "|Δ loss|"), ("rel_diff", "|Δ loss| / |loss|")):
        pts = [(s, v) for s, v in zip(steps, loss.get(key) or []) if v is not None and v > 0]
        series.append(Series(label=label, group=label, x=[s for s, _ in pts], y=[v for _, v in pts]))
    svg = line_chart("parity_loss_diff", "Training loss difference per step (ours vs upstream)", "step",
                     "difference (log scale; 0 not drawn)", series, logy=True)
    if svg is None:
        return None
    return {"name": "parity_loss_diff", "title": "Training loss difference per step", "svg": svg,
            "file": "charts/parity_loss_diff.svg"}


def _tolerances(loss: dict) -> dict:
    first = need(loss, "first_step_over", WHERE + ".loss")
    rows = [[f"{float(tol):g}", "never" if step is None else str(step)] for tol, step in
            sorted(first.items(), key=lambda kv: float(kv[0]))]
    return {"header": ["relative tolerance", "first step where |Δ loss| / |loss| exceeds it"], "rows": rows}


def _bpb(val_bpb: dict) -> dict:
    rows = [[str(e.get("step")), fmt.fixed(e.get("ours"), 6), fmt.fixed(e.get("upstream"), 6),
             _sci(e.get("abs_diff")), _sci(e.get("rel_diff"))] for e in need(val_bpb, "evals", WHERE + ".val_bpb")]
    return {"header": ["step", "ours", "upstream", "|Δ|", "relative"], "rows": rows}


def _tensors(weights: dict | None) -> dict:
    header = ["tensor", "group", "shape", "dtype", "max |Δ|", "max relative", "identical"]
    if not weights:
        return {"header": header, "rows": []}
    rows = [[t.get("name"), t.get("group"), "×".join(map(str, t.get("shape") or [])) or "scalar",
             str(t.get("dtype")), _sci(t.get("max_abs")), _sci(t.get("max_rel")), "yes" if t.get("identical") else "no"]
            for t in need(weights, "tensors", WHERE + ".weights")]
    for kind in ("missing_in_ours", "missing_in_upstream", "shape_mismatches"):
        rows += [[name, kind.replace("_", " "), "", "", "", "", "no"] for name in weights.get(kind) or []]
    return {"header": header, "rows": rows}


def _sci(x) -> str:
    return fmt.rel(x)   # the report's one rule for small differences: 2 significant figures, "0" only when 0
