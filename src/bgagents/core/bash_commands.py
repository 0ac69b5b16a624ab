"""What a bash command line runs, read with tree-sitter-bash: its simple commands and where it writes.

Permissions are decided per simple command, so `git log; rm -rf ..` is never allowed by `git *`.
Every simple command anywhere counts: in lists, pipelines, subshells, functions, conditions and loops,
inside `$( )`, backticks and `<( )`/`>( )` wherever the shell would run them (`shell_scan` finds those the
syntax tree misses), and the code given to `eval`, `bash -c '…'` and the like.

A simple command is seen by patterns as written, with its own redirections after it
(`echo hi > notes.txt`); a redirection of a compound statement (`{ …; } > f`) is checked for where it
writes only. `Part.ask_at_most` marks what a pattern can never allow on its own: an output redirection
outside the workspace (or to a place only known at run time), a command whose name is computed at run
time, and what `program_rules` says runs a program or code given on the command line.
A wrapper (`env`, `timeout`, `xargs`, `find -exec`, …) is judged as the command it runs (its own text only
meets deny patterns), and every later word that could start a command is checked against deny patterns.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

from . import program_rules, shell_scan
from .program_rules import Words

MAX_NESTING = 4  # eval "eval '…'" deeper than this is asked about
SAFE_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
DIRECTORY_CHANGES = frozenset({"cd", "pushd", "popd"})
SUBSTITUTIONS = ("command_substitution", "process_substitution")


@dataclass(frozen=True)
class Part:
    """One simple command as patterns see it."""

    text: str
    ask_at_most: str | None = None  # why no pattern may allow it, when one can't
    deny_only: bool = False  # only checked against deny patterns (a word after a wrapper's options)


class Unparsable(ValueError):
    """The command line is not valid bash (or nests code too deeply to follow)."""


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bash.language()))


def parts(command: str, workspace: Path) -> list[Part]:
    """Every simple command `command` would run, with what limits its permission."""
    return list(_parts(command, workspace.resolve(), 0))


def _parts(command: str, workspace: Path, depth: int) -> Iterator[Part]:
    if depth > MAX_NESTING:
        raise Unparsable(f"code nested in eval or bash -c more than {MAX_NESTING} levels deep")
    source = command.encode()
    tree = _parser().parse(source)
    found = shell_scan.substitutions(source)
    if tree.root_node.has_error or found is None:
        raise Unparsable("it is not valid bash")
    reader = _Reader(workspace, depth, changes_directory=_changes_directory(tree.root_node))
    yield from reader.walk(tree.root_node)
    covered = {node.start_byte for node in _nodes(tree.root_node) if node.type in SUBSTITUTIONS}
    for substitution in found:  # backticks always: tree-sitter misreads some (`a` `b`, \`escaped\`)
        if substitution.kind == "`" or substitution.start not in covered:
            yield from _parts(substitution.code or "", workspace, depth + 1)


def _nodes(root: Node) -> Iterator[Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


def _changes_directory(root: Node) -> bool:
    """After a `cd` a relative path no longer says where it is, so relative targets count as unknown."""
    for node in _nodes(root):
        if node.type == "command":
            name = node.child_by_field_name("name")
            if name is not None and _text(name) in DIRECTORY_CHANGES:
                return True
    return False


def _text(node: Node) -> str:
    return (node.text or b"").decode(errors="replace")


def literal(node: Node) -> str | None:
    """The value of a word when nothing in it is expanded at run time, else None."""
    kind = node.type
    if kind in ("word", "number"):
        if node.named_children:
            return None
        text = _text(node)
        if any(c in text for c in "*?[~{`") or "$(" in text:  # expanded or run by the shell
            return None
        return text.replace("\\\n", "").replace("\\", "") if "\\" in text else text
    if kind == "raw_string":
        return _text(node)[1:-1]
    if kind == "string":
        if any(child.type != "string_content" for child in node.named_children):
            return None
        inner = _text(node)[1:-1]
        return inner.replace('\\"', '"').replace("\\$", "$").replace("\\`", "`").replace("\\\\", "\\")
    if kind == "concatenation":
        pieces = [literal(child) for child in node.named_children]
        return None if any(p is None for p in pieces) else "".join(p or "" for p in pieces)
    return None


@dataclass
class _Reader:
    workspace: Path
    depth: int
    changes_directory: bool

    def walk(self, node: Node) -> Iterator[Part]:
        kind = node.type
        if kind == "redirected_statement":
            body = node.child_by_field_name("body")
            redirects = [c for c in node.named_children if c != body]
            if body is not None and body.type == "command":
                yield from self.command(body, redirects)
                return
            for redirect in redirects:
                yield from self.redirect(redirect, _text(redirect))
            if body is not None:
                yield from self.walk(body)
            return
        if kind == "command":
            yield from self.command(node, [])
            return
        if kind in ("declaration_command", "unset_command", "test_command") or (
                kind in ("variable_assignment", "variable_assignments")
                and node.parent is not None and node.parent.type not in ("command", "declaration_command",
                                                                         "variable_assignments")):
            assigned = [node] if node.type == "variable_assignment" else _assignments(node)
            why = next(filter(None, (program_rules.variable_asks(n) for n in map(_variable, assigned))), None)
            yield Part(_text(node), ask_at_most=why)
            for child in node.named_children:
                yield from self.nested(child)
            return
        for child in node.named_children:
            yield from self.walk(child)

    def nested(self, node: Node) -> Iterator[Part]:
        """Commands inside a word: `$( )`, backticks, `<( )`, and those inside arithmetic."""
        if node.type in ("command_substitution", "process_substitution"):
            yield from self.walk(node)
            return
        for child in node.named_children:
            yield from self.nested(child)

    def command(self, node: Node, outer_redirects: list[Node]) -> Iterator[Part]:
        name_node = node.child_by_field_name("name")
        own_redirects = [c for c in node.named_children if c.type.endswith("_redirect")]
        words = [c for c in node.named_children if c.type not in ("variable_assignment",)
                 and not c.type.endswith("_redirect") and c != name_node]
        name = literal(name_node.named_children[0]) if name_node is not None and name_node.named_children else None
        written = _text(node)
        if name is not None and name_node is not None:  # 'rm' and r\m are rm to patterns
            start, end = name_node.start_byte - node.start_byte, name_node.end_byte - node.start_byte
            raw = node.text or b""
            written = (raw[:start] + name.encode() + raw[end:]).decode(errors="replace")
        text = " ".join([written, *(_redirect_text(r) for r in outer_redirects)])
        limit: str | None = None
        if name_node is not None and name is None:
            limit = "its command name is only known when it runs"
        for variable in map(_variable, _assignments(node)):
            limit = limit or program_rules.variable_asks(variable)
        if name_node is not None:
            yield from self.judge(text, name, [literal(w) for w in words], limit)
        else:
            yield Part(text, ask_at_most=limit)
        for redirect in [*own_redirects, *outer_redirects]:
            yield from self.redirect(redirect, text)
        for child in node.named_children:
            if not child.type.endswith("_redirect"):
                yield from self.nested(child)

    def judge(self, text: str, name: str | None, values: Words, limit: str | None) -> Iterator[Part]:
        """The parts of one command: itself, and what it runs (a wrapper is judged as the command it runs)."""
        reading = program_rules.read(name, values) if name is not None else program_rules.Reading()
        ask = limit or reading.ask
        yield Part(text, ask_at_most=ask, deny_only=reading.wrapper and ask is None)
        for run in reading.runs:
            inner = " ".join(w if w is not None else "…" for w in run)
            unknown = "its command name is only known when it runs" if run[0] is None else None
            yield from self.judge(inner, run[0], run[1:], unknown)
        for code in reading.code:
            yield from _parts(code, self.workspace, self.depth + 1)
        for words in reading.deny_only:
            yield Part(" ".join(w if w is not None else "…" for w in words), deny_only=True)

    def redirect(self, node: Node, owner: str) -> Iterator[Part]:
        """Where a redirection writes; it keeps its owner's text, only capped when it writes outside."""
        if node.type == "heredoc_redirect":
            for child in node.named_children:
                if child.type == "file_redirect":
                    yield from self.redirect(child, owner)
                else:
                    yield from self.nested(child)
            return
        if node.type != "file_redirect":
            yield from self.nested(node)
            return
        operator = "".join(_text(c) for c in node.children if not c.is_named)
        destinations = node.children_by_field_name("destination")
        for destination in destinations:
            yield from self.nested(destination)
        if ">" not in operator:
            return
        for destination in destinations:
            if destination.type == "number" and "&" in operator:
                continue  # 2>&1: a copy of a descriptor, not a file
            if destination.type == "process_substitution":
                continue  # >(cmd): cmd is a part of its own
            where = self.outside(destination)
            if where:
                yield Part(owner, ask_at_most=f"it writes {where}")

    def outside(self, destination: Node) -> str | None:
        """Why a redirection target is not known to be inside the workspace, or None when it is."""
        target = literal(destination)
        if target is None:
            return f"to '{_text(destination)}', a place only known when it runs"
        if target in SAFE_TARGETS or target == "-":
            return None
        if self.changes_directory and not os.path.isabs(target):
            return f"to '{target}' after changing directory"
        path = Path(target) if os.path.isabs(target) else self.workspace / target
        resolved = path.resolve()
        if resolved == self.workspace or resolved.is_relative_to(self.workspace):
            return None
        return f"outside the workspace, to '{target}'"


def _redirect_text(node: Node) -> str:
    if node.type == "heredoc_redirect":
        start = next((c for c in node.named_children if c.type == "heredoc_start"), None)
        nested = [_text(c) for c in node.named_children if c.type == "file_redirect"]
        return " ".join(["<<" + (_text(start) if start is not None else ""), *nested])
    return _text(node)


def _assignments(node: Node) -> list[Node]:
    return [c for c in node.named_children if c.type == "variable_assignment"]


def _variable(assignment: Node) -> str:
    name = assignment.child_by_field_name("name")
    target = name.named_children[0] if name is not None and name.type == "subscript" else name
    return _text(target) if target is not None else ""
