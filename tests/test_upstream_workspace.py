"""upstream.workspace: shards, validation, hashes; with upstream, the tokenizer from its own tok_train."""
from __future__ import annotations

import collections
import json
import shutil
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from upstream import workspace
from upstream.errors import UpstreamError
from upstream.workspace import DATA_DIR, DataSpec

DOCS = [f"document number {i} " + "word " * (i % 17) for i in range(300)]


def _texts(path: Path) -> list[str]:
    return pq.read_table(path).column("text").to_pylist()


def test_shards_hold_every_document_once_with_the_last_one_for_validation(tmp_path):
    spec = DataSpec(train_shards=3, val_fraction=0.1, row_groups=4)
    shards = workspace.write_shards(DOCS, tmp_path, spec)
    assert [p.name for p in shards] == [f"shard_{i:05d}.parquet" for i in range(4)]
    assert len(_texts(shards[-1])) == 30
    everything = [t for p in shards for t in _texts(p)]
    assert collections.Counter(everything) == collections.Counter(DOCS)
    assert {pq.ParquetFile(p).num_row_groups for p in shards} == {4}


def test_sharding_is_deterministic_and_seeded(tmp_path):
    spec = DataSpec(row_groups=4)
    a = workspace.write_shards(DOCS, tmp_path / "a", spec)
    b = workspace.write_shards(DOCS, tmp_path / "b", spec)
    c = workspace.write_shards(DOCS, tmp_path / "c", DataSpec(row_groups=4, seed=1))
    assert [_texts(p) for p in a] == [_texts(p) for p in b] != [_texts(p) for p in c]


def test_too_few_documents_for_the_row_groups_is_refused(tmp_path):
    with pytest.raises(UpstreamError, match="has 20 documents: too few"):
        workspace.write_shards(DOCS[:20], tmp_path, DataSpec(row_groups=8))


def test_written_shards_validate(tmp_path):
    workspace.write_shards(DOCS, tmp_path, DataSpec(row_groups=8))
    assert len(workspace.validate_shards(tmp_path, 8)) == 3


def test_corrupt_shard_is_a_one_line_error_naming_the_file(tmp_path):
    shards = workspace.write_shards(DOCS, tmp_path, DataSpec(row_groups=4))
    shards[1].write_bytes(shards[1].read_bytes()[:200])
    with pytest.raises(UpstreamError, match=r"shard .*shard_00001.parquet is not a readable parquet") as info:
        workspace.validate_shards(tmp_path, 4)
    assert "\n" not in str(info.value)


def test_shard_with_too_few_row_groups_is_refused(tmp_path):
    workspace.write_shards(DOCS, tmp_path, DataSpec(row_groups=4))
    with pytest.raises(UpstreamError, match="has 4 row groups; it needs >= 8"):
        workspace.validate_shards(tmp_path, 8)


def test_fewer_than_three_shards_is_refused(tmp_path):
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "shard_00000.parquet")
    with pytest.raises(UpstreamError, match="1 parquet shards; upstream needs >= 3"):
        workspace.validate_shards(tmp_path, 1)


def test_shard_text_column_must_be_strings(tmp_path):
    for i in range(3):
        pq.write_table(pa.table({"text": [1, 2]}), tmp_path / f"shard_{i:05d}.parquet")
    with pytest.raises(UpstreamError, match="column 'text' is int64"):
        workspace.validate_shards(tmp_path, 1)


def test_content_hash_covers_shards_and_tokenizer_and_sees_changes(tmp_path):
    workspace.write_shards(DOCS, tmp_path / DATA_DIR, DataSpec(row_groups=4))
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.pkl").write_bytes(b"tok")
    before = workspace.content_hash(tmp_path)
    assert set(before) == {f"{DATA_DIR}/shard_0000{i}.parquet" for i in range(3)} | {"tokenizer/tokenizer.pkl", "all"}
    assert before == workspace.content_hash(tmp_path)
    (tmp_path / "tokenizer" / "tokenizer.pkl").write_bytes(b"other")
    after = workspace.content_hash(tmp_path)
    assert after["tokenizer/tokenizer.pkl"] != before["tokenizer/tokenizer.pkl"] and after["all"] != before["all"]


@pytest.mark.parametrize("kwargs,message", [
    (dict(source="web"), "data source 'web' is unknown"),
    (dict(source="files"), "needs paths"),
    (dict(vocab_size=100), "vocab size 100 is too small"),
    (dict(train_shards=1), "train_shards=1"),
    (dict(val_fraction=0.7), "val_fraction=0.7"),
])
def test_bad_specs_are_one_line_errors(kwargs, message):
    with pytest.raises(UpstreamError, match=message):
        DataSpec(**kwargs)


