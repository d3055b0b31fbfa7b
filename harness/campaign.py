"""Set up and run a whole campaign: arms, upstream checkout, data workspace, MFU basis, provenance, the runs, and
the cross-arm comparison — the one entry point the CLI's ``run`` and ``benchmark`` (and nightly) call.

``start`` makes a new campaign from a CampaignSetup; ``resume`` continues one from its campaign.json, rebuilding
the same arms (the same upstream commit included) and skipping runs that already have an ok result.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import dataprep, interference, provenance
from harness.adapters import registry
from harness.adapters.base import Adapter
from harness.adapters.command import CommandSpec
from harness.budget import Budget
from harness.lock import Locked, exclusive
from harness.process import ProcessOptions
from harness.progress import for_terminal
from harness.results import HIDDEN_SOURCE, Campaign
from harness.runner import CampaignInterrupted, CampaignRunner, RunnerContext, new_campaign, runs_to_do
from harness.summarize import PeakFlops, gpu_peak, measure_cpu_matmul_peak
from harness.telemetry import GpuProbe, GpuUnavailable
from protocol.files import UnsafePath, check_name
from upstream.pin import ENV_SOURCE, PINNED_COMMIT

DEFAULT_ROOT = Path("campaigns")
LOCK_NAME = "campaign.lock"
AA_SUFFIX = "aa"      # the second copy of an arm in an A/A campaign is named "<arm>:aa"


class SetupError(ValueError):
    """A campaign that cannot start as asked; one line naming the option to change."""


@dataclass
class CampaignSetup:
    budget: Budget
    preset: str                                   # the name recorded (a preset, or the budget file's name)
    impls: list[str] = field(default_factory=lambda: [registry.CANDIDATE, registry.BASELINE])
    command: CommandSpec | None = None
    upstream_source: str | None = None            # URL or path; None = $NANOCHAT_UPSTREAM or the public URL
    upstream_ref: str | None = None               # None = the pinned commit
    upstream_cache: str | None = None
    out_root: Path = DEFAULT_ROOT
    campaign_id: str | None = None
    workspace_root: Path | None = None            # data workspaces; None = <cache>/data
    compile_cache: Path | None = None             # upstream's torch.compile cache; None = inside the campaign dir
    gpus: list[int] | None = None
    rdzv_endpoint: str | None = None
    verbose: bool = False
    quiet: bool = False
    measure_peak: bool = True                     # CPU: measure the fp32 matmul peak for MFU (about a second)
    argv: list[str] | None = None
    require_idle: bool = False                    # wait (bounded) for an idle machine, else refuse to start
    target_bpb: float | str | None = None         # matched-quality target (None: the baseline's final BPB;
                                                  # "baseline": that default again after a given one)
    ref_shas: dict[str, str] | None = None        # ours@REF arms: the commit each ref resolved to (resume)


def start(setup: CampaignSetup) -> tuple[Path, Campaign]:
    """Create and run a new campaign; returns its directory and final state."""
    check_setup(setup)
    adapters = build_adapters(setup)
    _check_idle(setup)
    checkout = _attach_checkout(setup, adapters)
    cdir, campaign = new_campaign(setup.out_root, setup.budget, setup.preset, list(adapters),
                                  arms_config=_arms_config(adapters, setup), campaign_id=setup.campaign_id)
    with campaign_lock(cdir):
        return cdir, _execute(cdir, campaign, adapters, setup, checkout)


def check_setup(setup: CampaignSetup) -> None:
    """What can be checked before anything is created or cloned: the campaign id is one folder name."""
    if setup.campaign_id is not None:
        try:
            check_name(setup.campaign_id, "--campaign-id")
        except UnsafePath as e:
            raise SetupError(str(e)) from None
    check_dirs(setup)


def check_dirs(setup: CampaignSetup) -> None:
    """Each folder the campaign will write (results root, data workspace, compile cache, clone cache) can be a
    writable directory: its nearest existing part is a directory we may write into."""
    wanted = [("--out", setup.out_root), ("--workspace", setup.workspace_root),
              ("--compile-cache", setup.compile_cache), ("--upstream-cache", setup.upstream_cache)]
    for option, path in wanted:
        if path is None:
            continue
        path = Path(path).expanduser()
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise SetupError(f"{option} {path}: {existing} is a file, not a directory; pass a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise SetupError(f"{option} {path}: {existing} is not writable; pass a directory you can write to")


def resume(campaign_dir: str | Path, setup_overrides: dict | None = None) -> tuple[Path, Campaign]:
    """Run the runs of an existing campaign that have no ok result yet (none: nothing is checked out, prepared or
    written). ``setup_overrides["upstream_source"]`` is where to fetch the recorded upstream commit from."""
    cdir = Path(campaign_dir).expanduser().resolve()
    overrides = dict(setup_overrides or {})
    with campaign_lock(cdir):   # read under the lock: another process may have just finished runs
        campaign = Campaign.load(cdir)
        setup = _setup_from(campaign, **overrides)
        check_dirs(setup)
        adapters = build_adapters(setup)
        _check_upstream_source(campaign, setup, adapters, given="upstream_source" in overrides)
        todo = runs_to_do(cdir, campaign)
        if not todo:
            return cdir, campaign
        _check_hidden_source(campaign, setup, adapters, todo)
        _check_idle(setup)
        checkout = _attach_checkout(setup, adapters)
        return cdir, _execute(cdir, campaign, adapters, setup, checkout)


def _needs_checkout(setup: CampaignSetup, adapters: dict[str, Adapter]) -> bool:
    return any(a.needs_checkout for a in adapters.values()) or setup.budget.dataset == "climbmix"


def _check_upstream_source(campaign: Campaign, setup: CampaignSetup, adapters: dict[str, Adapter],
                           given: bool) -> None:
    """--upstream on a resume says where the recorded commit is; a campaign that never uses upstream refuses it."""
    if given and not _needs_checkout(setup, adapters):
        raise SetupError(f"--upstream with --resume: campaign {campaign.campaign_id} has no upstream arm and needs "
                         f"no upstream code; leave --upstream out")


def _check_hidden_source(campaign: Campaign, setup: CampaignSetup, adapters: dict[str, Adapter],
                         todo: list[str]) -> None:
    """A published copy records a local upstream path as HIDDEN_SOURCE: runs still to do need a real one."""
    if setup.upstream_source != HIDDEN_SOURCE or not _needs_checkout(setup, adapters):
        return
    if os.environ.get(ENV_SOURCE):
        setup.upstream_source = os.environ[ENV_SOURCE]
        return
    runs = ", ".join(todo[:3]) + (f" and {len(todo) - 3} more" if len(todo) > 3 else "")
    raise SetupError(f"campaign {campaign.campaign_id} has runs to do ({runs}) and records its upstream source as "
                     f"{HIDDEN_SOURCE} (a published copy); resume with --upstream URL|PATH, a nanochat clone "
                     f"holding commit {setup.upstream_ref}")


class CampaignLocked(SetupError):
    """Another process is running this campaign."""


@contextmanager
def campaign_lock(cdir: Path):
    """Only one process runs a campaign's runs at a time (CAMPAIGN/campaign.lock, freed when its holder exits)."""
    try:
        with exclusive(Path(cdir) / LOCK_NAME, f"campaign {Path(cdir).name} is being run by another process"):
            yield
    except Locked as e:
        raise CampaignLocked(str(e)) from None


