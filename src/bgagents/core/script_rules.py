"""The programs whose command-line script or options can run a program: sed, awk, and ssh and its kin."""

from __future__ import annotations

import re

Words = list[str | None]

SED_VALUES = ("-l", "--line-length", "-f", "--file")
SED_PLAIN = frozenset("=dDgGhHnNpPxzF")
# ssh options (`-o Key=value`) that run a local program or load code, or pull in more such options
SSH_KEYS = frozenset({"proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand", "remotecommand",
                      "include", "match", "pkcs11provider", "securitykeyprovider", "xauthlocation", "sshaskpass",
                      "identityagent", "controlpath", "proxyusefdpass"})


def sed_asks(words: Words) -> str | None:
    """Why a sed command needs a person: its script runs a command (`e`, `s///e`) or writes a file (`w`)."""
    scripts: list[str] = []
    operands: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word is None:
            return "a word of this sed command is only known when it runs (it could be its script)"
        if word in ("-e", "--expression") or word.startswith(("--expression=", "-e")):
            if word in ("-e", "--expression"):
                value, i = (words[i + 1] if i + 1 < len(words) else ""), i + 1
            else:
                value = word.split("=", 1)[1] if word.startswith("--") else word[2:]
            if value is None:
                return "the sed script is only known when it runs"
            scripts.append(value)
        elif word in ("-f", "--file") or word.startswith(("--file=", "-f")):
            return "`sed -f` runs a script from a file"
        elif word in SED_VALUES:
            i += 1
        elif not word.startswith("-") or word == "-":
            operands.append(word)
        i += 1
    if not scripts and operands:
        scripts.append(operands[0])
    for script in scripts:
        why = _sed_script_asks(script)
        if why:
            return why
    return None


def _skip_delimited(script: str, i: int, delimiter: str) -> int:
    """The index just past the next unescaped `delimiter` from `i`."""
    while i < len(script) and script[i] != delimiter:
        i += 2 if script[i] == "\\" else 1
    return i + 1


def _sed_script_asks(script: str) -> str | None:
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c in " \t\n;{}!":
            i += 1
        elif c.isdigit() or c in "$,~+":
            i += 1
        elif c == "/":
            i = _skip_delimited(script, i + 1, "/")
            while i < n and script[i] in "IM":
                i += 1
        elif c == "\\" and i + 1 < n:
            i = _skip_delimited(script, i + 2, script[i + 1])
        elif c == "#" or c in "aicrR:btT":
            end = script.find("\n", i)
            if c in "btT:":
                semi = script.find(";", i)
                end = semi if semi >= 0 and (end < 0 or semi < end) else end
            i = n if end < 0 else end
        elif c in "wWe":
            return f"its sed script has the command `{c}`, which " + ("runs a command" if c == "e" else
                                                                     "writes a file")
        elif c in "sy":
            if i + 1 >= n:
                return "its sed script could not be read"
            delimiter = script[i + 1]
            i = _skip_delimited(script, _skip_delimited(script, i + 2, delimiter), delimiter)
            while c == "s" and i < n and script[i] in "gpiImMew0123456789":
                if script[i] in "ew":
                    return "its sed script has an `s` command with the flag `" + script[i] + "`, which " + (
                        "runs the result as a command" if script[i] == "e" else "writes a file")
                i += 1
        elif c in "qQlLv":
            i += 1
            while i < n and script[i].isdigit():
                i += 1
        elif c in SED_PLAIN:
            i += 1
        else:
            return f"its sed script could not be read (at `{script[i:i + 10]}`)"
    return None


def awk_asks(words: Words) -> str | None:
    """Why an awk command needs a person: its program runs commands (`system()`, pipes) or loads a library."""
    programs: list[str] = []
    from_file = False
    i = 0
    while i < len(words):
        word = words[i]
        if word is None:
            return "a word of this awk command is only known when it runs (it could be its program)"
        if word in ("-l", "--load") or word.startswith("-l"):
            return "`awk -l` loads a library"
        if word in ("-f", "--file", "-E", "--exec", "-i", "--include"):
            from_file, i = True, i + 2
            continue
        if word in ("-e", "--source"):
            value = words[i + 1] if i + 1 < len(words) else ""
            if value is None:
                return "the awk program is only known when it runs"
            programs.append(value)
            i += 2
            continue
        if word in ("-v", "-F", "--assign", "--field-separator"):
            i += 2
            continue
        if not word.startswith("-"):
            if not from_file and not programs:
                programs.append(word)
            break
        i += 1
    for program in programs:
        if re.search(r"\bsystem\s*\(", program) or "|" in program.replace("||", ""):
            return "its awk program runs commands (`system()` or a pipe)"
    return None


def ssh_asks(name: str, words: Words) -> str | None:
    """Why ssh, scp or sftp needs a person: an option that runs a local program or reads a config file."""
    for i, word in enumerate(words):
        if word is None:
            return f"a word of this {name} command is only known when it runs (it could be an option)"
        if not word.startswith("-") or word.startswith("--"):
            continue
        if word.startswith("-F") or (name in ("scp", "sftp") and word.startswith(("-S", "-D"))):
            return f"`{name} {word[:2]}` reads a config file or runs a program given on the command line"
        bundle = word[1:].isalpha() and word.endswith("o")  # `-vo KEY=…`
        if word.startswith("-o") or bundle:
            setting = ("" if bundle else word[2:]) or (words[i + 1] if i + 1 < len(words) else "")
            if setting is None:
                return f"`{name} -o` with an option only known when it runs"
            key = re.split(r"[=\s]", setting.strip(), maxsplit=1)[0].lower()
            if key in SSH_KEYS:
                return f"`{name} -o {key}` runs a local program or loads code"
    return None
