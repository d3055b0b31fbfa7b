"""Where upstream nanochat's code comes from: mirror a source once into a cache, give each commit its own work tree.

A source is a URL or a local repository (bare or not). It is mirrored into ``<cache>/upstream/<slot>.git``
and every commit asked for is checked out, detached, in ``<cache>/upstream/<slot>.trees/<sha>``. Runs at
different refs therefore never disturb each other, and the user's own clone is never touched (uncommitted
edits in it are not seen: commit them and name the commit with --upstream-ref).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import git
from filelock import FileLock

from upstream.errors import UpstreamError, last_line
from upstream.pin import DEFAULT_URL, ENV_CACHE, ENV_SOURCE, PINNED_COMMIT

__all__ = ["Checkout", "UpstreamError", "NIGHTLY", "cache_root", "resolve_source", "checkout", "is_clean",
           "find_for_tests"]

NIGHTLY = "nightly"  # the ref name that means "the source's default branch, as of now"
_SHA_LIKE = re.compile(r"^[0-9a-f]{7,40}$")
_FIX_SOURCE = f"pass a reachable URL or local clone with --upstream or {ENV_SOURCE}"


@dataclass(frozen=True)
class Checkout:
    """A work tree of upstream at one commit, with what a result file needs to say where it came from."""
    path: Path
    sha: str
    ref: str                  # what was asked for: a SHA, branch, tag or NIGHTLY
    source: str               # URL or absolute path it was mirrored from
    clean: bool               # git status shows no change in the work tree
    date: str                 # committer date, ISO 8601
    subject: str              # first line of the commit message
    warnings: tuple[str, ...] = field(default=())

    def provenance(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["warnings"] = list(self.warnings)
        d["pinned"] = self.sha == PINNED_COMMIT
        return d


def cache_root(cache: str | Path | None = None) -> Path:
    """The harness cache: the argument, else $NANOCHAT_BENCH_CACHE, else ~/.cache/nanochat-bench."""
    chosen = cache or os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "nanochat-bench"
    return Path(chosen).expanduser().resolve()


def resolve_source(source: str | Path | None = None) -> str:
    """The source to use: the argument, else $NANOCHAT_UPSTREAM, else upstream's public URL."""
    return str(source or os.environ.get(ENV_SOURCE) or DEFAULT_URL)


def checkout(source: str | Path | None = None, ref: str = PINNED_COMMIT,
             cache: str | Path | None = None) -> Checkout:
    """A clean-at-creation work tree of ``source`` at ``ref`` (SHA, branch, tag or NIGHTLY), fetched if needed."""
    src = _normalise(resolve_source(source))
    root = cache_root(cache) / "upstream"
    root.mkdir(parents=True, exist_ok=True)
    slot = root / _slot_name(src)
    with FileLock(str(slot) + ".lock"):
        mirror = _mirror(src, slot.with_suffix(".git"))
        sha, warnings = _resolve(mirror, src, ref)
        tree = _work_tree(mirror, slot.with_suffix(".trees") / sha, sha)
    commit = mirror.commit(sha)
    return Checkout(path=tree, sha=sha, ref=ref, source=src, clean=is_clean(tree),
                    date=commit.committed_datetime.isoformat(), subject=commit.summary,
                    warnings=tuple(warnings) + _source_warnings(src))


def is_clean(path: str | Path) -> bool:
    """True when ``git status`` of the work tree shows nothing: no edits, no untracked (non-ignored) files."""
    return not git.Repo(path).is_dirty(untracked_files=True)


def find_for_tests(commit: str = PINNED_COMMIT) -> Path | None:
    """A clean work tree at ``commit`` from $NANOCHAT_UPSTREAM or an existing cached mirror; None if neither.

    Never downloads unless $NANOCHAT_UPSTREAM names a URL. Raises UpstreamError when a source is configured
    but unusable, or the work tree is not clean.
    """
    if os.environ.get(ENV_SOURCE):
        found = checkout(os.environ[ENV_SOURCE], commit)
    else:
        mirrors = [m for m in sorted((cache_root() / "upstream").glob("*.git")) if _has_commit(m, commit)]
        if not mirrors:
            return None
        found = checkout(git.Repo(mirrors[0]).remotes.origin.url, commit)
    if not found.clean:
        raise UpstreamError(f"upstream work tree {found.path} has changes (git status); delete it to re-create it")
    return found.path


# --- sources -------------------------------------------------------------------------------------------------

def _is_url(src: str) -> bool:
    return "://" in src or bool(re.match(r"^[\w.-]+@[\w.-]+:", src))