def _check_idle(setup: CampaignSetup) -> None:
    if not setup.require_idle:
        return
    try:
        interference.require_idle(say=(lambda _line: None) if setup.quiet else print)
    except interference.BusyMachine as e:
        raise SetupError(str(e)) from None


def build_adapters(setup: CampaignSetup) -> dict[str, Adapter]:
    """The campaign's arms, each checked against the budget (before anything slow, such as a clone, happens)."""
    adapters: dict[str, Adapter] = {}
    for impl in setup.impls:
        if not registry.is_arm(impl):
            raise SetupError(f"--impl {impl!r} is unknown; use a comma list of {', '.join(registry.ARMS)} "
                             f"or ours@REF (a git ref of this project)")
        adapter = registry.build(impl, setup)
        if adapter.name in adapters:      # A/A: the same arm on both sides (--impl ours,ours) measures the noise
            adapter.name = f"{adapter.name}:{AA_SUFFIX}"
        adapters[adapter.name] = adapter
    for adapter in adapters.values():
        adapter.check(setup.budget)
    return adapters


def _attach_checkout(setup: CampaignSetup, adapters: dict[str, Adapter]):
    checkout = _checkout(setup)
    for adapter in adapters.values():
        if adapter.needs_checkout:
            adapter.checkout = checkout
            adapter.check_checkout()  # upstream moved in a way the harness cannot bridge: stop before any data
    return checkout


def _checkout(setup: CampaignSetup):
    """upstream.source.Checkout when an arm runs upstream's code or climbmix must be downloaded, else None."""
    arm_needs = any(registry.arm_class(impl).needs_checkout for impl in setup.impls if registry.is_arm(impl))
    if not arm_needs and setup.budget.dataset != "climbmix":
        return None
    from upstream import source
    try:
        return source.checkout(setup.upstream_source, setup.upstream_ref or PINNED_COMMIT, setup.upstream_cache)
    except source.UpstreamError:
        if arm_needs:
            raise
        return None   # climbmix for our arm only: dataprep falls back to the embedded corpus with a warning


def _arms_config(adapters: dict[str, Adapter], setup: CampaignSetup) -> dict[str, dict]:
    return {name: adapter.config() for name, adapter in adapters.items()}


