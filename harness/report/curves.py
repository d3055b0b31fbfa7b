"""The report's curves: val BPB against steps and tokens, training loss, tokens/sec and memory over time.

Each chart becomes ``{"name", "title", "svg", "file"}`` in the context: the HTML page inlines ``svg``, the
Markdown file links ``file`` (the same SVG written beside it). A curve with no data is left out and named in
``missing`` so the report says so instead of drawing an empty frame.
"""
from __future__ import annotations

from harness.report.charts import Series, line_chart
from harness.report.load import CampaignData, RunData

MIB = 2 ** 20


def run_label(run: RunData) -> str:
    r = run.result
    return f"{r.implementation} s{r.seed} r{r.repeat}"


def _series(data: CampaignData, xy) -> list[Series]:
    out = []
    for run in data.runs:
        x, y = xy(run)
        out.append(Series(label=run_label(run), group=run.result.implementation, x=x, y=y))
    return out


def _bpb_by_step(run: RunData):
    evals = run.evals
    return [e.step for e in evals], [e.val_bpb for e in evals]


def _bpb_by_tokens(batch_tokens: int):
    def xy(run: RunData):
        evals = run.evals
        return [e.step * batch_tokens for e in evals], [e.val_bpb for e in evals]
    return xy


def _loss(run: RunData):
    steps = [s for s in run.steps if s.loss is not None]
    return [s.step for s in steps], [s.loss for s in steps]


def _tokens_per_s(run: RunData):
    steps = [s for s in run.steps if s.tokens_per_s is not None]
    return [s.step for s in steps], [s.tokens_per_s for s in steps]


def _memory(key: str):
    def xy(run: RunData):
        rows = [t for t in run.telemetry if t.get(key) is not None and t.get("t_s") is not None]
        return [t["t_s"] for t in rows], [t[key] / MIB for t in rows]
    return xy


def _specs(data: CampaignData) -> list[tuple]:
    batch = int(data.campaign.budget.get("total_batch_size") or 0)
    return [
        ("val_bpb_step", "Validation BPB by step", "step", "val bits per byte", _bpb_by_step),
        ("val_bpb_tokens", "Validation BPB by training tokens", "tokens", "val bits per byte", _bpb_by_tokens(batch)),
        ("train_loss", "Training loss (debiased EMA)", "step", "loss (nats)", _loss),
        ("tokens_per_s", "Throughput by step", "step", "tokens / s", _tokens_per_s),
        ("host_memory", "Host memory (RSS, process tree) over time", "seconds since start", "MiB", _memory("rss_bytes")),
        ("gpu_memory", "GPU memory used over time", "seconds since start", "MiB", _memory("gpu_mem_used_bytes")),
    ]


def curves(data: CampaignData) -> tuple[list[dict], list[str]]:
    """The drawable charts and the titles of the ones without data."""
    charts, missing = [], []
    for name, title, xlabel, ylabel, xy in _specs(data):
        svg = line_chart(name, title, xlabel, ylabel, _series(data, xy))
        if svg is None:
            missing.append(title)
        else:
            charts.append({"name": name, "title": title, "svg": svg, "file": f"charts/{name}.svg"})
    return charts, missing
