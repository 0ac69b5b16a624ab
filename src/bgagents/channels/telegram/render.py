"""An answer's Markdown as Telegram messages: split under Telegram's 4096-character limit, each piece
rendered as Telegram's HTML, with its plain text kept for when Telegram refuses the HTML.

The rendering is chatgpt-md-converter's `telegram_format`: made for exactly this (an LLM's Markdown
to the subset of HTML Telegram accepts, tags always closed), small and without dependencies.
telegramify-markdown's entity output would skip HTML altogether, but then there is no readable
fallback text of the same piece, and HTML keeps the messages inspectable.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from chatgpt_md_converter import telegram_format

LIMIT = 4096  # characters (UTF-16 code units) of a message's text after entities are parsed
# room left under LIMIT for a code fence closed at the end of a piece and reopened at the next
BUDGET = LIMIT - 96
_FENCE = re.compile(r"^\s*```(\S*)")
_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class Piece:
    html: str
    plain: str


def length(text: str) -> int:
    """Telegram counts UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def visible_length(html_text: str) -> int:
    return length(html.unescape(_TAG.sub("", html_text)))


def _hard(text: str, limit: int) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        units = length(char)
        if size + units > limit:
            out.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += units
    if current:
        out.append("".join(current))
    return out


def _pack(text: str, limit: int, separators: tuple[str, ...]) -> list[str]:
    """Greedy: as many units (split at the first separator) per piece as fit; a unit too long for a
    piece is split at the next separator, and at the last resort anywhere."""
    if length(text) <= limit:
        return [text]
    if not separators:
        return _hard(text, limit)
    sep, rest = separators[0], separators[1:]
    pieces: list[str] = []
    current = ""
    for unit in text.split(sep):
        candidate = unit if not current else current + sep + unit
        if length(candidate) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(current)
        if length(unit) <= limit:
            current = unit
        else:
            *whole, current = _pack(unit, limit, rest)
            pieces.extend(whole)
    if current:
        pieces.append(current)
    return pieces


def _balance_fences(pieces: list[str]) -> list[str]:
    """A code block cut between two pieces is closed at the end of one and reopened in the next."""
    out, opened = [], None  # the language of the code block still open, if any
    for piece in pieces:
        head = f"```{opened}\n" if opened is not None else ""
        for line in piece.splitlines():
            match = _FENCE.match(line)
            if match:
                opened = None if opened is not None else match.group(1)
        out.append(head + piece + ("\n```" if opened is not None else ""))
    return out


def split(text: str, limit: int = BUDGET) -> list[str]:
    """At paragraph boundaries, else at lines, else anywhere; empty pieces dropped."""
    pieces = _pack(text.strip(), limit, ("\n\n", "\n"))
    return _balance_fences([p.strip("\n") for p in pieces if p.strip()])


def pieces(markdown: str) -> list[Piece]:
    """The messages of one answer, in order."""
    out = []
    for part in split(markdown) or ["[No output]"]:
        rendered = telegram_format(part)
        # a rendering that grew past the limit (it never should) goes out as plain text
        out.append(Piece(rendered if rendered.strip() and visible_length(rendered) <= LIMIT else "", part))
    return out
