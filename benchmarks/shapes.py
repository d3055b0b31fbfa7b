"""The one shape every micro-benchmark uses for both implementations, and how it is chosen.

A bench config is a preset name optionally followed by ``key=value`` overrides, comma-separated:
``cpu`` (the default), ``tiny`` (the test suite's, seconds), ``gpu`` (d12 on one CUDA device), or e.g.
``cpu,depth=6,seq_len=512``. It comes from ``--bench-config``, else $NANOCHAT_MICROBENCH, else ``cpu``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace

import torch

ENV_CONFIG = "NANOCHAT_MICROBENCH"
DEFAULT_PRESET = "cpu"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ShapeError(ValueError):
    """A bench config that cannot be used; the message names the field and the fix."""


@dataclass(frozen=True)
class BenchShape:
    depth: int = 4                  # transformer blocks; width = depth * aspect_ratio rounded up to head_dim
    seq_len: int = 256              # tokens per row (T)
    device_batch: int = 8           # rows per forward (B)
    vocab: int = 4096               # model vocab and the data loader's tokenizer vocab
    window_pattern: str = "L"       # as the smoke preset: full-context attention on every layer
    aspect_ratio: int = 64
    head_dim: int = 128
    device: str = "cpu"             # "cpu" or "cuda" / "cuda:N"
    dtype: str = "float32"          # compute dtype of both models (NANOCHAT_DTYPE for upstream)
    compile_optimizer: bool = False  # our Muon kernels compiled, as our trainer does on CUDA (upstream's always are)
    threads: int = 0                # torch CPU threads; 0 = torch's default (one per core)

    def __post_init__(self):
        for name in ("depth", "seq_len", "device_batch", "vocab", "aspect_ratio", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ShapeError(f"bench config {name}={value!r}: must be a positive integer")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ShapeError(f"bench config threads={self.threads!r}: use 0 (torch's default) or a positive integer")
        if self.vocab < 265:
            raise ShapeError(f"bench config vocab={self.vocab}: the tokenizer needs at least 256 bytes + 9 specials, "
                             "use vocab >= 265")
        if self.dtype not in DTYPES:
            raise ShapeError(f"bench config dtype={self.dtype!r}: use one of {', '.join(DTYPES)}")
        if not (self.device == "cpu" or self.device.split(":")[0] == "cuda"):
            raise ShapeError(f"bench config device={self.device!r}: use cpu or cuda[:N]")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())

    def apply_threads(self) -> None:
        """Set torch's CPU thread count when the config names one (1 steadies timings on a busy machine)."""
        if self.threads:
            torch.set_num_threads(self.threads)

    def check_device(self) -> None:
        """Fail (one line) when the config names CUDA but this torch has none."""
        if self.device != "cpu" and not torch.cuda.is_available():
            raise ShapeError(f"bench config device={self.device!r} but this torch sees no CUDA device: "
                             "use the cpu preset or run on a GPU machine")


PRESETS = {
    "tiny": BenchShape(depth=2, seq_len=64, device_batch=2, vocab=512),
    "cpu": BenchShape(),
    "gpu": BenchShape(depth=12, seq_len=2048, device_batch=32, vocab=32768, window_pattern="SSSL", device="cuda",
                      dtype="bfloat16", compile_optimizer=True),
}


def _coerce(name: str, text: str, kinds: dict[str, type]):
    kind = kinds[name]
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ShapeError(f"bench config {name}={text!r}: use true or false")
        return text.lower() in ("true", "1")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ShapeError(f"bench config {name}={text!r}: must be an integer") from None
    return text


def parse_bench_config(text: str | None) -> BenchShape:
    """``preset[,key=value...]`` -> BenchShape; None or "" means the default preset."""
    parts = [p.strip() for p in (text or DEFAULT_PRESET).split(",") if p.strip()]
    head, overrides = (parts[0], parts[1:]) if parts and "=" not in parts[0] else (DEFAULT_PRESET, parts)
    if head not in PRESETS:
        raise ShapeError(f"bench config preset {head!r} is unknown: use one of {', '.join(PRESETS)}")
    kinds = {f.name: type(getattr(PRESETS[head], f.name)) for f in fields(BenchShape)}
    values = {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in kinds:
            raise ShapeError(f"bench config item {item!r}: write key=value with key one of {', '.join(kinds)}")
        values[name.strip()] = _coerce(name.strip(), value.strip(), kinds)
    return replace(PRESETS[head], **values)


def chosen_config(option: str | None) -> str:
    """The command-line option if given, else $NANOCHAT_MICROBENCH, else the default preset."""
    return option or os.environ.get(ENV_CONFIG) or DEFAULT_PRESET
