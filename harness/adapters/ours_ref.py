"""The ``ours@REF`` arm: our trainer as it was at another git ref of this project, run from a temporary worktree.

``--impl ours@HEAD~1,ours`` measures a change to models/ against the version before it in one interleaved
campaign. The ref is resolved to a commit once, when the campaign is set up (and recorded, so a resume runs the
same commit). For each run a detached ``git worktree`` of that commit is added under the run's directory, the
trainer runs from it with the same flags and compile cache as ``ours`` (harness/adapters/ours.py), and the
worktree is removed when the run ends: the user's working tree and index are never touched (git keeps only its
worktree bookkeeping in .git/worktrees while a run lasts; a stale entry is pruned before the next one).
gitpython is imported lazily, like everywhere else.
"""
from __future__ import annotations

import sys
from pathlib import Path

from harness.adapters.base import AdapterError, Launch, Outcome, RunRequest
from harness.adapters.ours import MODULE, OursAdapter, _repo_root, budget_flags, compile_cache_env
from harness.adapters.base import torchrun_prefix

PREFIX = "ours@"
WORKTREE = "src"     # runs/<run_id>/src while the run lasts


def resolve(ref: str, repo_root: Path | None = None) -> str:
    """The commit SHA ``ref`` names in this project's repository; AdapterError (one line) when it names none."""
    import git
    root = repo_root or _repo_root()
    try:
        return git.Repo(root, search_parent_directories=True).commit(ref).hexsha
    except git.InvalidGitRepositoryError:
        raise AdapterError(f"--impl {PREFIX}{ref}: {root} is not a git clone of nanochat-bench; ours@REF needs "
                           f"the project's git history (git clone, not an sdist)") from None
    except (git.BadName, ValueError, git.GitCommandError):
        raise AdapterError(f"--impl {PREFIX}{ref}: no such commit, branch or tag in {root}; "
                           f"see `git log --oneline` (e.g. ours@HEAD~1, ours@main)") from None


class OursRefAdapter(OursAdapter):
    role = None    # neither default side: with upstream absent, the first arm listed is the baseline

    def __init__(self, ref: str, sha: str, compile_cache: Path | None = None):
        super().__init__(compile_cache=compile_cache)
        self.ref, self.sha = ref, sha
        self.name = f"{PREFIX}{ref}"

    @classmethod
    def for_impl(cls, impl: str, setup) -> "OursRefAdapter":
        ref = impl[len(PREFIX):]
        if not ref or ":" in ref or any(c.isspace() for c in ref):
            raise AdapterError(f"--impl {impl}: write ours@REF with a git ref such as HEAD~1, main or a SHA")
        sha = (setup.ref_shas or {}).get(impl) or resolve(ref)
        return cls(ref, sha, compile_cache=setup.compile_cache)

    def config(self) -> dict:
        return {"ref": self.ref, "sha": self.sha}

    @staticmethod
    def setup_fields(config: dict) -> dict:
        return {"ref_shas": {f"{PREFIX}{config['ref']}": config["sha"]}}   # a resume runs the same commit

    def provenance(self) -> dict:
        return {"ours_sha": self.sha, "ours_dirty": False}   # the code that ran: the ref's commit, clean

    def launch(self, req: RunRequest) -> Launch:
        src = self._add_worktree(req.run_dir / WORKTREE)
        flags = budget_flags(req.budget, seed=req.seed, metrics_out=req.events_path, base_dir=req.base_dir,
                             checkpoint_dir=req.checkpoint_dir)
        prefix = torchrun_prefix(req.budget, req.rdzv_endpoint)
        command = (prefix + ["-m", MODULE] if prefix else [sys.executable, "-m", MODULE]) + flags
        env = compile_cache_env(self.compile_cache or req.campaign_dir / "ours-cache")
        env["PYTHONPATH"] = str(src)   # the ref's models/ and protocol/, not the installed tree's
        if req.base_dir:
            env["NANOCHAT_BASE_DIR"] = str(req.base_dir)
        return Launch(command=command, env=env, cwd=src)

    def finish(self, req: RunRequest, events, returncode) -> Outcome:
        self._remove_worktree(req.run_dir / WORKTREE)
        return Outcome(notes={"ours_ref": self.ref, "ours_ref_sha": self.sha})

    def _add_worktree(self, path: Path) -> Path:
        import git
        repo = git.Repo(_repo_root(), search_parent_directories=True)
        repo.git.worktree("prune")
        if path.exists():
            self._remove_worktree(path)
        repo.git.worktree("add", "--detach", str(path), self.sha)
        return path

    def _remove_worktree(self, path: Path) -> None:
        import git
        repo = git.Repo(_repo_root(), search_parent_directories=True)
        if path.exists():
            repo.git.worktree("remove", "--force", str(path))
        repo.git.worktree("prune")
