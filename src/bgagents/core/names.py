"""Short slug names from prompts (SPEC 4.8) and task ids."""

from __future__ import annotations

import re
import secrets
from collections.abc import Container

STOP_WORDS = frozenset("""
a an the and or but if then else of to in on at by for with from into onto about as is are was were be been
being do does did done have has had this that these those it its i me my we our you your he she they them
their please can could would should will shall may might must just so than too very what which who whom how
why when where all any some each every no not only own same such there here up down out over under again
further once also let lets make get go
""".split())


def task_id() -> str:
    return "bg_" + secrets.token_hex(4)


def slugify(text: str, taken: Container[str] = ()) -> str:
    """Lower case, stop words and one-letter words dropped, at most 4 words and 40 characters; unique."""
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 1 and w not in STOP_WORDS]
    base = ""
    for word in words[:4]:
        candidate = f"{base}-{word}" if base else word
        if len(candidate) > 40:
            break
        base = candidate
    base = base or (words[0][:40] if words else "task")
    name, n = base, 2
    while name in taken:
        suffix = f"-{n}"
        name = base[: 40 - len(suffix)] + suffix
        n += 1
    return name
