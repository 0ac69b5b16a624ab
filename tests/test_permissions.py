"""Bash permissions see every simple command of a command line: attempts to slip one past a pattern."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgagents.core.permissions import decide

GIT_ONLY = {"bash": {"git *": "allow", "*": "ask"}}
ALL_BUT_RM = {"bash": {"rm *": "deny", "*": "allow"}}
ECHO_AND_GIT = {"bash": {"echo *": "allow", "git *": "allow", "ls*": "allow", "cat *": "allow",
                         "timeout *": "allow", "*": "ask"}}

# (permissions, command, expected decision)
CASES = [
    # what is plainly allowed stays allowed
    (GIT_ONLY, "git status", "allow"),
    (GIT_ONLY, "git log --oneline | git stripspace", "allow"),
    (GIT_ONLY, "git add -A && git commit -m 'x; rm -rf /'", "allow"),  # `;` inside quotes is not a separator
    (GIT_ONLY, "git", "allow"),  # `git *` matches the bare command too
    (ECHO_AND_GIT, "echo hi > notes.txt", "allow"),  # a redirection inside the workspace
    (ECHO_AND_GIT, "echo hi >> sub/../notes.txt 2>&1", "allow"),
    (ECHO_AND_GIT, "ls > /dev/null 2>&1", "allow"),
    (ECHO_AND_GIT, "timeout 5 git status", "allow"),
    (ECHO_AND_GIT, "cat <<EOF > notes.txt\nplain text\nEOF\n", "allow"),
    # the report's bypass, and every separator
    (GIT_ONLY, "git --version; echo x > ../outside.txt", "ask"),
    (GIT_ONLY, "git --version && rm -rf ..", "ask"),
    (GIT_ONLY, "git --version || rm -rf ..", "ask"),
    (GIT_ONLY, "git --version | sh", "ask"),
    (GIT_ONLY, "git --version |& sh", "ask"),
    (GIT_ONLY, "git --version\nrm -rf ..", "ask"),
    (GIT_ONLY, "git --version & rm -rf ..", "ask"),
    (GIT_ONLY, "git log $(rm -rf ..)", "ask"),
    (GIT_ONLY, "git log `rm -rf ..`", "ask"),
    (GIT_ONLY, 'git log "$(rm -rf ..)"', "ask"),
    (GIT_ONLY, "git log <(rm -rf ..)", "ask"),
    (GIT_ONLY, "git log > >(rm -rf ..)", "ask"),
    (GIT_ONLY, "(rm -rf ..)", "ask"),
    (GIT_ONLY, "{ rm -rf ..; }", "ask"),
    (GIT_ONLY, "f() { rm -rf ..; }; git status", "ask"),
    (GIT_ONLY, "if git status; then rm -rf ..; fi", "ask"),
    (GIT_ONLY, "for f in *; do rm $f; done", "ask"),
    (GIT_ONLY, "while git status; do rm x; done", "ask"),
    (GIT_ONLY, "case x in x) rm y;; esac", "ask"),
    (GIT_ONLY, "! rm x", "ask"),
    (GIT_ONLY, "X=$(rm -rf ..) git status", "ask"),
    (GIT_ONLY, "export X=$(rm -rf ..)", "ask"),
    (GIT_ONLY, "echo $((1 + $(rm -rf ..)))", "ask"),
    (GIT_ONLY, "[[ -f $(rm -rf ..) ]]", "ask"),
    (GIT_ONLY, "cat <<EOF\n$(rm -rf ..)\nEOF\n", "ask"),
    # redirections: part of their command, never auto-allowed outside the workspace
    (GIT_ONLY, "git log > ../outside.txt", "ask"),
    (GIT_ONLY, "git log >> /etc/passwd", "ask"),
    (GIT_ONLY, "git log &> /tmp/x", "ask"),
    (GIT_ONLY, "git log >& ../x", "ask"),
    (GIT_ONLY, "git log 2> ~/x", "ask"),
    (GIT_ONLY, "git log > $HOME/x", "ask"),
    (GIT_ONLY, "git log > \"$(echo ../x)\"", "ask"),
    (GIT_ONLY, "{ git log; } > ../x", "ask"),
    (GIT_ONLY, "cd .. && git log > x", "ask"),
    (GIT_ONLY, "git log > x; cd ..", "ask"),
    (GIT_ONLY, "> ../x git log", "ask"),
    (ECHO_AND_GIT, "cat <<EOF > ../outside.txt\nx\nEOF\n", "ask"),
    # eval-like constructs and commands run by other commands
    (GIT_ONLY, "eval 'rm -rf ..'", "ask"),
    (ALL_BUT_RM, "eval 'rm -rf ..'", "deny"),
    (ALL_BUT_RM, "eval \"echo; rm -rf ..\"", "deny"),
    (ALL_BUT_RM, "eval $CODE", "ask"),
    (ALL_BUT_RM, "bash -c 'rm -rf ..'", "deny"),
    (ALL_BUT_RM, "sh -ec 'ls && rm -rf ..'", "deny"),
    (ALL_BUT_RM, "bash -c \"$CODE\"", "ask"),
    (ALL_BUT_RM, "echo rm -rf .. | bash", "ask"),
    (ALL_BUT_RM, "source ./script.sh", "ask"),
    (ALL_BUT_RM, ". ./script.sh", "ask"),
    (ALL_BUT_RM, "trap 'rm -rf ..' EXIT; ls", "deny"),
    (ALL_BUT_RM, "$CMD -rf ..", "ask"),
    (GIT_ONLY, "git${IFS}status", "ask"),
    (ALL_BUT_RM, "$'rm' -rf ..", "ask"),
    (ALL_BUT_RM, "r\\m -rf ..", "deny"),
    (ALL_BUT_RM, "'rm' -rf ..", "deny"),
    (ALL_BUT_RM, "\"rm\" -rf ..", "deny"),
    (ALL_BUT_RM, "$(echo rm) -rf ..", "ask"),
    (ALL_BUT_RM, "env FOO=1 rm -rf ..", "deny"),
    (ALL_BUT_RM, "timeout -s KILL 5 rm -rf ..", "deny"),
    (ALL_BUT_RM, "nohup rm -rf .. &", "deny"),
    (ALL_BUT_RM, "ls | xargs rm", "deny"),
    (ALL_BUT_RM, "find . -name '*.o' -exec rm {} ;", "deny"),
    (ALL_BUT_RM, "command rm x", "deny"),
    (ALL_BUT_RM, "exec rm x", "deny"),
    (ALL_BUT_RM, "sudo -u root rm x", "deny"),
    (ECHO_AND_GIT, "timeout 5 rm -rf ..", "ask"),
    # deny on any part denies, whatever the others are
    (ALL_BUT_RM, "ls; rm -rf ..", "deny"),
    (ALL_BUT_RM, "ls $(rm -rf ..)", "deny"),
    (ALL_BUT_RM, "echo ok | (cd ..; rm -rf x)", "deny"),
    (ALL_BUT_RM, "rm", "deny"),
    # what cannot be parsed is asked about, never allowed
    (GIT_ONLY, "git log \"unterminated", "ask"),
    (GIT_ONLY, "git log $(", "ask"),
    (GIT_ONLY, "git log; )", "ask"),
    (ALL_BUT_RM, "echo 'unterminated", "ask"),
    (ALL_BUT_RM, "rm -rf .. 'unterminated", "deny"),
]


@pytest.mark.parametrize(("permissions", "command", "expected"), CASES,
                         ids=[c[1].replace("\n", "\\n")[:60] for c in CASES])
def test_bash_decision(permissions: dict[str, object], command: str, expected: str, tmp_path: Path) -> None:
    decision, why = decide(permissions, "bash", {"command": command}, tmp_path)
    assert decision == expected, why
    assert why


def test_the_reason_names_the_part_that_needs_a_person(tmp_path: Path) -> None:
    decision, why = decide(GIT_ONLY, "bash", {"command": "git --version; echo x > ../outside.txt"}, tmp_path)
    assert decision == "ask" and "echo x > ../outside.txt" in why
    decision, why = decide(ECHO_AND_GIT, "bash", {"command": "echo x > ../outside.txt"}, tmp_path)
    assert decision == "ask" and "outside the workspace" in why


def test_a_symbolic_link_out_of_the_workspace_is_outside(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "out").symlink_to(tmp_path)
    assert decide(ECHO_AND_GIT, "bash", {"command": "echo x > out/secret"}, ws)[0] == "ask"
    assert decide(ECHO_AND_GIT, "bash", {"command": "echo x > inside"}, ws)[0] == "allow"


def test_blanket_rules_and_other_tools_are_unchanged(tmp_path: Path) -> None:
    assert decide({"bash": "allow"}, "bash", {"command": "a; b"}, tmp_path)[0] == "allow"
    assert decide({"bash": "deny"}, "bash", {"command": "ls"}, tmp_path)[0] == "deny"
    assert decide({}, "bash", {"command": "anything"}, tmp_path)[0] == "allow"
    assert decide({"write": {"*.md": "allow"}}, "write", {"path": "a.md"}, tmp_path)[0] == "allow"
    assert decide({"write": {"*.md": "allow"}}, "write", {"path": "a.py"}, tmp_path)[0] == "ask"
