"""Isolated workspaces: a task that asks for `isolation = "worktree"` works in its own git worktree of the
workspace, on a branch named after it, so agents editing one repository side by side do not trample each other.
Its changes come back as a branch and a diff to review, then merge or discard."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import Conflict, InvalidInput
from .schema import Worktree

AUTHOR = ["-c", "user.name=bgagents", "-c", "user.email=bgagents@localhost", "-c", "commit.gpgsign=false"]


class MergeConflict(Conflict):
    code = "merge_conflict"


class GitError(Exception):
    """A git command failed; its message is git's own."""


def _git(cwd: Path | str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", *AUTHOR, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise GitError((done.stderr or done.stdout).strip() or f"git {args[0]} failed")
    return done


def create(workspace: Path, root: Path, task_id: str, name: str, start: str | None = None) -> Worktree:
    """A new worktree for `task_id` under `root`, branched from `start` (default: the workspace's HEAD)."""
    if shutil.which("git") is None:
        raise InvalidInput("isolation 'worktree' needs git, which is not installed here", code="no_git")
    top = _git(workspace, "rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0:
        raise InvalidInput(f"the workspace {workspace} is not a git repository, so a task cannot get a worktree "
                           "of it: run 'git init' there (and commit), or launch without isolation",
                           code="not_a_git_repository")
    repo = Path(top.stdout.strip()).resolve()
    head = _git(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    if head.returncode != 0:
        raise InvalidInput(f"the repository {repo} has no commit yet: commit once so worktrees have a base",
                           code="not_a_git_repository")
    base = (start or head.stdout.strip())
    branch = f"bgagents/{name[:40]}-{task_id.removeprefix('bg_')}"
    path = (root / task_id).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _git(repo, "worktree", "add", "--quiet", "-b", branch, str(path), base)
    sub = workspace.resolve().relative_to(repo)
    return Worktree(repo=str(repo), path=str(path), workspace=str(path / sub), branch=branch,
                    base=_git(path, "rev-parse", "HEAD").stdout.strip())


def commit_all(wt: Worktree, message: str) -> None:
    """Commits whatever the task changed in its worktree onto its branch (nothing when it changed nothing)."""
    _git(wt.path, "add", "-A")
    if _git(wt.path, "diff", "--cached", "--quiet", check=False).returncode != 0:
        _git(wt.path, "commit", "--quiet", "--no-verify", "-m", message)


def diff(wt: Worktree, message: str = "bgagents: the task's changes") -> tuple[str, str, list[str]]:
    """(stat, patch, files) of the branch against its base, its uncommitted changes included."""
    if wt.state != "active":
        return "", "", []
    commit_all(wt, message)
    span = f"{wt.base}..{wt.branch}"
    stat = _git(wt.path, "diff", "--stat", span).stdout.rstrip()
    patch = _git(wt.path, "diff", span).stdout
    files = [f for f in _git(wt.path, "diff", "--name-only", span).stdout.splitlines() if f]
    return stat, patch, files


def merge(wt: Worktree, message: str) -> str:
    """Merges the task's branch into the repository's current branch, then removes the worktree.

    A conflict is found before anything is touched (`git merge-tree`) and raised naming the files; a merge that
    git refuses for another reason (e.g. local changes in the way) is undone and raised too."""
    if wt.state != "active":
        raise Conflict(f"this worktree was already {wt.state}", code="already_" + wt.state)
    commit_all(wt, message)
    trial = _git(wt.repo, "merge-tree", "--write-tree", "--name-only", "--no-messages", "HEAD", wt.branch,
                 check=False)
    if trial.returncode == 1:
        files = [f for f in trial.stdout.splitlines()[1:] if f.strip()]
        raise MergeConflict(f"merging {wt.branch} conflicts in {', '.join(files)}; nothing was merged "
                            "(resolve it by hand, or discard the task's changes)")
    if trial.returncode != 0:
        raise Conflict(f"cannot merge {wt.branch}: {trial.stderr.strip()}", code="merge_failed")
    done = _git(wt.repo, "merge", "--no-ff", "--no-edit", "-m", message, wt.branch, check=False)
    if done.returncode != 0:
        if _git(wt.repo, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).returncode == 0:
            _git(wt.repo, "merge", "--abort", check=False)
        raise Conflict(f"git refused to merge {wt.branch}: {(done.stderr or done.stdout).strip()}; nothing "
                       "was merged", code="merge_failed")
    merged = _git(wt.repo, "rev-parse", "HEAD").stdout.strip()
    remove(wt)
    return merged


def remove(wt: Worktree) -> None:
    """Removes the worktree and its branch (the changes are gone unless they were merged)."""
    if Path(wt.path).exists():
        _git(wt.repo, "worktree", "remove", "--force", wt.path, check=False)
        shutil.rmtree(wt.path, ignore_errors=True)
    _git(wt.repo, "worktree", "prune", check=False)
    _git(wt.repo, "branch", "-D", wt.branch, check=False)


def remove_orphans(root: Path, keep: set[str]) -> None:
    """Removes the worktrees under `root` whose task is gone (e.g. pruned by retention), with their branches."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name in keep or not path.is_dir():
            continue
        common = _git(path, "rev-parse", "--git-common-dir", check=False)
        branch = _git(path, "branch", "--show-current", check=False).stdout.strip()
        if common.returncode == 0:
            repo = (path / common.stdout.strip()).resolve().parent
            remove(Worktree(repo=str(repo), path=str(path), workspace=str(path), branch=branch, base=""))
        else:
            shutil.rmtree(path, ignore_errors=True)