def _setup_from(campaign: Campaign, **overrides) -> CampaignSetup:
    """The setup that rebuilds a recorded campaign's arms (the same upstream commit included)."""
    impls, fields = [], {}
    for name, cfg in campaign.arms.items():
        cls = registry.arm_class(name)
        if cls is None:
            raise SetupError(f"campaign {campaign.campaign_id} has an arm {name!r} this version does not know; "
                             f"resume it with the nanochat-bench release that started it")
        impls.append(name.split(":", 1)[0])   # "ours:aa" -> ours; "ours@REF" stays (a ref has no ':')
        for key, value in cls.setup_fields(cfg).items():   # ours@REF arms each add their commit to ref_shas
            fields[key] = {**fields.get(key, {}), **value} if key == "ref_shas" else value
    budget = Budget.from_dict(campaign.budget, source=f"campaign {campaign.campaign_id}")
    setup = CampaignSetup(budget=budget, preset=campaign.preset, impls=impls, **fields)
    for key, value in overrides.items():
        setattr(setup, key, value)
    return setup


def _execute(cdir: Path, campaign: Campaign, adapters: dict[str, Adapter], setup: CampaignSetup,
             checkout) -> Campaign:
    budget = setup.budget
    base_dir, data, warnings = dataprep.prepare(budget, _workspace_root(setup), checkout.path if checkout else None)
    campaign.notes.extend(w for w in warnings if w not in campaign.notes)
    peak, gpu_names = _peak(budget, setup)
    campaign.machine.update(_machine(peak, gpu_names))
    up = {"sha": checkout.sha, "ref": checkout.ref, "clean": checkout.clean} if checkout else None
    ctx = RunnerContext(base_dir=base_dir, data=data, rdzv_endpoint=setup.rdzv_endpoint, peak=peak,
                        provenance=_base_provenance(setup, up, gpu_names),
                        options=ProcessOptions(verbose=setup.verbose, gpus=setup.gpus,
                                               watch_gpus=budget.device == "cuda"),
                        progress=for_terminal(quiet=setup.quiet or setup.verbose))
    try:
        CampaignRunner(cdir, campaign, adapters, ctx).run()
    except CampaignInterrupted:
        campaign.save(cdir)
        raise
    campaign.comparison = compare(cdir, campaign, target_bpb=setup.target_bpb)
    campaign.finished_utc = provenance.utc_now()
    campaign.save(cdir)
    return campaign


def _workspace_root(setup: CampaignSetup) -> Path:
    if setup.workspace_root:
        return Path(setup.workspace_root).expanduser().resolve()
    from upstream.source import cache_root
    return cache_root(setup.upstream_cache) / "data"


def _peak(budget: Budget, setup: CampaignSetup) -> tuple[PeakFlops | None, list[str]]:
    """The MFU basis: table peak of the GPUs in use, or this CPU's measured fp32 matmul peak."""
    if budget.device == "cuda":
        try:
            probe = GpuProbe.open(setup.gpus)
        except GpuUnavailable:
            return None, []
        names = probe.names()
        probe.close()
        return gpu_peak(names[:budget.nproc_per_node]), names
    return (measure_cpu_matmul_peak() if setup.measure_peak else None), []


def _machine(peak: PeakFlops | None, gpu_names: list[str]) -> dict:
    facts = provenance.torch_facts()
    return {"cpu_model": provenance.cpu_model(), "cpu_count": os.cpu_count(), "gpus": gpu_names,
            "aten_cpu_capability": facts.get("aten_cpu_capability"), "torch": facts.get("torch"),
            "torch_threads": facts.get("torch_threads"), "driver": provenance.driver_version(),
            "peak_flops": peak.flops_per_s if peak else None, "peak_flops_basis": peak.basis if peak else None}


def _base_provenance(setup: CampaignSetup, upstream: dict | None, gpu_names: list[str]):
    p = provenance.collect(setup.argv, upstream=upstream)
    if gpu_names:
        p.gpu_name, p.gpu_count = gpu_names[0], len(setup.gpus) if setup.gpus is not None else len(gpu_names)
    return p


def compare(cdir: Path, campaign: Campaign, target_bpb: float | None = None) -> dict | None:
    """campaign.comparison (serialised) from harness.compare (ratios, CIs, verdicts, audit), from the campaign in
    memory and the run results on disk.

    A comparison that fails leaves the runs' results intact: the error goes into the campaign's notes and
    `nanochat-bench report` (or harness.compare.compare_campaign_dir) can redo it later.
    """
    from harness.compare import compare_campaign_dir
    try:
        return compare_campaign_dir(cdir, save=False, campaign=campaign, target_bpb=target_bpb).to_dict()
    except Exception as e:  # noqa: BLE001 - keep hours of results even if the statistics step breaks
        campaign.notes.append(f"comparison failed: {type(e).__name__}: {e}")
        return None
