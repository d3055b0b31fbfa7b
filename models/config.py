"""The model's shape: GPTConfig and the sizing rules derived from it.

GPTConfig's fields are exactly the ``model_config`` block of upstream's meta_NNNNNN.json, so
``GPTConfig(**meta["model_config"])`` rebuilds the model an upstream checkpoint was trained with.
Everything else here (depth-based sizing, vocab padding, per-layer windows, value-embedding layers)
is a pure function of a config, shared by the model, the FLOPs estimate and the trainer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

VOCAB_PAD_MULTIPLE = 64    # wte/lm_head/value-embedding rows are padded up to this
SMEAR_CHANNELS = 24        # the smear gate reads this many leading channels of the embedding
VE_GATE_CHANNELS = 12      # the value-embedding gate reads this many leading channels of the attention input
SHORT_WINDOW_TILE = 128    # "S" windows are rounded up to a multiple of this (the FA3 tile size)


class ConfigError(ValueError):
    """A model configuration that cannot be built; the message names the field and the fix."""


@dataclass
class GPTConfig:
    sequence_len: int = 2048     # tokens per row at training time (T); sets the windows and the rotary cache
    vocab_size: int = 32768      # tokenizer vocab, UNpadded (the model pads its tables to a multiple of 64)
    n_layer: int = 12            # transformer blocks
    n_head: int = 6              # query heads
    n_kv_head: int = 6           # key/value heads (GQA when < n_head)
    n_embd: int = 768            # model width
    window_pattern: str = "SSSL"  # S(hort)/L(ong) attention windows tiled over layers; the last layer is always L

    def __post_init__(self):
        for name in ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"GPTConfig.{name}={value!r}: must be a positive integer")
        if self.n_embd % self.n_head:
            raise ConfigError(f"GPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                              "pick n_embd = n_head * head_dim")
        if self.n_head % self.n_kv_head:
            raise ConfigError(f"GPTConfig.n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}: "
                              "each key/value head must serve a whole number of query heads")
        if self.head_dim % 2:
            raise ConfigError(f"GPTConfig head_dim = n_embd/n_head = {self.head_dim} is odd: rotary embeddings "
                              "rotate channel pairs, so pick an even head_dim")
        if self.n_embd < SMEAR_CHANNELS:  # also covers the VE gate's 12 channels
            raise ConfigError(f"GPTConfig.n_embd={self.n_embd} is too small: the smear gate reads "
                              f"{SMEAR_CHANNELS} channels, so use n_embd >= {SMEAR_CHANNELS}")
        pattern = self.window_pattern
        if not isinstance(pattern, str) or not pattern or set(pattern.upper()) - {"S", "L"}:
            raise ConfigError(f"GPTConfig.window_pattern={pattern!r}: use a non-empty string of S and L, e.g. 'SSSL'")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def config_from_depth(depth: int, vocab_size: int, max_seq_len: int = 2048, aspect_ratio: int = 64,
                      head_dim: int = 128, window_pattern: str = "SSSL") -> GPTConfig:
    """Upstream's CLI sizing: width = depth*aspect rounded UP to a multiple of head_dim, all heads full (no GQA)."""
    for name, value in (("depth", depth), ("aspect_ratio", aspect_ratio), ("head_dim", head_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r}: must be a positive integer")
    n_embd = math.ceil(depth * aspect_ratio / head_dim) * head_dim
    n_head = n_embd // head_dim
    return GPTConfig(sequence_len=max_seq_len, vocab_size=vocab_size, n_layer=depth, n_head=n_head,
                     n_kv_head=n_head, n_embd=n_embd, window_pattern=window_pattern)


def padded_vocab(vocab_size: int, multiple: int = VOCAB_PAD_MULTIPLE) -> int:
    """Rows of the embedding/unembedding tables: the vocab rounded up to a multiple of 64."""
    return -(-vocab_size // multiple) * multiple


def short_window(sequence_len: int) -> int:
    """Left window of an "S" layer: a quarter of the context rounded UP to a multiple of 128 (T=2048 -> 512)."""
    return math.ceil(sequence_len / (4 * SHORT_WINDOW_TILE)) * SHORT_WINDOW_TILE


def layer_windows(cfg: GPTConfig) -> list[int]:
    """Left attention window per layer: a query at i sees keys i-w..i. A window >= T is plain causal attention."""
    pattern = cfg.window_pattern.upper()
    by_char = {"L": cfg.sequence_len, "S": short_window(cfg.sequence_len)}
    windows = [by_char[pattern[i % len(pattern)]] for i in range(cfg.n_layer)]
    windows[-1] = cfg.sequence_len  # the last layer always sees the whole context
    return windows


def value_embed_layers(cfg: GPTConfig) -> list[int]:
    """Layers that mix a value embedding into v: every other layer, counted back from the last (always included)."""
    return [i for i in range(cfg.n_layer) if i % 2 == (cfg.n_layer - 1) % 2]


def backout_layer(cfg: GPTConfig) -> int:
    """Index of the block whose output is subtracted (scaled) before the final norm."""
    return cfg.n_layer // 2
