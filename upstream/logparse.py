"""Upstream base_train's stdout, line by line, into protocol.events records (step, eval, final).

Fed one line at a time so the harness can show progress live; unknown lines are ignored (the runner keeps
the raw log). Lines upstream prints, at the pinned commit (ANSI colour codes are stripped first)::

    step 00011/00020 (55.00%) | loss: 8.349106 | lrm: 0.70 | dt: 2059.78ms | tok/sec: 497 | bf16_mfu: 0.00 | ...
    Step 00010 | Validation bpb: 3.102283          (or, at later revisions, the record ``eval step=10 val_bpb=3.102283``)
    Parameter counts: / wte    : 1,048,576 / ... / total : 7,340,114
    Total batch size 1,024 => gradient accumulation steps: 1
    Peak memory usage: 0.00MiB / Total training time: 0.18m / Minimum validation bpb: 3.067541

Where upstream's checkpoint meta_*.json is available it gives exact values the log rounds (training time,
minimum bpb). ``loss`` is upstream's printed debiased EMA; ``loss_raw`` is recovered from two consecutive
printed EMAs (l_k = (s_k - 0.9 s_{k-1}) / 0.1 with s_k = printed_k (1 - 0.9^(k+1))), good to about 1e-5.
"""
from __future__ import annotations

import math
import re
from typing import Iterable

from protocol.events import Event, EvalEvent, FinalEvent, StepEvent
from protocol.upstream_output import EMA_BETA
from upstream.errors import UpstreamError

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STEP = re.compile(r"^step (\d+)/(\d+) \(")
_EVAL = re.compile(r"^Step (\d+) \| Validation bpb: (\S+)")
# the same quantities as a key=value record (upstream's experiment_refactor branch: ``eval step=N ... val_bpb=X``)
_EVAL_RECORD = re.compile(r"^eval (?=.*\bstep=(\d+)\b)(?=.*\bval_bpb=(\S+))")
_PARAM = re.compile(r"^(\w+)\s+: ([\d,]+)$")

# (pattern, fact name, converter): one-off lines whose value goes into FinalEvent.extra
_FACTS = [
    (re.compile(r"^Estimated FLOPs per token: (\S+)"), "flops_per_token", float),
    (re.compile(r"^Total batch size ([\d,]+) =>"), "total_batch_size", lambda s: int(s.replace(",", ""))),
    (re.compile(r"gradient accumulation steps: (\d+)"), "grad_accum_steps", int),
    (re.compile(r"^Tokens / micro-batch: ([\d,]+)"), "tokens_per_micro_batch", lambda s: int(s.replace(",", ""))),
    (re.compile(r"^Vocab size: ([\d,]+)"), "vocab_size", lambda s: int(s.replace(",", ""))),
    (re.compile(r"^COMPUTE_DTYPE: (\S+)"), "compute_dtype", str),
    (re.compile(r"Distributed world size: (\d+)"), "world_size", int),
    (re.compile(r"^GPU: (.+) \| Peak FLOPS"), "gpu", str),
    (re.compile(r"Using (Flash Attention 3)"), "attention", lambda s: "fa3"),
    (re.compile(r"(PyTorch SDPA fallback)"), "attention", lambda s: "sdpa"),
    (re.compile(r"^Scaling weight decay from \S+ to (\S+)"), "weight_decay_scaled", float),
    (re.compile(r"^Peak memory usage: ([\d.]+)MiB"), "peak_mem_mib", float),
    (re.compile(r"^Total training time: ([\d.]+)m"), "train_time_printed_min", float),
    (re.compile(r"^Minimum validation bpb: (\S+)"), "min_val_bpb_printed", float),
]


