"""GPTConfig validation and the sizing rules (widths, vocab padding, windows, value-embedding layers)."""
from dataclasses import asdict

import pytest

from models.config import (ConfigError, GPTConfig, backout_layer, config_from_depth, layer_windows, padded_vocab,
                           short_window, value_embed_layers)


def small(**overrides) -> GPTConfig:
    fields = dict(sequence_len=256, vocab_size=4096, n_layer=4, n_head=2, n_kv_head=2, n_embd=256, window_pattern="L")
    return GPTConfig(**{**fields, **overrides})


@pytest.mark.parametrize("depth, width, heads", [(4, 256, 2), (7, 512, 4), (12, 768, 6), (20, 1280, 10), (26, 1664, 13)])
def test_config_from_depth_rounds_width_up_to_whole_heads(depth, width, heads):
    cfg = config_from_depth(depth, vocab_size=32768)
    assert (cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim) == (width, heads, heads, 128)
    assert (cfg.n_layer, cfg.sequence_len, cfg.window_pattern) == (depth, 2048, "SSSL")


def test_config_round_trips_through_upstream_meta_model_config():
    meta_block = {"sequence_len": 2048, "vocab_size": 32768, "n_layer": 12, "n_head": 6, "n_kv_head": 6,
                  "n_embd": 768, "window_pattern": "SSSL"}
    assert asdict(GPTConfig(**meta_block)) == meta_block


@pytest.mark.parametrize("vocab, rows", [(4096, 4096), (4000, 4032), (32768, 32768), (65, 128), (1, 64)])
def test_padded_vocab_rounds_up_to_multiple_of_64(vocab, rows):
    assert padded_vocab(vocab) == rows


@pytest.mark.parametrize("seq_len, window", [(2048, 512), (1024, 256), (512, 128), (256, 128), (100, 128), (4096, 1024),
                                             (2049, 640)])
def test_short_window_is_quarter_context_rounded_up_to_128(seq_len, window):
    assert short_window(seq_len) == window


def test_layer_windows_tile_pattern_and_force_last_layer_long():
    assert layer_windows(small(sequence_len=2048, n_layer=4, window_pattern="SSSL")) == [512, 512, 512, 2048]
    assert layer_windows(small(sequence_len=2048, n_layer=6, window_pattern="SL")) == [512, 2048, 512, 2048, 512, 2048]
    assert layer_windows(small(sequence_len=256, n_layer=3, window_pattern="S")) == [128, 128, 256]
    assert layer_windows(small(sequence_len=1024, n_layer=2, window_pattern="ssl")) == [256, 1024]


@pytest.mark.parametrize("n_layer, layers", [(1, [0]), (2, [1]), (4, [1, 3]), (5, [0, 2, 4]), (12, [1, 3, 5, 7, 9, 11])])
def test_value_embeddings_on_alternate_layers_ending_at_the_last(n_layer, layers):
    assert value_embed_layers(small(n_layer=n_layer)) == layers


@pytest.mark.parametrize("n_layer, block", [(1, 0), (4, 2), (5, 2), (12, 6), (20, 10), (26, 13)])
def test_backout_reads_block_at_half_depth(n_layer, block):
    assert backout_layer(small(n_layer=n_layer)) == block


@pytest.mark.parametrize("overrides, words", [
    (dict(n_embd=255), "n_embd=255 is not divisible by n_head=2"),
    (dict(n_head=4, n_kv_head=3), "n_head=4 is not a multiple of n_kv_head=3"),
    (dict(window_pattern="SXL"), "window_pattern='SXL'"),
    (dict(window_pattern=""), "window_pattern=''"),
    (dict(n_layer=0), "n_layer=0: must be a positive integer"),
    (dict(vocab_size=True), "vocab_size=True"),
    (dict(sequence_len=2.5), "sequence_len=2.5"),
    (dict(n_embd=18, n_head=2, n_kv_head=2), "head_dim = n_embd/n_head = 9 is odd"),
    (dict(n_embd=16, n_head=1, n_kv_head=1), "n_embd=16 is too small"),
])
def test_bad_config_fails_with_one_line_naming_the_field(overrides, words):
    with pytest.raises(ConfigError) as err:
        small(**overrides)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_config_from_depth_rejects_non_positive_depth():
    with pytest.raises(ConfigError, match="depth=0"):
        config_from_depth(0, vocab_size=4096)
