"""Tokenizer files: training, loading, BOS placement, byte lengths, errors, and interchange with upstream's files."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers_data import make_base_dir, stdlib_texts, write_shards
from models.tokenizer import (SPECIAL_TOKENS, TokenizerError, load_token_bytes, load_tokenizer, train_tokenizer,
                              training_texts)

SAMPLE = "Hello world! Numbers: 123, 4567. Contractions: I'm, you're.\nUnicode: 你好世界 🌍 café"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_base_dir(tmp_path_factory.mktemp("base"), stdlib_texts(300_000), vocab_size=512)


def test_encode_batch_puts_bos_first_and_decodes_back(base):
    tok = load_tokenizer(base)
    rows = tok.encode_batch([SAMPLE, "", "def f(x):\n    return x"])
    assert [r[0] for r in rows] == [tok.bos_id] * 3 and rows[1] == [tok.bos_id]
    assert tok.decode(rows[0][1:]) == SAMPLE
    assert all(tok.bos_id not in r[1:] for r in rows)


def test_special_token_strings_in_text_are_plain_text(base):
    tok = load_tokenizer(base)
    (row,) = tok.encode_batch(["before <|bos|> after <|user_start|>"])
    assert row.count(tok.bos_id) == 1 and max(row[1:]) < tok.vocab_size - len(SPECIAL_TOKENS)
    assert tok.decode(row[1:]) == "before <|bos|> after <|user_start|>"


def test_specials_follow_the_merges_in_order_with_bos_first(base):
    tok = load_tokenizer(base)
    first = tok.vocab_size - len(SPECIAL_TOKENS)
    assert tok.vocab_size == 512 and tok.bos_id == first
    assert [tok.enc.encode_single_token(s) for s in SPECIAL_TOKENS] == list(range(first, tok.vocab_size))


def test_token_bytes_sum_to_the_utf8_length_and_are_zero_for_specials(base):
    tok, nbytes = load_tokenizer(base), load_token_bytes(base)
    assert nbytes.dtype == torch.int32 and nbytes.shape == (tok.vocab_size,)
    assert nbytes[tok.bos_id:].tolist() == [0] * len(SPECIAL_TOKENS)
    assert nbytes[:256].tolist() == [1] * 256  # the 256 single-byte tokens come first
    ids = tok.encode(SAMPLE)
    assert int(nbytes[ids].sum()) == len(SAMPLE.encode("utf-8"))


def test_training_on_the_same_text_gives_identical_files(tmp_path):
    texts = stdlib_texts(100_000)
    for name in ("a", "b"):
        train_tokenizer(texts, 400, tmp_path / name)
    for f in ("tokenizer.pkl", "token_bytes.pt"):
        assert (tmp_path / "a/tokenizer" / f).read_bytes() == (tmp_path / "b/tokenizer" / f).read_bytes()


def test_training_texts_caps_each_doc_and_stops_after_the_budget():
    assert list(training_texts(["abcdef", "gh", "ijkl", "mn"], max_chars=6, doc_cap=4)) == ["abcd", "gh", "ijkl"]


def test_missing_tokenizer_says_how_to_make_one(tmp_path):
    with pytest.raises(TokenizerError, match="run the data workspace step.*--base-dir"):
        load_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match="token_bytes.pt not found"):
        load_token_bytes(tmp_path)


def test_corrupt_tokenizer_files_are_named(tmp_path):
    d = tmp_path / "tokenizer"
    d.mkdir()
    (d / "tokenizer.pkl").write_bytes(b"not a pickle")
    (d / "token_bytes.pt").write_bytes(b"nor a tensor")
    with pytest.raises(TokenizerError, match=r"tokenizer\.pkl is corrupt"):
        load_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match=r"token_bytes\.pt is corrupt"):
        load_token_bytes(tmp_path)


def test_a_pickle_of_anything_but_an_encoding_is_refused(tmp_path):
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer/tokenizer.pkl").write_bytes(pickle.dumps(Path("/etc/passwd")))
    with pytest.raises(TokenizerError, match="unexpected object pathlib"):
        load_tokenizer(tmp_path)


def test_too_small_a_vocab_is_refused(tmp_path):
    with pytest.raises(TokenizerError, match="vocab_size 200 is too small"):
        train_tokenizer(["abc"], 200, tmp_path)


# ----------------------------------------------------------------------------------------------- against upstream

def _run_upstream(clone: Path, base: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Our Python running upstream's code in base dir ``base`` (no bytecode written: the work tree stays clean)."""
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(base), PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(clone))
    r = subprocess.run([sys.executable, *args], cwd=clone, env=env, input=stdin, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


_ENCODE_WITH_UPSTREAM = """
import json, sys
from nanochat.tokenizer import get_tokenizer
tok = get_tokenizer()
texts = json.loads(sys.stdin.read())
print(json.dumps({"bos": tok.get_bos_token_id(), "vocab": tok.get_vocab_size(),
                  "ids": tok.encode(texts, prepend=tok.get_bos_token_id(), num_threads=4)}))
"""


@pytest.mark.upstream
def test_upstream_tok_train_and_ours_write_the_same_tokenizer(upstream_repo, tmp_path):
    texts = stdlib_texts(300_000)
    ups, ours = tmp_path / "upstream", tmp_path / "ours"
    write_shards(ups, texts)
    _run_upstream(upstream_repo, ups, "-m", "scripts.tok_train", "--vocab-size=512", "--max-chars=2000000")
    make_base_dir(ours, texts, vocab_size=512)
    theirs, mine = load_tokenizer(ups), load_tokenizer(ours)  # upstream's pickle loads in ours
    assert (theirs.bos_id, theirs.vocab_size) == (mine.bos_id, mine.vocab_size) == (503, 512)
    assert (ours / "tokenizer/tokenizer.pkl").read_bytes() == (ups / "tokenizer/tokenizer.pkl").read_bytes()
    assert torch.equal(load_token_bytes(ours), load_token_bytes(ups))


@pytest.mark.upstream
def test_our_tokenizer_loads_in_upstream_and_encodes_identically(upstream_repo, tmp_path):
    texts = stdlib_texts(300_000)
    make_base_dir(tmp_path, texts, vocab_size=512)
    probe = [SAMPLE, "", "<|bos|> <|assistant_end|> in text", *texts[::40]]
    r = _run_upstream(upstream_repo, tmp_path, "-c", _ENCODE_WITH_UPSTREAM, stdin=json.dumps(probe))
    theirs, mine = json.loads(r.stdout.strip().splitlines()[-1]), load_tokenizer(tmp_path)
    assert (theirs["bos"], theirs["vocab"]) == (mine.bos_id, mine.vocab_size)
    assert theirs["ids"] == mine.encode_batch(probe)
