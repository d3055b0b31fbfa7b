"""The shared data workspace: built once per (dataset, vocab), hashed for results, with an offline fallback."""
from __future__ import annotations

import socket

import pytest

from harness import dataprep
from harness.budget import load_preset
from tests.test_upstream_workspace import climbmix_host_refuses  # noqa: F401 - a fixture
from upstream.workspace import ENV_CLIMBMIX_PROBE

TINY = load_preset("tiny")


def test_workspace_is_built_once_and_its_identity_is_stable(workspace):
    base, data, warnings = dataprep.prepare(TINY, workspace, checkout=None)
    again, data_again, _ = dataprep.prepare(TINY, workspace, checkout=None)
    assert again == base and data_again == data and warnings == []
    assert (data.dataset, data.vocab_size, data.base_dir) == ("embedded", 1024, str(base))
    assert len(data.shards_sha256) == 64 and len(data.tokenizer_sha256) == 64
    assert len(list((base / "base_data_climbmix").glob("*.parquet"))) >= 3
    assert (base / "tokenizer" / "tokenizer.pkl").is_file() and (base / "tokenizer" / "token_bytes.pt").is_file()


# The climbmix host check (dataprep.online) connects to a local socket named by ENV_CLIMBMIX_PROBE, never to the
# real host: a bound port that does not listen refuses (offline), a listening one accepts (online).

@pytest.mark.usefixtures("climbmix_host_refuses")
def test_climbmix_offline_without_upstream_falls_back_to_embedded_with_a_warning(workspace):
    _, data, warnings = dataprep.prepare(TINY.with_overrides(dataset="climbmix"), workspace, checkout=None)
    assert data.dataset == "embedded" and len(warnings) == 1
    assert "climbmix is unavailable (cannot reach huggingface.co to download climbmix (offline?))" in warnings[0]


def test_climbmix_online_without_upstream_falls_back_saying_the_download_needs_upstream(workspace, monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        monkeypatch.setenv(ENV_CLIMBMIX_PROBE, f"127.0.0.1:{listener.getsockname()[1]}")
        _, data, warnings = dataprep.prepare(TINY.with_overrides(dataset="climbmix"), workspace, checkout=None)
        listener.settimeout(0)        # the probe's connection completed before prepare went on: it is queued
        listener.accept()[0].close()
    assert data.dataset == "embedded" and len(warnings) == 1
    assert "climbmix is unavailable (downloading climbmix runs upstream's nanochat.dataset" in warnings[0]


def test_users_own_text_files_become_the_dataset(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"doc{i:02d}.txt").write_text(f"Document {i}. " + "The quick brown fox jumps over the lazy dog. " * 20)
    budget = TINY.with_overrides(dataset=str(corpus), vocab_size=300)
    base, data, _ = dataprep.prepare(budget, tmp_path / "ws", checkout=None)
    assert data.dataset == "files" and data.vocab_size == 300
    assert dataprep.data_spec(budget).paths == (str(corpus.resolve()),)


def test_more_ranks_get_at_least_as_many_row_groups_per_shard():
    spec = dataprep.data_spec(load_preset("d20").with_overrides(nproc_per_node=16, total_batch_size=2**21))
    assert spec.row_groups == 16 and spec.source == "climbmix" and spec.climbmix_shards >= 8
