"""upstream.corpus: the embedded offline text, and documents from the user's own files."""
from __future__ import annotations


import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from upstream import corpus
from upstream.errors import UpstreamError


@pytest.fixture(scope="module")
def embedded() -> list[str]:
    return corpus.embedded()


def test_embedded_corpus_is_big_enough_for_three_small_shards(embedded):
    assert 2000 <= len(embedded) <= 4000
    assert 1_200_000 <= sum(map(len, embedded)) <= 3_000_000


def test_embedded_corpus_is_in_a_fixed_order(embedded):
    assert corpus.collect_embedded() == embedded


def test_embedded_corpus_starts_with_help_topics_then_long_docstrings(embedded):
    from pydoc_data.topics import topics
    assert embedded[: len(topics)] == [topics[k] for k in sorted(topics)]
    assert all(len(doc) >= corpus.MIN_DOCSTRING_CHARS for doc in embedded[len(topics):])


def test_text_files_give_one_document_each_in_sorted_order(tmp_path):
    (tmp_path / "b.md").write_text("second file\n\nstill second")
    (tmp_path / "a.txt").write_text("first file")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    assert corpus.from_paths([tmp_path]) == ["first file", "second file\n\nstill second"]


def test_paragraph_split_cuts_on_blank_lines(tmp_path):
    (tmp_path / "notes.md").write_text("one\nline two\n\n  \n\nthree\n\n")
    assert corpus.from_paths([tmp_path / "notes.md"], split_paragraphs=True) == ["one\nline two", "three"]


def test_parquet_files_give_their_text_column(tmp_path):
    pq.write_table(pa.table({"text": ["doc a", "", "doc b"], "id": [1, 2, 3]}), tmp_path / "data.parquet")
    assert corpus.from_paths([tmp_path / "data.parquet"]) == ["doc a", "doc b"]


def test_parquet_without_text_column_is_a_one_line_error(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "data.parquet")
    with pytest.raises(UpstreamError, match=r"data.parquet has no readable 'text' column"):
        corpus.from_paths([tmp_path / "data.parquet"])


def test_empty_corpus_is_a_one_line_error(tmp_path):
    (tmp_path / "blank.txt").write_text("\n   \n")
    with pytest.raises(UpstreamError, match="is empty") as info:
        corpus.from_paths([tmp_path])
    assert "\n" not in str(info.value)


def test_an_unusable_path_is_refused(tmp_path):
    with pytest.raises(UpstreamError, match=r"not a directory or a \.txt, \.md or \.parquet file"):
        corpus.from_paths([tmp_path / "missing.txt"])


def test_non_utf8_text_is_refused(tmp_path):
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UpstreamError, match="latin.txt is not UTF-8"):
        corpus.from_paths([tmp_path])