def _normalise(src: str) -> str:
    """URLs stay as given; local paths become absolute and must be git repositories (bare or not)."""
    if _is_url(src):
        return src.rstrip("/")
    path = Path(src).expanduser().resolve()
    if not path.exists():
        raise UpstreamError(f"upstream source {path} does not exist; {_FIX_SOURCE}")
    try:
        git.Repo(path)
    except git.InvalidGitRepositoryError:
        raise UpstreamError(f"upstream source {path} is not a git repository; {_FIX_SOURCE}") from None
    return str(path)


def _slot_name(src: str) -> str:
    stem = re.sub(r"[^\w.-]", "_", src.rstrip("/").split("/")[-1].removesuffix(".git")) or "upstream"
    return f"{stem}-{hashlib.sha256(src.encode()).hexdigest()[:10]}"


def _source_warnings(src: str) -> tuple[str, ...]:
    """A local non-bare source with uncommitted edits: say that those edits are not what runs."""
    if _is_url(src):
        return ()
    sh = git.cmd.Git(working_dir=src)
    if sh.rev_parse("--is-bare-repository") == "true" or not sh.status("--porcelain", "--untracked-files=no"):
        return ()
    return (f"{src} has uncommitted changes; they are not used (commit them and pass --upstream-ref)",)


def _git() -> git.cmd.Git:
    g = git.cmd.Git()
    g.update_environment(GIT_TERMINAL_PROMPT="0")  # a missing GitHub repo must fail, not ask for a password
    return g


# --- mirror, refs, work trees --------------------------------------------------------------------------------

def _mirror(src: str, path: Path) -> git.Repo:
    """The cached mirror of ``src``, cloned on first use (a local source is hard-linked, so this is cheap)."""
    if not (path / "HEAD").exists():
        partial = path.with_name(path.name + ".partial")  # renamed into place only once complete
        shutil.rmtree(partial, ignore_errors=True)
        try:
            _git().clone("--mirror", "--quiet", src, str(partial))
        except git.GitCommandError as e:
            shutil.rmtree(partial, ignore_errors=True)
            raise UpstreamError(f"cannot clone upstream from {src}: {last_line(e.stderr)}; {_FIX_SOURCE}") from None
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)
    repo = git.Repo(path)
    repo.git.update_environment(GIT_TERMINAL_PROMPT="0")
    return repo


def _resolve(mirror: git.Repo, src: str, ref: str) -> tuple[str, list[str]]:
    """The full SHA of ``ref``; fetches unless it is a commit already in the mirror."""
    if _SHA_LIKE.match(ref) and _rev_parse(mirror, ref):
        return _rev_parse(mirror, ref), []
    name = _default_branch(src) if ref == NIGHTLY else ref
    warnings = []
    try:
        mirror.git.fetch("--quiet", "--prune", "origin")
    except git.GitCommandError as e:
        if not _rev_parse(mirror, name):
            raise UpstreamError(f"cannot fetch upstream from {src}: {last_line(e.stderr)}; {_FIX_SOURCE}") from None
        warnings.append(f"could not fetch {src}; using the cached {name!r}")
    sha = _rev_parse(mirror, name)
    if not sha:
        raise UpstreamError(f"upstream ref {ref!r} not found in {src}; pass a branch, tag or commit "
                            f"that exists there with --upstream-ref")
    return sha, warnings


def _rev_parse(repo: git.Repo, ref: str) -> str | None:
    try:
        return repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
    except git.GitCommandError:
        return None


def _default_branch(src: str) -> str:
    try:
        out = _git().ls_remote("--symref", src, "HEAD")
    except git.GitCommandError as e:
        raise UpstreamError(f"cannot reach upstream {src} to find its default branch: {last_line(e.stderr)}; "
                            f"{_FIX_SOURCE}") from None
    match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD", out, re.M)
    if not match:
        raise UpstreamError(f"upstream {src} has no default branch; pass a branch with --upstream-ref")
    return match.group(1)


def _has_commit(mirror: Path, sha: str) -> bool:
    try:
        return _rev_parse(git.Repo(mirror), sha) is not None
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return False


def _work_tree(mirror: git.Repo, path: Path, sha: str) -> Path:
    """A detached work tree at ``sha``, reused when it already is one."""
    if path.exists() and _rev_parse_tree(path) == sha:
        return path
    if path.exists():  # a broken tree, or one at another commit, where ours belongs: it is our cache, replace it
        shutil.rmtree(path)
    mirror.git.worktree("prune")
    path.parent.mkdir(parents=True, exist_ok=True)
    mirror.git.worktree("add", "--detach", "--quiet", str(path), sha)
    return path


def _rev_parse_tree(path: Path) -> str | None:
    try:
        return git.Repo(path).head.commit.hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return None