def test_climbmix_shard_count_covers_the_training_tokens():
    d12_tokens = 2520 * 524_288
    shards = workspace.climbmix_shards_for(d12_tokens)
    assert (shards - 1) * workspace.CLIMBMIX_TOKENS_PER_SHARD >= d12_tokens
    assert (shards - 2) * workspace.CLIMBMIX_TOKENS_PER_SHARD < d12_tokens
    assert workspace.climbmix_shards_for(1000) == 2


def test_spec_key_changes_with_every_setting():
    keys = {DataSpec().key(), DataSpec(vocab_size=8192).key(), DataSpec(row_groups=16).key(), DataSpec(seed=3).key()}
    assert len(keys) == 4 and DataSpec().key() == DataSpec().key()
    assert DataSpec().key().startswith("embedded-v4096-")


@pytest.fixture(scope="module")
def built(upstream_repo, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("workspaces")
    return root, workspace.prepare(DataSpec(), upstream_repo, root)


@pytest.mark.upstream
def test_prepare_builds_shards_and_upstreams_tokenizer(built, upstream_repo):
    root, base = built
    assert len(list((base / DATA_DIR).glob("*.parquet"))) == 3
    assert all((base / f).is_file() for f in workspace.TOKENIZER_FILES)
    marker = json.loads((base / workspace.MARKER).read_text())
    assert marker["content"] == workspace.content_hash(base) and marker["built_with"]
    assert "Saved token_bytes" in Path(f"{root / DataSpec().key()}.tok_train.log").read_text()
    from upstream.source import is_clean
    assert is_clean(upstream_repo)


@pytest.mark.upstream
def test_prepare_reuses_a_built_workspace(built, upstream_repo):
    root, base = built
    stamp = (base / workspace.MARKER).stat().st_mtime_ns
    assert workspace.prepare(DataSpec(), upstream_repo, root) == base
    assert (base / workspace.MARKER).stat().st_mtime_ns == stamp


@pytest.mark.upstream
def test_tokenizer_from_upstream_is_deterministic(built, upstream_repo, tmp_path):
    _, base = built
    again = workspace.prepare(DataSpec(), upstream_repo, tmp_path)
    assert workspace.content_hash(again) == workspace.content_hash(base)


@pytest.mark.upstream
def test_prepare_with_a_corrupted_shard_names_it(built, upstream_repo, tmp_path):
    base = tmp_path / built[1].name
    shutil.copytree(built[1], base)
    (base / DATA_DIR / "shard_00002.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UpstreamError, match=r"shard_00002.parquet is not a readable parquet file"):
        workspace.prepare(DataSpec(), upstream_repo, tmp_path)


@pytest.fixture
def climbmix_host_refuses(monkeypatch):
    """The climbmix reachability check pointed (ENV_CLIMBMIX_PROBE) at a local TCP port that is bound but not
    listening: the connection is refused on this machine, the same online or offline, and nothing else can take
    the port while the test holds it. No connection leaves the machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv(workspace.ENV_CLIMBMIX_PROBE, f"127.0.0.1:{s.getsockname()[1]}")
        yield


def test_the_climbmix_probe_goes_to_the_real_host_unless_the_environment_names_another(monkeypatch):
    monkeypatch.delenv(workspace.ENV_CLIMBMIX_PROBE, raising=False)
    assert workspace.probe_address("huggingface.co") == ("huggingface.co", 443)
    monkeypatch.setenv(workspace.ENV_CLIMBMIX_PROBE, "127.0.0.1:9")
    assert workspace.probe_address("huggingface.co") == ("127.0.0.1", 9)
    monkeypatch.setenv(workspace.ENV_CLIMBMIX_PROBE, "no-port")
    with pytest.raises(UpstreamError, match="use HOST:PORT"):
        workspace.probe_address("huggingface.co")


@pytest.mark.upstream
def test_climbmix_offline_is_a_one_line_error_and_leaves_no_half_workspace(upstream_repo, tmp_path,
                                                                            climbmix_host_refuses):
    with pytest.raises(UpstreamError, match=r"cannot reach \S+ to download climbmix .*use --data embedded") as e:
        workspace.prepare(DataSpec(source="climbmix"), upstream_repo, tmp_path)
    assert "\n" not in str(e.value)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
