"""A campaign's identity: the machine it ran on (a stable key for history and nightly, a label for people)
and the commits of both arms."""
from __future__ import annotations

from harness.report import fmt
from harness.results import Provenance, RunResult


def machine_key(prov: Provenance) -> str:
    """``host/device``: the same host with the same accelerator (or CPU) gives the same key night after night."""
    host = prov.hostname or "unknown-host"
    return f"{host}/{_device(prov)}"


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


def campaign_facts(campaign, results: list[RunResult]) -> dict:
    """Id, preset, creation time, machine and both commits: what every listing of a campaign shows."""
    prov = host_provenance(results)
    ours = next((r.provenance for r in results if r.provenance.ours_sha), Provenance())
    up = next((r.provenance.upstream_sha for r in results if r.provenance.upstream_sha), None)
    return {"campaign_id": campaign.campaign_id, "preset": campaign.preset, "created": campaign.created_utc or fmt.NA,
            "machine": machine_label(prov), "ours_sha": fmt.short_sha(ours.ours_sha, ours.ours_dirty),
            "upstream_sha": fmt.short_sha(up)}