class LogParser:
    """Turns upstream's output into events as it arrives; ``finish()`` adds the final record."""

    def __init__(self, commit: str | None = None):
        self.commit = commit or "an unknown commit"
        self.events: list[Event] = []
        self.facts: dict = {}
        self.param_counts: dict[str, int] = {}
        self.last_line = ""
        self._in_params = False
        self._ema: tuple[int, float] | None = None  # (step, un-debiased EMA) of the previous step line

    def feed(self, line: str, t_s: float | None = None) -> list[Event]:
        """Parse one line; returns the events it completed (usually none or one)."""
        text = _ANSI.sub("", line).strip()
        if text:
            self.last_line = text
        if self._params(text):
            return []
        step, evaluation = _STEP.match(text), _EVAL.match(text) or _EVAL_RECORD.match(text)
        if step:
            return self._add(self._step(text, int(step.group(1)), int(step.group(2)), t_s))
        if evaluation:
            return self._add(EvalEvent(step=int(evaluation.group(1)), val_bpb=float(evaluation.group(2)), t_s=t_s))
        self._fact(text)
        return []

    def feed_all(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.feed(line)

    def _add(self, event: Event) -> list[Event]:
        self.events.append(event)
        return [event]

    def _params(self, text: str) -> bool:
        """The 'Parameter counts:' block: a header, then 'name : 1,234' lines until anything else."""
        if text == "Parameter counts:":
            self._in_params = True
            return True
        match = _PARAM.match(text) if self._in_params else None
        if match:
            self.param_counts[match.group(1)] = int(match.group(2).replace(",", ""))
        self._in_params = bool(match)
        return bool(match)

    def _fact(self, text: str) -> None:
        for pattern, name, convert in _FACTS:
            match = pattern.search(text)
            if match:
                self.facts[name] = convert(match.group(1))

    def _step(self, text: str, step: int, total: int, t_s: float | None) -> StepEvent:
        fields = dict(part.split(": ", 1) for part in text.split(" | ")[1:] if ": " in part)
        try:
            loss, lrm = float(fields["loss"]), float(fields["lrm"])
            dt_s = float(fields["dt"].removesuffix("ms")) / 1000
            tokens_per_s = float(fields["tok/sec"].replace(",", ""))
            mfu = float(fields["bf16_mfu"]) if "bf16_mfu" in fields else None
        except (KeyError, ValueError) as e:
            raise UpstreamError(f"upstream step line {text[:60]!r}... lacks or garbles {e} (commit {self.commit}): "
                                f"its log format changed; update upstream/logparse.py") from None
        self.facts["num_iterations"] = total
        return StepEvent(step=step, loss=loss, lrm=lrm, dt_s=dt_s, tokens_per_s=tokens_per_s,
                         loss_raw=self._raw_loss(step, loss), mfu=mfu or None, t_s=t_s)  # 0 mfu = "unknown" upstream

    def _raw_loss(self, step: int, debiased: float) -> float | None:
        """Undo the EMA: only from step 0 on and for consecutive steps (not after a resume or a gap)."""
        ema = debiased * (1 - EMA_BETA ** (step + 1))
        previous = 0.0 if step == 0 else (self._ema[1] if self._ema and self._ema[0] == step - 1 else None)
        self._ema = (step, ema) if step == 0 or previous is not None else None
        return None if previous is None else (ema - EMA_BETA * previous) / (1 - EMA_BETA)

    # --- the end -------------------------------------------------------------------------------------------
    def steps(self) -> list[StepEvent]:
        return [e for e in self.events if isinstance(e, StepEvent)]

    def finish(self, meta: dict | None = None) -> list[Event]:
        """All events, the final record last. ``meta`` is upstream's checkpoint meta_*.json, if kept."""
        steps = self.steps()
        if not steps:
            raise UpstreamError(f"no training step line found in upstream's log (commit {self.commit}): "
                                f"its log format changed or the run died early; see the raw log")
        batch = self.facts.get("total_batch_size") or (meta or {}).get("total_batch_size")
        if not batch:
            raise UpstreamError(f"upstream's log has no 'Total batch size' line (commit {self.commit}): "
                                f"its log format changed; update upstream/logparse.py")
        self._fill_eval_tokens(meta)
        n = steps[-1].step + 1
        loop = (meta or {}).get("loop_state", {})
        final = FinalEvent(steps=n, tokens=n * batch, train_time_s=self._train_time(loop),
                           peak_mem_bytes=self._peak_mem(), min_val_bpb=self._min_bpb(loop),
                           param_counts=dict(self.param_counts) or None, extra=self._extra(steps, meta),
                           t_s=self.events[-1].t_s)
        return [*self.events, final]

    def _train_time(self, loop: dict) -> float:
        if "total_training_time" in loop:
            return float(loop["total_training_time"])
        return self.facts.get("train_time_printed_min", math.nan) * 60

    def _peak_mem(self) -> int | None:
        mib = self.facts.get("peak_mem_mib")
        return int(round(mib * 2**20)) if mib else None  # upstream prints 0 off CUDA: unknown, not zero

    def _min_bpb(self, loop: dict) -> float | None:
        value = loop.get("min_val_bpb", self.facts.get("min_val_bpb_printed"))
        return float(value) if value is not None and math.isfinite(value) else None

    def _fill_eval_tokens(self, meta: dict | None) -> None:
        wanted = ((meta or {}).get("user_config") or {}).get("eval_tokens")
        per_step = self.facts.get("tokens_per_micro_batch")
        if wanted and per_step:
            for e in self.events:
                if isinstance(e, EvalEvent):
                    e.eval_tokens = (wanted // per_step) * per_step

    def _extra(self, steps: list[StepEvent], meta: dict | None) -> dict:
        dts = [s.dt_s for s in steps]
        extra = {k: v for k, v in self.facts.items() if k not in ("peak_mem_mib",)}
        extra.update(commit=self.commit, dt_sum_s=sum(dts),
                     dt_sum_after_step10_s=sum(s.dt_s for s in steps if s.step > 10),
                     train_time_counts="steps > 10 only (upstream's own total)",
                     loss_raw_recovered_from_ema=any(s.loss_raw is not None for s in steps))
        if meta is not None:
            extra["checkpoint_meta"] = meta
        return extra


def parse_lines(lines: Iterable[str], commit: str | None = None, meta: dict | None = None) -> list[Event]:
    """All events of a finished log, the final record last."""
    parser = LogParser(commit)
    parser.feed_all(lines)
    return parser.finish(meta)
