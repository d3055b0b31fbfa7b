"""The A/A noise floor of a campaign: the latest A/A campaign (the same arm on both sides, ``--impl ours,ours``)
of the same preset on the same machine, found among the campaigns beside it (the same results root).

Its tokens/s ratio and interval say how far apart two identical arms land on this machine with this preset; the
report shows it next to the campaign's own ratio. Reads campaign.json files only.
"""
from __future__ import annotations

import json
from pathlib import Path

AA_MARK = ":aa"


def is_aa(comparison: dict | None) -> bool:
    return bool(comparison and (comparison.get("candidate") or "").endswith(AA_MARK))


def same_machine(a: dict, b: dict) -> bool:
    keys = ("cpu_model", "cpu_count", "gpus", "aten_cpu_capability", "torch")
    return all(a.get(k) == b.get(k) for k in keys)


def find(campaign_dir: str | Path, preset: str, machine: dict) -> dict | None:
    """{campaign_id, ratio, ci95, range, interval, half_width} of the newest A/A campaign beside ``campaign_dir``
    with this preset and machine (``campaign_dir`` itself included); None when there is none. A damaged
    campaign.json beside it is no noise floor and breaks nothing: it is skipped."""
    here = Path(campaign_dir).resolve()
    best = None
    for path in sorted(here.parent.glob("*/campaign.json")):
        try:
            entry = _aa_entry(json.loads(path.read_text(encoding="utf-8")), preset, machine)
        except (OSError, ValueError, AttributeError, TypeError, KeyError, IndexError):
            continue
        if entry is not None and (best is None or entry["created_utc"] >= best["created_utc"]):
            best = entry
    return best


def _aa_entry(c: dict, preset: str, machine: dict) -> dict | None:
    """The noise-floor entry of one campaign.json's content, or None when it is not an A/A campaign like this one."""
    cmp = c.get("comparison")
    if not is_aa(cmp) or c.get("preset") != preset or not same_machine(c.get("machine") or {}, machine):
        return None
    tps = (cmp.get("metrics") or {}).get("tokens_per_s") or {}
    if tps.get("ratio") is None:
        return None
    ci = tps.get("ci95")
    return {"campaign_id": c.get("campaign_id"), "created_utc": str(c.get("created_utc") or ""),
            "ratio": tps["ratio"], "ci95": ci, "range": tps.get("range"), "interval": tps.get("interval"),
            "n_pairs": tps.get("n_pairs"), "half_width": (ci[1] - ci[0]) / 2 if ci else None}
