"""The server's own git never runs what a task planted in a repository (hooks, config, attributes), and
gets no secret in its environment: on a real server (isolated launch, task end, diff, merge, discard,
orphan clean-up) and, more widely, for every git command the server runs."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bgagents.core import git, git_sandbox

from .conftest import ServerProcess
from .fake_openai import FakeOpenAI, env_for
from .test_durability import wait_for
from .test_worktrees import git as plain_git
from .test_worktrees import repo

# every hook of githooks(5)
HOOKS = (
    "applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit", "prepare-commit-msg",
    "commit-msg", "post-commit", "pre-rebase", "post-checkout", "post-merge", "pre-push", "pre-receive", "update",
    "proc-receive", "post-receive", "post-update", "reference-transaction", "push-to-checkout", "pre-auto-gc",
    "post-rewrite", "sendemail-validate", "fsmonitor-watchman", "p4-changelist", "p4-prepare-changelist",
    "p4-post-changelist", "p4-pre-submit", "post-index-change",
)
# config keys naming a program (git help config), each set to a planted program named after the key
PROGRAM_KEYS = (
    "core.fsmonitor", "core.editor", "core.pager", "core.sshCommand", "core.askPass", "core.gitProxy",
    "core.alternateRefsCommand", "sequence.editor", "diff.external", "diff.evil.textconv", "diff.evil.command",
    "diff.inc.textconv", "filter.evil.clean", "filter.evil.smudge", "merge.evil.driver", "credential.helper",
    "credential.https://example.com.helper", "gpg.program", "gpg.ssh.program", "gpg.x509.program",
    "gpg.ssh.defaultKeyCommand", "interactive.diffFilter", "pager.diff", "pager.log", "pager.merge",
    "uploadpack.packObjectsHook", "remote.origin.uploadpack", "remote.origin.receivepack", "difftool.evil.cmd",
    "mergetool.evil.cmd", "tar.evil.command", "sendemail.toCmd", "imap.tunnel", "web.browser", "man.viewer",
)
SECRETS = {"OPENAI_API_KEY": "test-key", "MY_SERVICE_API_KEY": "sk-live-abc123", "DEPLOY_PASSWORD": "hunter2"}


def plant_script(marks: Path) -> str:
    """Shell that plants, from inside the repository (a task's worktree or the workspace), a program in
    every place git could run one from; each program, if run, leaves `marks/NAME.PID` with its environment."""
    lines = ['set -e', 'common=$(cd "$(git rev-parse --git-common-dir)" && pwd)', 'mkdir -p "$common/hooks" '
             '"$common/hookdir" "$common/info"']

    def program(name: str) -> str:
        path = f"$common/bg-{name.replace('/', '_').replace(':', '_')}"
        passes = "exec cat" if name.endswith(("clean", "smudge", "textconv")) else "exit 0"
        body = f"#!/bin/sh\\nenv > {shlex.quote(str(marks))}/{name}.\\$\\$\\n{passes}\\n"
        lines.append(f'printf "{body}" > "{path}" && chmod +x "{path}"')
        return path

    for hook in HOOKS:
        path = program(f"hook-{hook}")
        lines.append(f'cp "{path}" "$common/hooks/{hook}" && cp "{path}" "$common/hookdir/{hook}"')
    for key in PROGRAM_KEYS:
        lines.append(f'git config --file "$common/config" "{key}" "{program(key)}"')
    lines += [
        'git config --file "$common/config" core.hooksPath "$common/hookdir"',
        'git config --file "$common/config" filter.evil.required true',
        'git config --file "$common/config" commit.gpgSign true',
        'git config --file "$common/config" tag.gpgSign true',
        'git config --file "$common/config" log.showSignature true',
        'git config --file "$common/config" diff.tool evil && git config --file "$common/config" merge.tool evil',
        'git config --file "$common/config" remote.origin.url "ext::sh -c touch% $common/bg-ext"',
        f'git config --file "$common/more.config" filter.inc.clean "{program("filter.inc.clean")}"',
        f'git config --file "$common/more.config" filter.inc.smudge "{program("filter.inc.smudge")}"',
        'git config --file "$common/config" include.path "$common/more.config"',
        'git config --file "$common/config" "includeIf.gitdir:/.path" "$common/more.config"',
        'printf "* filter=evil diff=evil merge=evil\\n*.txt filter=inc diff=inc merge=evil\\n" '
        '> "$common/info/attributes"',
    ]
    return "\n".join(lines)


def planted_runs(marks: Path) -> dict[str, str]:
    return {p.name: p.read_text(errors="replace") for p in marks.iterdir()} if marks.is_dir() else {}


def test_no_planted_program_runs_on_a_real_server(server_factory: Callable[..., ServerProcess],
                                                  tmp_path: Path) -> None:
    ws = repo(tmp_path / "ws")
    marks = tmp_path / "marks"
    marks.mkdir()
    (ws / "plant.sh").write_text(plant_script(marks) + "\n")
    plain_git(ws, "add", "plant.sh")
    plain_git(ws, "commit", "-qm", "a script a task could have written")
    plant = "sh plant.sh && echo edited >> shared.txt && echo new > new.md && echo PLANTED"
    with FakeOpenAI() as fake:
        env = {**env_for(fake.base_url), **SECRETS, "BGAGENTS_WORKSPACE": str(ws)}
        server = server_factory(**env)
        server.start()
        with server.client() as client:
            def launch(command: str) -> str:
                made = client.post("/tasks", json={"prompt": f"run: {command}", "model": "openai-chat:run",
                                                   "isolation": "worktree"})
                assert made.status_code == 201, made.text
                tid: str = made.json()["id"]
                wait_for(lambda: client.get(f"/tasks/{tid}").json()["status"] in ("completed", "failed"), 60,
                         "the task")
                return tid

            planter = launch(plant)  # plants from its sandbox, then the task's end commits its changes
            assert "PLANTED" in client.get(f"/tasks/{planter}").json()["result"]["text"]
            other = launch("echo other > other.md")  # an isolated launch: a checkout in a planted repository
            later = launch("echo later > later.md")  # left for the orphan clean-up
            changes = client.get(f"/tasks/{planter}/diff")
            assert changes.status_code == 200 and "new.md" in changes.json()["files"], changes.text
            merged = client.post(f"/tasks/{planter}/merge")
            assert merged.status_code == 200, merged.text
            assert client.post(f"/tasks/{other}/discard").status_code == 200
            later_path = Path(client.get(f"/tasks/{later}").json()["worktree"]["path"])
        server.stop()
        # a restart with a tiny retention prunes the tasks: their worktrees are orphans, cleaned up
        server.env["BGAGENTS_LIMITS__RETENTION_DAYS"] = "0.000001"
        server.start()
        wait_for(lambda: not later_path.exists(), 60, "the orphan clean-up")
        server.stop()
    assert "edited" in (ws / "shared.txt").read_text() and (ws / "new.md").exists()
    ran = planted_runs(marks)
    leaked = sorted({v for v in [*SECRETS.values(), server.token] for text in ran.values() if v in text})
    assert ran == {}, f"{len(ran)} runs of {len({n.rsplit('.', 1)[0] for n in ran})} planted programs, " \
                      f"secrets seen: {leaked}: {sorted(ran)}"


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    ws = repo(tmp_path / "ws")
    marks = tmp_path / "marks"
    marks.mkdir()
    subprocess.run(["sh", "-c", plant_script(marks)], cwd=ws, check=True, env={"PATH": os.environ["PATH"]})
    return ws, marks


def test_every_git_the_server_runs_ignores_what_the_repository_names(planted: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    """Wider than the server's own commands: checkout, commit, diff, log, merge (also of a file changed on
    both sides, which needs the planted merge driver), stash, worktrees, branches, a remote."""
    ws, marks = planted
    wt = tmp_path / "wt"
    git.run(ws, "worktree", "add", "-q", "-b", "side", str(wt), writable=[tmp_path])
    (wt / "shared.txt").write_text("changed on the side\n")
    (wt / "new.md").write_text("new\n")
    git.run(wt, "add", "-A")
    git.run(wt, "commit", "-qm", "side")
    (ws / "shared.txt").write_text("changed on main\n")
    git.run(ws, "status", "--porcelain")
    git.run(ws, "diff", "--no-ext-diff", "--no-textconv")
    git.run(ws, "stash")
    git.run(ws, "stash", "pop")
    git.run(ws, "commit", "-qam", "main")
    git.run(ws, "log", "-p", "-1", check=False)  # fails with an emptied textconv (unless --no-textconv): runs none
    git.run(ws, "show", "HEAD", check=False)
    git.run(ws, "log", "-p", "-1", "--no-textconv", "--no-ext-diff")
    git.run(ws, "diff", "--no-ext-diff", "--no-textconv", "--stat", "HEAD", "side")
    trial = git.run(ws, "merge-tree", "--write-tree", "HEAD", "side", check=False)
    assert trial.returncode != 0  # the file changed on both sides needs the merge driver: refused, not run
    assert git.run(ws, "merge", "--no-edit", "side", check=False).returncode != 0
    git.run(ws, "merge", "--abort", check=False)
    git.run(ws, "checkout", "-q", "--detach", "side")
    git.run(ws, "checkout", "-q", "main")
    assert git.run(ws, "ls-remote", "origin", check=False).returncode != 0  # ext:: is refused
    git.run(ws, "worktree", "remove", "--force", str(wt), writable=[tmp_path])
    git.run(ws, "branch", "-D", "side")
    git.run(ws, "gc", "--auto")
    assert planted_runs(marks) == {}


def test_a_side_merge_without_the_driver_still_merges(planted: tuple[Path, Path], tmp_path: Path) -> None:
    from bgagents.core import worktrees

    ws, marks = planted
    made = worktrees.create(ws, tmp_path / "wts", "bg_one", "one")
    Path(made.path, "new.md").write_text("from the task\n")
    _, patch, files = worktrees.diff(made)
    assert files == ["new.md"] and "+from the task" in patch
    worktrees.merge(made, "merge one")
    assert (ws / "new.md").read_text() == "from the task\n"
    assert planted_runs(marks) == {}


def test_the_environment_holds_no_secret_and_no_program() -> None:
    given = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
             "OPENAI_API_KEY": "x1", "BGAGENTS_TOKEN": "x2", "TELEGRAM_BOT_TOKEN": "x3", "GIT_SSH_COMMAND": "x4",
             "GIT_EXTERNAL_DIFF": "x5", "GIT_CONFIG_GLOBAL": "x6", "GIT_EXEC_PATH": "x7", "EDITOR": "x8",
             "PAGER": "x9", "GIT_DIR": "x10", "LD_PRELOAD": "x11", "PYTHONPATH": "x12"}
    env = git.environment(given)
    assert not {v for v in env.values()} & {f"x{i}" for i in range(1, 13)}
    assert env["PATH"] == "/usr/bin" and env["LANG"] == "C.UTF-8" and env["LC_ALL"] == "C"
    assert env["HOME"] != "/root" and os.listdir(env["HOME"]) == []
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_CONFIG_NOSYSTEM"] == "1"


@pytest.mark.parametrize(("key", "runs"), [
    ("filter.x.clean", True), ("filter.x.smudge", True), ("filter.x.process", True), ("diff.x.textconv", True),
    ("diff.x.command", True), ("merge.x.driver", True), ("credential.https://h.helper", True),
    ("difftool.x.cmd", True), ("difftool.x.path", True), ("gpg.ssh.defaultKeyCommand", True),
    ("alias.x", True), ("pager.log", True), ("remote.o.uploadpack", True), ("remote.o.vcs", True),
    ("submodule.s.update", True), ("tar.tgz.command", True), ("sendemail.x.toCmd", True),
    ("user.name", False), ("core.bare", False), ("remote.o.url", False), ("branch.main.merge", False),
    ("include.path", False), ("diff.x.binary", False), ("gpg.format", False), ("core.repositoryformatversion", False),
])
def test_which_keys_hold_a_program(key: str, runs: bool) -> None:
    assert git.program_key(key) is runs


def test_a_workspace_whose_config_moves_the_work_tree_is_not_followed(tmp_path: Path) -> None:
    """`core.worktree` would send a checkout or a merge outside the repository: the work tree is pinned."""
    ws = repo(tmp_path / "ws")
    outside = tmp_path / "outside"
    outside.mkdir()
    plain_git(ws, "config", "core.worktree", str(outside))
    git.run(ws, "checkout", "-q", "-b", "other")
    git.run(ws, "reset", "-q", "--hard")
    assert list(outside.iterdir()) == [] and (ws / "shared.txt").exists()


@pytest.mark.skipif(git_sandbox.bwrap() is None, reason="bubblewrap is not installed or cannot run here")
def test_what_slips_past_the_config_read_runs_boxed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key written between git.py's read of the config and the command (a task running beside it can)
    is simulated by hiding the repository's program keys from the read: the filter runs, in the box."""
    ws = repo(tmp_path / "ws")
    secret = tmp_path / "token"
    secret.write_text("tok-secret")
    probe = f"env > {ws}/seen; cat {secret} >> {ws}/seen; touch {tmp_path}/outside; cat"
    plain_git(ws, "config", "filter.slip.clean", probe)
    (ws / ".git" / "info" / "attributes").write_text("* filter=slip\n")
    (ws / "new.txt").write_text("x\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setattr(git, "repository_programs", lambda top: [])
    git.run(ws, "add", "-A")
    seen = (ws / "seen").read_text()
    assert "PATH=" in seen  # it did run: this is what the box is for
    assert "sk-secret" not in seen and "tok-secret" not in seen and not (tmp_path / "outside").exists()
