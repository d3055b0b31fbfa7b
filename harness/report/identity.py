"""A campaign's identity: the machine it ran on (a stable key for history and nightly, a label for people)
and the commits of both arms."""
from __future__ import annotations

from harness.report import fmt
from harness.results import Provenance, RunResult


def machine_key(prov: Provenance) -> str:
    """``host/device`` plus, where recorded, what numerics depend on (ATen CPU path, torch and its threads, the
    GPU driver): history and nightly compare a campaign only with earlier ones of the same key, so BPB is never
    compared across CPU models, dispatch paths or torch versions. Results from before these facts were recorded
    keep the plain ``host/device`` key."""
    host = prov.hostname or "unknown-host"
    extra = [f"{k}={v}" for k, v in (("aten", prov.aten_cpu_capability), ("torch", prov.torch),
                                     ("threads", prov.torch_threads), ("driver", prov.driver)) if v is not None]
    return f"{host}/{_device(prov)}" + (f" [{', '.join(extra)}]" if prov.aten_cpu_capability else "")


def machine_label(prov: Provenance) -> str:
    """``NVIDIA H100 80GB HBM3 ×1 (host)`` or ``Intel Xeon … (2 CPUs, host)``."""
    host = prov.hostname or "unknown host"
    if prov.gpu_name:
        return f"{prov.gpu_name} ×{prov.gpu_count or 1} ({host})"
    cpus = f"{prov.cpu_count} CPUs, " if prov.cpu_count else ""
    return f"{prov.cpu_model or 'unknown CPU'} ({cpus}{host})"


def _device(prov: Provenance) -> str:
    if prov.gpu_name:
        return f"{prov.gpu_name} x{prov.gpu_count or 1}"
    return f"{prov.cpu_model or 'cpu'} x{prov.cpu_count or '?'}"


def host_provenance(results: list[RunResult]) -> Provenance:
    """The provenance of the first run that recorded its host (all runs of a campaign share the machine)."""
    return next((r.provenance for r in results if r.provenance.hostname), Provenance())


def preset_label(preset: str, budget: dict) -> str:
    """The preset, plus ours' non-default arithmetic if the campaign ran it (a fast-setting campaign is not the
    preset's headline: the README keeps one row per label)."""
    return f"{preset} + fast setting" if (budget or {}).get("fast_setting") else preset


def campaign_facts(campaign, results: list[RunResult]) -> dict:
    """Id, preset, creation time, machine and both commits: what every listing of a campaign shows."""
    prov = host_provenance(results)
    ours = next((r.provenance for r in results if r.provenance.ours_sha), Provenance())
    up = next((r.provenance.upstream_sha for r in results if r.provenance.upstream_sha), None)
    return {"campaign_id": campaign.campaign_id, "preset": preset_label(campaign.preset, campaign.budget), "created": campaign.created_utc or fmt.NA,
            "machine": machine_label(prov), "ours_sha": fmt.short_sha(ours.ours_sha, ours.ours_dirty),
            "upstream_sha": fmt.short_sha(up)}
