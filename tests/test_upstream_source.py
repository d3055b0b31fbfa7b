"""upstream.source on small real git repositories made here: clone cache, refs, reuse, fetch, errors."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import git
import pytest

from upstream import source
from upstream.errors import UpstreamError
from upstream.pin import ENV_CACHE, ENV_SOURCE


def _commit(repo: git.Repo, name: str, text: str) -> str:
    (Path(repo.working_dir) / name).write_text(text)
    repo.index.add([name])
    return repo.index.commit(f"add {name}").hexsha


@pytest.fixture
def origin(tmp_path: Path) -> dict:
    """A non-bare repo: master (2 commits, tag v1 on the first), branch 'feature' (1 more); plus its bare clone."""
    repo = git.Repo.init(tmp_path / "origin", initial_branch="master")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "t").set_value("user", "email", "t@example.invalid")
    first = _commit(repo, "a.txt", "one")
    repo.create_tag("v1")
    second = _commit(repo, "b.txt", "two")
    repo.git.checkout("-b", "feature")
    third = _commit(repo, "c.txt", "three")
    repo.git.checkout("master")
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repo.working_dir), str(bare)], check=True)
    return {"repo": repo, "path": Path(repo.working_dir), "bare": bare, "first": first, "second": second,
            "third": third}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_SOURCE, raising=False)
    return tmp_path / "cache"


@pytest.mark.parametrize("ref,expect", [("first", "first"), ("v1", "first"), ("master", "second"),
                                        ("feature", "third"), (source.NIGHTLY, "second")])
def test_refs_resolve_to_their_commit(origin, ref, expect):
    out = source.checkout(origin["path"], origin.get(ref, ref))
    assert out.sha == origin[expect]
    assert git.Repo(out.path).head.commit.hexsha == out.sha and out.clean


@pytest.mark.parametrize("kind", ["path", "bare", "url"])
def test_non_bare_bare_and_url_sources_all_work(origin, kind):
    src = {"path": origin["path"], "bare": origin["bare"], "url": origin["bare"].as_uri()}[kind]
    out = source.checkout(src, origin["second"][:10])  # a short SHA too
    assert out.sha == origin["second"] and (out.path / "b.txt").read_text() == "two"


def test_checkout_lives_in_the_cache_and_never_touches_the_source(origin, cache):
    out = source.checkout(origin["path"], origin["third"])
    assert cache in out.path.parents
    assert origin["repo"].active_branch.name == "master" and not (origin["path"] / "c.txt").exists()


def test_second_checkout_reuses_the_clone_and_work_tree(origin):
    first = source.checkout(origin["path"], "v1")
    stamp = (first.path / "a.txt").stat().st_mtime_ns
    time.sleep(0.01)
    again = source.checkout(origin["path"], "v1")
    assert again.path == first.path and (again.path / "a.txt").stat().st_mtime_ns == stamp


def test_a_commit_missing_from_the_cache_is_fetched(origin):
    source.checkout(origin["path"], "master")
    new = _commit(origin["repo"], "d.txt", "four")
    assert source.checkout(origin["path"], new).sha == new
    assert source.checkout(origin["path"], source.NIGHTLY).sha == new  # branches are refreshed too


def test_default_branch_is_what_nightly_follows(origin):
    origin["repo"].git.symbolic_ref("HEAD", "refs/heads/feature")
    assert source.checkout(origin["path"], source.NIGHTLY).sha == origin["third"]


def test_clean_flag_sees_changes_in_the_work_tree(origin):
    out = source.checkout(origin["path"], "master")
    (out.path / "stray.txt").write_text("x")
    assert not source.is_clean(out.path)
    assert not source.checkout(origin["path"], "master").clean


def test_uncommitted_edits_in_a_local_source_are_reported_not_used(origin):
    (origin["path"] / "a.txt").write_text("edited")
    out = source.checkout(origin["path"], "master")
    assert (out.path / "a.txt").read_text() == "one"
    assert any("uncommitted changes" in w for w in out.warnings)


def test_provenance_names_sha_ref_source_and_cleanliness(origin):
    facts = source.checkout(origin["bare"], "v1").provenance()
    assert facts["sha"] == origin["first"] and facts["ref"] == "v1" and facts["clean"] is True
    assert facts["source"] == str(origin["bare"]) and facts["pinned"] is False and facts["subject"] == "add a.txt"


def _one_line_error(fn, *args) -> str:
    with pytest.raises(UpstreamError) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_unreachable_url_is_a_one_line_error_naming_the_option(cache):
    message = _one_line_error(source.checkout, "http://127.0.0.1:9/nanochat.git", "master")
    assert "cannot clone upstream from http://127.0.0.1:9/nanochat.git" in message and "--upstream" in message
    assert not [p for p in (cache / "upstream").iterdir() if p.is_dir()]  # no half-cloned mirror left behind


def test_unknown_ref_is_a_one_line_error_naming_the_option(origin):
    message = _one_line_error(source.checkout, origin["path"], "no-such-branch")
    assert "'no-such-branch' not found" in message and "--upstream-ref" in message


def test_a_directory_that_is_not_a_repository_is_refused(tmp_path):
    (tmp_path / "plain").mkdir()
    assert "is not a git repository" in _one_line_error(source.checkout, tmp_path / "plain", "master")


def test_a_missing_path_is_refused(tmp_path):
    assert "does not exist" in _one_line_error(source.checkout, tmp_path / "nowhere", "master")


def test_find_for_tests_without_source_or_cache_is_none(origin):
    assert source.find_for_tests(origin["first"]) is None


def test_find_for_tests_uses_the_environment_source(origin, monkeypatch):
    monkeypatch.setenv(ENV_SOURCE, str(origin["bare"]))
    path = source.find_for_tests(origin["first"])
    assert git.Repo(path).head.commit.hexsha == origin["first"]


def test_find_for_tests_finds_a_cached_clone_without_the_environment(origin, monkeypatch):
    source.checkout(origin["path"], "master")
    path = source.find_for_tests(origin["first"])  # in the cached mirror, not checked out yet
    assert path is not None and git.Repo(path).head.commit.hexsha == origin["first"]


def test_find_for_tests_with_an_unusable_source_raises(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_SOURCE, str(tmp_path / "nowhere"))
    with pytest.raises(UpstreamError, match="does not exist"):
        source.find_for_tests("0" * 40)


def test_find_for_tests_refuses_a_dirty_tree(origin, monkeypatch):
    monkeypatch.setenv(ENV_SOURCE, str(origin["path"]))
    (source.find_for_tests(origin["first"]) / "stray.txt").write_text("x")
    with pytest.raises(UpstreamError, match="has changes"):
        source.find_for_tests(origin["first"])


def test_cache_root_precedence(tmp_path, monkeypatch):
    assert source.cache_root(tmp_path / "given") == (tmp_path / "given").resolve()
    monkeypatch.delenv(ENV_CACHE)
    assert source.cache_root() == Path.home().resolve() / ".cache" / "nanochat-bench"


@pytest.mark.upstream
def test_pinned_upstream_checks_out_clean_at_the_pin(upstream_repo):
    from upstream.pin import PINNED_COMMIT
    assert git.Repo(upstream_repo).head.commit.hexsha == PINNED_COMMIT and source.is_clean(upstream_repo)
    assert (upstream_repo / "scripts" / "base_train.py").is_file()
