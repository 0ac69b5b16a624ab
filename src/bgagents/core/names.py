"""Short slug names from prompts (SPEC 4.8) and task ids."""

from __future__ import annotations

import re
import secrets
import string
import threading
import time
from collections.abc import Container

STOP_WORDS = frozenset("""
a an the and or but if then else of to in on at by for with from into onto about as is are was were be been
being do does did done have has had this that these those it its i me my we our you your he she they them
their please can could would should will shall may might must just so than too very what which who whom how
why when where all any some each every no not only own same such there here up down out over under again
further once also let lets make get go
""".split())


_DIGITS = string.digits + string.ascii_lowercase  # in ASCII order, so fixed-width strings sort as numbers
_EPOCH_MS = 1_735_689_600_000  # 2025-01-01
_last_ms = 0
_lock = threading.Lock()


def _base36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, d = divmod(n, 36)
        out.append(_DIGITS[d])
    return "".join(reversed(out))


def task_id() -> str:
    """`bg_` + 8 characters of milliseconds (strictly rising in this process) + 4 random ones.

    Ids sort in launch order. DBOS orders a queue by priority, then enqueue time (whole seconds on
    SQLite before Python 3.12), then workflow id, so sortable ids keep first-in-first-out."""
    global _last_ms
    with _lock:
        _last_ms = max(int(time.time() * 1000) - _EPOCH_MS, _last_ms + 1)
        ms = _last_ms
    return "bg_" + _base36(ms, 8) + "".join(secrets.choice(_DIGITS) for _ in range(4))


MAX_NAME = 40


def slugify(text: str, taken: Container[str] = ()) -> str:
    """Lower case, stop words and one-letter words dropped, at most 4 words and 40 characters; unique."""
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 1 and w not in STOP_WORDS]
    base = ""
    for word in words[:4]:
        candidate = f"{base}-{word}" if base else word
        if len(candidate) > MAX_NAME:
            break
        base = candidate
    base = base or (words[0][:MAX_NAME] if words else "task")
    return unique(base, taken)


def given_name(text: str) -> str:
    """A name a person chose, kept as written: its outer spaces go, inner runs of white space become one
    space, a `/` or a control character a dash (a name is also a URL's path segment), and it is cut to 64
    characters (what the database keeps)."""
    printable = "".join(c if c.isprintable() and c != "/" else " " if c.isspace() else "-" for c in text)
    return " ".join(printable.split())[:64] or "task"


def unique(base: str, taken: Container[str] = ()) -> str:
    """`base`, or `base-2`, `base-3`, … (cut so the whole stays within its length) when taken."""
    name, n, room = base, 2, max(len(base), MAX_NAME)
    while name in taken:
        suffix = f"-{n}"
        name = base[: room - len(suffix)] + suffix
        n += 1
    return name


def task_name(name: str | None, prompt: str) -> str:
    """A task's name: the one given, kept, or a slug of its prompt."""
    return given_name(name) if name and name.strip() else slugify(prompt)


SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def chosen_slug(text: str) -> str:
    """A name an agent chose: kept when it is a slug already (`do-it`, `tea-history`), else the slug of its
    words as a prompt's would be (`Research the market` → `research-market`)."""
    text = text.strip()
    return text if len(text) <= MAX_NAME and SLUG.fullmatch(text) else slugify(text)


def branch_part(name: str) -> str:
    """A task's name as part of a git branch name: its every word, lower case, dashes, at most 40 characters."""
    words: list[str] = re.findall(r"[a-z0-9]+", name.lower()) or ["task"]
    part = words[0][:MAX_NAME]
    for word in words[1:]:
        if len(f"{part}-{word}") > MAX_NAME:
            break
        part = f"{part}-{word}"
    return part
