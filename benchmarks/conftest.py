"""Fixtures of the micro-benchmarks: the shape (--bench-config / $NANOCHAT_MICROBENCH), a small real data dir, the two
sides (upstream skipped with the reason when no clone is reachable), and the side-by-side table at the end."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.shapes import ENV_CONFIG, PRESETS, ShapeError, chosen_config, parse_bench_config
from benchmarks.sides import Ours, Upstream
from benchmarks.summary import SIDES, Timing, side_by_side

REPO = Path(__file__).resolve().parents[1]
WARMUP_CALLS = 1           # an untimed call first: upstream compiles its optimizer kernels on its first step
CORPUS_CHARS = 600_000     # ~900 documents of Python's own text: enough for three shards
SHAPE_KEY = pytest.StashKey()
TIMINGS_KEY = pytest.StashKey()

# upstream's optimizer is torch.compiled: keep Inductor's cache (~150 MB) in the repo's ignored .cache, reused next run.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(REPO / ".cache" / "microbench" / "inductor"))


def pytest_addoption(parser):
    parser.getgroup("nanochat-bench microbench").addoption(
        "--bench-config", default=None, metavar="PRESET[,KEY=VALUE...]",
        help=f"shape of every micro-benchmark: a preset ({', '.join(PRESETS)}) and overrides, e.g. "
             f"'cpu,depth=6' or 'gpu'. Default: ${ENV_CONFIG}, else 'cpu'.")


def pytest_configure(config):
    try:
        shape = parse_bench_config(chosen_config(config.getoption("bench_config")))
        shape.check_device()
        shape.apply_threads()
    except ShapeError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[SHAPE_KEY] = shape
    config.stash[TIMINGS_KEY] = []


def pytest_report_header(config):
    import torch
    return f"microbench shape: {config.stash[SHAPE_KEY].describe()} (torch threads: {torch.get_num_threads()})"


@pytest.fixture(scope="session")
def shape(pytestconfig):
    return pytestconfig.stash[SHAPE_KEY]


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory, shape) -> Path:
    """A real nanochat base dir: three parquet shards of Python's own docs and a tokenizer of the shape's vocab."""
    from tests.helpers_data import make_base_dir, stdlib_texts
    return make_base_dir(tmp_path_factory.mktemp("base"), stdlib_texts(CORPUS_CHARS), vocab_size=shape.vocab)


@pytest.fixture(scope="session")
def upstream_clone() -> Path:
    """The pinned upstream work tree ($NANOCHAT_UPSTREAM or the clone cache), or a skip saying how to get one."""
    from upstream import source
    from upstream.pin import ENV_SOURCE, PINNED_COMMIT
    try:
        clone = source.find_for_tests(PINNED_COMMIT)
    except source.UpstreamError as e:
        pytest.skip(f"upstream side skipped: {e}")
    if clone is None:
        pytest.skip(f"upstream side skipped: no upstream nanochat source reachable; set {ENV_SOURCE} to a URL or "
                    "local clone of karpathy/nanochat (or fill the clone cache with one campaign run)")
    return clone


@pytest.fixture(scope="session")
def _sides(request, shape) -> dict:
    return {}


@pytest.fixture(params=SIDES)
def side(request, shape, _sides):
    """Ours or upstream, made once per session; function-scoped so each component runs ours then upstream."""
    if request.param not in _sides:
        if request.param == "ours":
            _sides["ours"] = Ours(shape)
        else:
            clone, data = request.getfixturevalue("upstream_clone"), request.getfixturevalue("base_dir")
            _sides["upstream"] = Upstream(shape, clone, data)
    return _sides[request.param]


@pytest.fixture
def measure(benchmark, side, shape, request):
    """``measure(fn, rounds=None, iterations=1, **info)``: warm ``fn`` up, time it, keep its timing for the table,
    and return what one more call of ``fn`` gives (for the test to check the timed work was real).

    Without ``rounds`` pytest-benchmark calibrates the round count from one call (right for steady work); with it,
    exactly ``rounds`` rounds of ``iterations`` calls are timed (for work whose single calls are uneven).
    """
    def run(fn, rounds: int | None = None, iterations: int = 1, **info):
        benchmark.extra_info.update(side=side.name, shape=shape.describe(), **info)
        if benchmark.enabled:
            for _ in range(WARMUP_CALLS):
                fn()
        if rounds is None:
            benchmark(fn)
        else:
            benchmark.pedantic(fn, rounds=rounds, iterations=iterations)
        if benchmark.stats is not None:
            s = benchmark.stats.stats
            request.config.stash[TIMINGS_KEY].append(Timing(benchmark.group, side.name, s.mean, s.stddev, s.rounds))
        return fn()
    return run


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter, config):
    try:
        return (yield)
    finally:  # also after pytest-benchmark raised for a --benchmark-compare-fail regression
        timings = config.stash.get(TIMINGS_KEY, [])
        if timings:
            terminalreporter.write_sep("-", "microbench: ours vs upstream (mean per call; ratio < 1: ours faster)")
            terminalreporter.write_line(side_by_side(timings))
