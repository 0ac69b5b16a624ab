"""Isolated workspaces: a task that asks for `isolation = "worktree"` works in its own git worktree of the
workspace, on a branch named after it, so agents editing one repository side by side do not trample each other.
Its changes come back as a branch and a diff to review, then merge or discard."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import Conflict, InvalidInput
from . import git
from .git import GitError
from .schema import Worktree

BRANCH_PREFIX = "bgagents/"
DIFF = ("diff", "--no-ext-diff", "--no-textconv")  # a repository's diff drivers are never run


class MergeConflict(Conflict):
    code = "merge_conflict"


def create(workspace: Path, root: Path, task_id: str, name: str, start: str | None = None) -> Worktree:
    """A new worktree for `task_id` under `root`, branched from `start` (default: the workspace's HEAD)."""
    if shutil.which("git") is None:
        raise InvalidInput("isolation 'worktree' needs git, which is not installed here", code="no_git")
    repo = git.top_of(workspace.resolve())
    if repo is None or git.run(repo, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise InvalidInput(f"the workspace {workspace} is not a git repository, so a task cannot get a worktree "
                           "of it: run 'git init' there (and commit), or launch without isolation",
                           code="not_a_git_repository")
    head = git.run(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    if head.returncode != 0:
        raise InvalidInput(f"the repository {repo} has no commit yet: commit once so worktrees have a base",
                           code="not_a_git_repository")
    base = (start or head.stdout.strip())
    branch = f"{BRANCH_PREFIX}{name[:40]}-{task_id.removeprefix('bg_')}"
    path = (root / task_id).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        git.run(repo, "worktree", "add", "--quiet", "-b", branch, str(path), base, writable=[root])
    sub = workspace.resolve().relative_to(repo)
    return Worktree(repo=str(repo), path=str(path), workspace=str(path / sub), branch=branch,
                    base=git.run(path, "rev-parse", "HEAD").stdout.strip())


def commit_all(wt: Worktree, message: str) -> None:
    """Commits whatever the task changed in its worktree onto its branch (nothing when it changed nothing)."""
    if git.common_dir(Path(wt.path)) != git.common_dir(Path(wt.repo)):  # its .git file is the task's to write
        raise GitError(f"the worktree {wt.path} no longer belongs to the repository {wt.repo}")
    git.run(wt.path, "add", "-A")
    if git.run(wt.path, "diff", "--cached", "--quiet", check=False).returncode != 0:
        git.run(wt.path, "commit", "--quiet", "--no-verify", "-m", message)


def diff(wt: Worktree, message: str = "bgagents: the task's changes") -> tuple[str, str, list[str]]:
    """(stat, patch, files) of the branch against its base, its uncommitted changes included."""
    if wt.state != "active":
        return "", "", []
    commit_all(wt, message)
    span = f"{wt.base}..{wt.branch}"
    stat = git.run(wt.path, *DIFF, "--stat", span).stdout.rstrip()
    patch = git.run(wt.path, *DIFF, span).stdout
    files = [f for f in git.run(wt.path, *DIFF, "--name-only", span).stdout.splitlines() if f]
    return stat, patch, files


def merge(wt: Worktree, message: str) -> str:
    """Merges the task's branch into the repository's current branch, then removes the worktree.

    A conflict is found before anything is touched (`git merge-tree`) and raised naming the files; a merge that
    git refuses for another reason (e.g. local changes in the way) is undone and raised too."""
    if wt.state != "active":
        raise Conflict(f"this worktree was already {wt.state}", code="already_" + wt.state)
    commit_all(wt, message)
    trial = git.run(wt.repo, "merge-tree", "--write-tree", "--name-only", "--no-messages", "HEAD", wt.branch,
                 check=False)
    if trial.returncode == 1:
        files = [f for f in trial.stdout.splitlines()[1:] if f.strip()]
        raise MergeConflict(f"merging {wt.branch} conflicts in {', '.join(files)}; nothing was merged "
                            "(resolve it by hand, or discard the task's changes)")
    if trial.returncode != 0:
        raise Conflict(f"cannot merge {wt.branch}: {trial.stderr.strip()}", code="merge_failed")
    done = git.run(wt.repo, "merge", "--no-ff", "--no-edit", "--no-verify", "--no-stat", "-m", message, wt.branch,
                   check=False)
    if done.returncode != 0:
        if git.run(wt.repo, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).returncode == 0:
            git.run(wt.repo, "merge", "--abort", check=False)
        raise Conflict(f"git refused to merge {wt.branch}: {(done.stderr or done.stdout).strip()}; nothing "
                       "was merged", code="merge_failed")
    merged = git.run(wt.repo, "rev-parse", "HEAD").stdout.strip()
    remove(wt)
    return merged


def remove(wt: Worktree) -> None:
    """Removes the worktree and its branch (the changes are gone unless they were merged)."""
    if Path(wt.path).exists():
        git.run(wt.repo, "worktree", "remove", "--force", wt.path, check=False, writable=[Path(wt.path).parent])
        shutil.rmtree(wt.path, ignore_errors=True)
    common = git.common_dir(Path(wt.repo))
    for admin in _admin_dirs(common, Path(wt.path)) if common is not None else []:
        shutil.rmtree(admin, ignore_errors=True)  # what `worktree prune` would do, for this worktree only
    if wt.branch.startswith(BRANCH_PREFIX):  # an orphan's branch is read from its (writable) .git: only ours
        git.run(wt.repo, "branch", "-D", wt.branch, check=False)


def remove_orphans(root: Path, keep: set[str]) -> None:
    """Removes the worktrees under `root` whose task is gone (e.g. pruned by retention), with their branches."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name in keep or not path.is_dir():
            continue
        common = git.common_dir(path)
        if common is not None and _registered(common, path):
            branch = git.run(path, "branch", "--show-current", check=False).stdout.strip()
            remove(Worktree(repo=str(common.parent), path=str(path), workspace=str(path), branch=branch, base=""))
        else:
            shutil.rmtree(path, ignore_errors=True)


def _registered(common: Path, path: Path) -> bool:
    """Whether the repository at `common` lists `path` as one of its worktrees: the orphan's own `.git` file
    (which its task could write) is not enough to let the clean-up run git in a repository."""
    return bool(_admin_dirs(common, path))


def _admin_dirs(common: Path, path: Path) -> list[Path]:
    """The entries of `common/worktrees` that stand for the worktree at `path`. (`git worktree prune` is not
    used: in the box it would not see the repository's other worktrees and would drop them all.)"""
    found = []
    for admin in (common / "worktrees").glob("*"):
        pointer = admin / "gitdir"
        if pointer.is_file() and Path(pointer.read_text().strip()).resolve() == (path / ".git").resolve():
            found.append(admin)
    return found
