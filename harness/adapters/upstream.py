"""The upstream arm: karpathy/nanochat's own scripts.base_train, run through upstream/run.py's UpstreamLaunch.

``upstream_flags`` is the one place a Budget becomes base_train flags. Upstream prints rather than writes
events: its stdout is parsed line by line (upstream/logparse.py) while it runs, and after the run its own
output is checked against the budget (upstream/verify.py); every mismatch becomes an audit line and makes the
run invalid for parity. Upstream has no seed flag (it is fixed at 42 in its code): its repeats differ in timing only.
"""
from __future__ import annotations

from harness.adapters.base import Adapter, AdapterError, Launch, LineParser, Outcome, RunRequest
from harness.budget import Budget
from protocol.events import Event
from upstream import revision, verify
from upstream.errors import UpstreamError
from upstream.logparse import LogParser


def upstream_flags(b: Budget) -> dict:
    """base_train flags for a budget (the upstream module adds run name, model tag, CORE/sampling off)."""
    return {"depth": b.depth, "aspect-ratio": b.aspect_ratio, "head-dim": b.head_dim, "max-seq-len": b.max_seq_len,
            "window-pattern": b.window_pattern, "device-batch-size": b.device_batch_size,
            "total-batch-size": b.total_batch_size, "num-iterations": b.iterations,
            "warmup-steps": b.warmup_steps, "warmdown-ratio": b.warmdown_ratio, "final-lr-frac": b.final_lr_frac,
            "eval-every": b.eval_every, "eval-tokens": b.eval_tokens, "device-type": b.device}


class UpstreamAdapter(Adapter):
    name = "upstream"
    role = "baseline"
    needs_checkout = True
    prints_rounded_lrm = True

    def __init__(self, checkout=None, compile_cache=None):
        self.checkout = checkout            # upstream.source.Checkout; set before the first launch
        self.compile_cache = compile_cache  # TMPDIR + TORCHINDUCTOR_CACHE_DIR root; None = <campaign>/upstream-cache
        self.revision = None                # upstream.revision.Revision of the checkout, read by check_checkout
        self._launches: dict[str, object] = {}
        self._parsers: dict[str, object] = {}

    @classmethod
    def from_setup(cls, setup) -> "UpstreamAdapter":
        return cls(checkout=None, compile_cache=setup.compile_cache)

    def config(self) -> dict:
        co = self.checkout
        return {"source": co.source, "ref": co.ref, "sha": co.sha}

    @staticmethod
    def setup_fields(config: dict) -> dict:
        return {"upstream_source": config.get("source"), "upstream_ref": config.get("sha")}  # the same commit

    def check(self, budget: Budget) -> None:
        if budget.device == "cpu" and budget.world_size > 1:
            raise AdapterError(f"upstream on CPU is not data parallel (it makes no process group: its "
                               f"{budget.world_size} processes would train separate copies); use nproc_per_node=1 "
                               f"on CPU or run on CUDA")
        if budget.nnodes > 1:
            raise AdapterError("upstream runs on one node (torchrun --standalone); use nnodes=1")
        if budget.warmdown_eval_every:
            raise AdapterError(f"upstream's --eval-every is a fixed cadence (a denser warmdown cadence would need a "
                               f"patch of its loop): set warmdown_eval_every=0 and a denser eval_every for both arms "
                               f"(budget warmdown_eval_every={budget.warmdown_eval_every})")

    def check_checkout(self) -> None:
        """Read the checked-out revision (upstream/revision.py) and refuse it, in one line raised as
        revision.UpstreamChanged, when it differs in a way the harness cannot bridge."""
        self.revision = revision.read(self.checkout.path, self.checkout.sha)
        self.revision.check()

    def _launch_for(self, req: RunRequest):
        from upstream.run import UpstreamLaunch  # here: it loads pyarrow (the data workspace)
        if req.run_id not in self._launches:
            b = req.budget
            try:
                self._launches[req.run_id] = UpstreamLaunch(
                    checkout=self.checkout.path, base_dir=req.base_dir, run_dir=req.run_dir, flags=upstream_flags(b),
                    warmdown_shape=b.warmdown_shape, muon_weight_decay_off=b.muon_weight_decay_off,
                    nproc=b.nproc_per_node, keep_checkpoint=b.keep_checkpoints,
                    cache_dir=self.compile_cache or req.campaign_dir / "upstream-cache", commit=self.checkout.sha,
                    **self._revision_launch())
            except UpstreamError as e:
                raise AdapterError(str(e)) from None
        return self._launches[req.run_id]

    def _revision_launch(self) -> dict:
        """Layout and flag spelling of the revision read by check_checkout (the campaign calls it when it attaches
        the checkout); an adapter driven directly, without that, launches with the pin's layout and spelling."""
        rev = self.revision
        if rev is None:
            return {}
        return {"layout": rev.layout, "spelling": {k: v for k, v in rev.spelling.items() if k != v}}

    def launch(self, req: RunRequest) -> Launch:
        if req.base_dir is None:
            raise AdapterError("upstream needs a data workspace (base_dir); the runner prepares one before the runs")
        ul = self._launch_for(req)
        ul.prepare()
        return Launch(command=ul.command(), env=ul.env(), cwd=self.checkout.path)

    def line_parser(self, req: RunRequest) -> LineParser:
        parser = self._parsers[req.run_id] = LogParser(commit=self.checkout.sha)
        return parser.feed

    def finish(self, req: RunRequest, events: list[Event], returncode: int | None) -> Outcome:
        """Collect the final event (and drop the checkpoint unless kept), then check the run against the budget."""
        if returncode != 0:
            return Outcome()
        try:
            events = self._launch_for(req).collect(self._parsers.get(req.run_id))
        except UpstreamError as e:
            raise AdapterError(str(e)) from None
        return Outcome(audit=self._verify(req, events))

    def _verify(self, req: RunRequest, events: list[Event]) -> list[str]:
        """upstream/verify.py's mismatches between the run's own output and the budget (steps, batch, LR trace)."""
        b = req.budget
        expected = verify.Expected(num_iterations=b.iterations, total_batch_size=b.total_batch_size,
                                   warmup_steps=b.warmup_steps, warmdown_ratio=b.warmdown_ratio,
                                   final_lr_frac=b.final_lr_frac, shape=b.warmdown_shape)
        return verify.mismatches(events, expected)

    def provenance(self) -> dict:
        co = self.checkout
        out = {"upstream_sha": co.sha, "upstream_ref": co.ref, "upstream_clean": co.clean}
        if self.revision is not None:
            out["upstream_revision"] = self.revision.record()  # what was read, adapted or refused
        return out
