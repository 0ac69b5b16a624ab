"""Every place a command line makes the shell run a command, found from the text by bash's quoting rules.

tree-sitter-bash misses some (backticks in a here-document body or inside `${…}`, nested escaped backticks),
so `bash_commands` reads each one found here that the syntax tree does not have as code of its own.
Found: `$( )`, backticks, `<( )` and `>( )` outside single quotes, inside double quotes, in `${…}`, in
arithmetic, in assignments, redirections, `case` patterns and array subscripts, and in the body of a
here-document whose delimiter is not quoted (where quotes are plain characters). Not found (nothing runs):
single-quoted and `$'…'` text, comments, escaped characters, bodies of here-documents with a quoted delimiter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPERATORS = b" \t\n;&|()<>"


@dataclass(frozen=True)
class Substitution:
    start: int  # byte offset of `$(`, `<(`, `>(` or of the opening backtick
    kind: str
    code: str | None  # what it runs (backticks unescaped); None when its end is not found


class _Unclosed(Exception):
    pass


@dataclass
class _Scan:
    src: bytes
    found: list[Substitution] = field(default_factory=list)
    heredocs: list[tuple[bytes, bool, bool]] = field(default_factory=list)  # delimiter, quoted, strip tabs

    def at(self, i: int, text: bytes) -> bool:
        return self.src.startswith(text, i)

    def code(self, i: int, closing: bool, arithmetic: bool = False) -> int:
        """Scans shell code from `i` to the end (or, when `closing`, to its unmatched `)`); returns the end."""
        src, depth = self.src, 0
        while i < len(src):
            c = src[i:i + 1]
            word_start = i == 0 or src[i - 1:i] in OPERATORS
            if c == b"\\":
                i += 2
            elif c == b"'":
                end = src.find(b"'", i + 1)
                if end < 0:
                    raise _Unclosed
                i = end + 1
            elif self.at(i, b"$'"):
                i = self.ansi_c(i + 2)
            elif c == b'"':
                i = self.quoted(i + 1, ends_at_quote=True)
            elif c == b"#" and word_start:
                end = src.find(b"\n", i)
                i = len(src) if end < 0 else end
            elif self.at(i, b"<<") and not self.at(i, b"<<<") and not arithmetic:
                i = self.heredoc_start(i + 2)
            elif c == b"\n" and self.heredocs:
                i = self.heredoc_bodies(i + 1)
            elif c in (b"<", b">") and self.at(i + 1, b"("):
                i = self.paren(i, i + 2, c.decode() + "(")
            elif c in (b"$", b"`"):
                i = self.dollar_or_backtick(i)
            elif closing and c == b"(":
                depth, i = depth + 1, i + 1
            elif closing and c == b")":
                if depth == 0:
                    return i
                depth, i = depth - 1, i + 1
            else:
                i += 1
        if closing:
            raise _Unclosed
        return i

    def dollar_or_backtick(self, i: int) -> int:
        if self.at(i, b"`"):
            end = i + 1
            while end < len(self.src) and self.src[end:end + 1] != b"`":
                end += 2 if self.src[end:end + 1] == b"\\" else 1
            if end >= len(self.src):
                raise _Unclosed
            inner = self.src[i + 1:end].decode(errors="replace")
            code = inner.replace("\\`", "`").replace("\\$", "$").replace("\\\\", "\\")
            self.found.append(Substitution(i, "`", code))
            return end + 1
        if self.at(i, b"$(("):  # arithmetic: only what is inside it may run (and `<<` is a shift there)
            end = self.code(i + 3, closing=True, arithmetic=True)
            return end + 2 if self.at(end + 1, b")") else end + 1
        if self.at(i, b"$("):
            return self.paren(i, i + 2, "$(")
        return i + 1

    def paren(self, start: int, i: int, kind: str) -> int:
        end = self.code(i, closing=True)
        self.found.append(Substitution(start, kind, self.src[i:end].decode(errors="replace")))
        return end + 1

    def quoted(self, i: int, ends_at_quote: bool, end: int | None = None) -> int:
        """Inside double quotes (or a here-document body, up to `end`): only `\\`, `$` and backticks count."""
        stop = len(self.src) if end is None else end
        while i < stop:
            c = self.src[i:i + 1]
            if c == b"\\":
                i += 2
            elif ends_at_quote and c == b'"':
                return i + 1
            elif c in (b"$", b"`"):
                i = self.dollar_or_backtick(i)
            else:
                i += 1
        if ends_at_quote:
            raise _Unclosed
        return stop

    def ansi_c(self, i: int) -> int:
        while i < len(self.src) and self.src[i:i + 1] != b"'":
            i += 2 if self.src[i:i + 1] == b"\\" else 1
        return i + 1

    def heredoc_start(self, i: int) -> int:
        strip = self.at(i, b"-")
        i += 1 if strip else 0
        while self.src[i:i + 1] in (b" ", b"\t"):
            i += 1
        word = b""
        quoted = False
        while i < len(self.src) and self.src[i:i + 1] not in OPERATORS:
            c = self.src[i:i + 1]
            if c in (b"'", b'"'):
                end = self.src.find(c, i + 1)
                if end < 0:
                    raise _Unclosed
                word, quoted, i = word + self.src[i + 1:end], True, end + 1
            elif c == b"\\":
                word, quoted, i = word + self.src[i + 1:i + 2], True, i + 2
            else:
                word, i = word + c, i + 1
        self.heredocs.append((word, quoted, strip))
        return i

    def heredoc_bodies(self, i: int) -> int:
        pending, self.heredocs = self.heredocs, []
        for word, quoted, strip in pending:
            start = i
            while i < len(self.src):
                line_end = self.src.find(b"\n", i)
                line_end = len(self.src) if line_end < 0 else line_end
                line = self.src[i:line_end]
                if (line.lstrip(b"\t") if strip else line) == word:
                    if not quoted:
                        self.quoted(start, ends_at_quote=False, end=i)
                    i = line_end + 1
                    break
                i = line_end + 1
            else:
                if not quoted:
                    self.quoted(start, ends_at_quote=False, end=len(self.src))
        return i


def substitutions(src: bytes) -> list[Substitution] | None:
    """Each command substitution in `src` (nested ones too), or None when a quote or one is not closed."""
    scan = _Scan(src)
    try:
        scan.code(0, closing=False)
    except _Unclosed:
        return None
    return scan.found
