"""The core stands alone: nothing it imports, directly or through what it imports, reaches the packages
built on top of it (conversations, schedules, channels, the server, the CLI)."""

from __future__ import annotations

import ast
from pathlib import Path

import bgagents

PACKAGE = Path(bgagents.__file__).parent
ABOVE_CORE = ("conversation", "schedules", "channels", "server", "cli", "runtime")


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(name: str, path: Path) -> set[str]:
    """Every bgagents module `path` imports, type-checking-only imports included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bgagents")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if not module.startswith("bgagents"):
                continue
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names if _module_file(f"{module}.{a.name}")}
    return found


def reachable_from(start: list[str]) -> dict[str, str]:
    """Each bgagents module reachable from `start`, with the module that first imports it."""
    seen: dict[str, str] = {name: "" for name in start}
    todo = list(start)
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None:
            continue
        for imported in _imports(name, path):
            if imported not in seen:
                seen[imported] = name
                todo.append(imported)
    return seen


def test_core_reaches_nothing_built_on_it() -> None:
    core = [f"bgagents.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__"]
    assert "bgagents.core.runtime" in core and "bgagents.core.extensions" in core
    reached = reachable_from(core)
    wrong = {m: via for m, via in reached.items() if m.split(".")[1] in ABOVE_CORE}
    assert not wrong, f"core reaches packages built on top of it (module: imported by): {wrong}"


def test_the_check_sees_an_import_from_above() -> None:
    """The walk does find such imports: the public runtime reaches the conversation package."""
    reached = reachable_from(["bgagents.runtime"])
    assert "bgagents.conversation.orchestrator" in reached
    assert "bgagents.core.runtime" in reached
