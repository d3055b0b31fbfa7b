"""The tokenizer files of a nanochat base dir: train them, load them, and the per-token byte lengths.

A base dir holds ``tokenizer/tokenizer.pkl`` (a pickled ``tiktoken.Encoding``) and ``tokenizer/token_bytes.pt``
(int32 byte length per token id, 0 for special tokens). These are the same two files upstream's
``scripts.tok_train`` writes, so either side reads the other's. Training uses rustbpe with the same split regex,
the same 9 special tokens appended after the merges, and the same per-document cap and character budget, so the
same input text gives the same merges.
"""
from __future__ import annotations

import io
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import tiktoken
import torch

from protocol.files import write_atomic

# Appended after the learned merges, in this order; ids are n_merges + index. Only <|bos|> appears in pretraining.
SPECIAL_TOKENS = (
    "<|bos|>",
    "<|user_start|>", "<|user_end|>",
    "<|assistant_start|>", "<|assistant_end|>",
    "<|python_start|>", "<|python_end|>",
    "<|output_start|>", "<|output_end|>",
)
BOS = "<|bos|>"
# GPT-4's pre-tokenisation regex, except digits split in runs of at most 2 (kinder to small vocabularies).
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
ENCODE_THREADS = 4            # documents are tokenised in parallel (tiktoken releases the GIL)
DEFAULT_MAX_CHARS = 2_000_000_000
DEFAULT_DOC_CAP = 10_000      # characters of each document seen by the trainer
ENCODING_NAME = "rustbpe"


class TokenizerError(ValueError):
    """Tokenizer files that are missing, unreadable or not what a nanochat base dir should hold."""


def _brief(e: BaseException) -> str:
    """An exception as one short line: library messages can run over several lines."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:160] if lines else ''}"


class Tokenizer:
    """A tiktoken encoding plus what pretraining needs: the BOS id, the vocab size and batch encoding."""

    def __init__(self, enc: tiktoken.Encoding, threads: int = ENCODE_THREADS):
        if BOS not in enc.special_tokens_set:
            raise TokenizerError(f"tokenizer encoding {enc.name!r} has no {BOS} token; it is not a nanochat tokenizer")
        self.enc = enc
        self.bos_id: int = enc.encode_single_token(BOS)
        self.vocab_size: int = enc.n_vocab
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None  # created on first use: loading must not start threads

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, special-token strings treated as plain text, no BOS."""
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text with BOS in front, special-token strings treated as plain text."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="tokenize")
        rows = list(self._pool.map(self.enc.encode_ordinary, texts))
        return [[self.bos_id, *row] for row in rows]

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)

    def token_bytes(self) -> torch.Tensor:
        """int32 (V,): the byte length of each token's raw bytes (not its decoded string); 0 for specials."""
        specials = {self.enc.encode_single_token(s) for s in self.enc.special_tokens_set}
        lengths = [0 if i in specials else len(self.enc.decode_single_token_bytes(i)) for i in range(self.vocab_size)]
        return torch.tensor(lengths, dtype=torch.int32)


def tokenizer_dir(base_dir: str | Path) -> Path:
    return Path(base_dir) / "tokenizer"


def _missing(path: Path) -> TokenizerError:
    return TokenizerError(f"{path} not found: run the data workspace step (or models' train_tokenizer) "
                          f"first, or point --base-dir at a nanochat base dir that has tokenizer/")


class _EncodingUnpickler(pickle.Unpickler):
    """Unpickles a tiktoken.Encoding and nothing else: a tokenizer file must not be able to run code."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("tiktoken.core", "Encoding"):
            return tiktoken.Encoding
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def load_tokenizer(base_dir: str | Path) -> Tokenizer:
    """The tokenizer saved in ``<base_dir>/tokenizer/tokenizer.pkl`` (by upstream's tok_train or by ours)."""
    path = tokenizer_dir(base_dir) / "tokenizer.pkl"
    if not path.is_file():
        raise _missing(path)
    try:
        enc = _EncodingUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as e:  # any failure here means the file is not a pickled Encoding
        raise TokenizerError(f"{path} is corrupt or not a pickled tiktoken encoding ({_brief(e)}); "
                             f"delete it and retrain the tokenizer") from None
    if not isinstance(enc, tiktoken.Encoding):
        raise TokenizerError(f"{path} holds a {type(enc).__name__}, not a tiktoken encoding; retrain the tokenizer")
    return Tokenizer(enc)


def load_token_bytes(base_dir: str | Path, device: str | torch.device = "cpu") -> torch.Tensor:
    """int32 (V,) byte length per token id from ``<base_dir>/tokenizer/token_bytes.pt``, on ``device``."""
    path = tokenizer_dir(base_dir) / "token_bytes.pt"
    if not path.is_file():
        raise _missing(path)
    try:
        t = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise TokenizerError(f"{path} is corrupt ({_brief(e)}); delete it and retrain the tokenizer") from None
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.dtype != torch.int32:
        raise TokenizerError(f"{path} must hold a 1-D int32 tensor; found {getattr(t, 'dtype', type(t).__name__)} "
                             f"{tuple(getattr(t, 'shape', ()))}; retrain the tokenizer")
    return t


def training_texts(texts: Iterable[str], max_chars: int, doc_cap: int) -> Iterator[str]:
    """Each text cut to ``doc_cap`` characters, stopping right after the one that takes the total past ``max_chars``."""
    seen = 0
    for text in texts:
        text = text[:doc_cap]
        seen += len(text)
        yield text
        if seen > max_chars:
            return


def train_tokenizer(texts: Iterable[str], vocab_size: int, base_dir: str | Path,
                    max_chars: int = DEFAULT_MAX_CHARS, doc_cap: int = DEFAULT_DOC_CAP) -> Tokenizer:
    """Train a BPE tokenizer of ``vocab_size`` ids (9 of them special) and write both files under ``base_dir``.

    ``texts`` should come in the order upstream's tok_train reads them (train shards, row groups in order)
    for the merges to match upstream's.
    """
    n_merges = vocab_size - len(SPECIAL_TOKENS)
    if n_merges < 256:
        raise TokenizerError(f"vocab_size {vocab_size} is too small: need at least {256 + len(SPECIAL_TOKENS)} "
                             f"(256 byte tokens + {len(SPECIAL_TOKENS)} specials)")
    import rustbpe  # only training needs it; a machine that only loads tokenizers may lack it

    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(training_texts(texts, max_chars, doc_cap), n_merges, pattern=SPLIT_PATTERN)
    ranks = {bytes(token): rank for token, rank in trainer.get_mergeable_ranks()}
    specials = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
    enc = tiktoken.Encoding(name=ENCODING_NAME, pat_str=trainer.get_pattern(),
                            mergeable_ranks=ranks, special_tokens=specials)
    tok = Tokenizer(enc)
    save_tokenizer(tok, base_dir)
    return tok


def save_tokenizer(tok: Tokenizer, base_dir: str | Path) -> Path:
    """Write tokenizer.pkl and token_bytes.pt under ``<base_dir>/tokenizer`` (each atomically); returns that dir."""
    out = tokenizer_dir(base_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "tokenizer.pkl", lambda f: pickle.dump(tok.enc, f), binary=True)
    token_bytes = tok.token_bytes()
    write_atomic(out / "token_bytes.pt", lambda f: torch.save(token_bytes, f), binary=True)
    return out
