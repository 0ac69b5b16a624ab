"""What a program does with its words beyond what an allow pattern for it can cover.

An allow rule for a program (`git *`, `python *`) covers that program doing its job on the files it is
given, the workspace's own code included where that is its job (a Makefile, a script file, a test suite).
It never covers what runs a program or code *named on the command line*: such options and subcommands
(`TOOLS`, `git_rules`) make the command ask. A wrapper (`WRAPPERS`: `env`, `timeout`, `xargs`, ...) is judged
as the command it runs; the shells, `eval` and the wrappers that take shell code give code that is read like
the command line itself. A word only known at run time (`$X`, `$(…)`), where it could be such an option,
asks too; so does a command given words at run time (`xargs`) when it has such options.

`read(name, words)` tells all of that for one simple command; `words` are its words after the name, each
its literal value, or None when only known at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from . import git_rules, script_rules

Words = list[str | None]


@dataclass
class Reading:
    """What one simple command runs besides itself."""

    ask: str | None = None  # why no pattern may allow it, when one can't
    runs: list[Words] = field(default_factory=list)  # commands it runs (name first), each judged on its own
    code: list[str] = field(default_factory=list)  # shell code it runs, read like a command line
    wrapper: bool = False  # judged as what it runs: its own text is only checked against deny patterns
    deny_only: list[Words] = field(default_factory=list)  # words that may start a command: deny patterns only


@dataclass(frozen=True)
class Tool:
    """A program with options or subcommands that run a program or code given on the command line."""

    options: tuple[str, ...] = ()  # `-c`, `--eval`: exact, `--eval=…`, or a short letter among others (`-Bc`)
    takes_value: tuple[str, ...] = ()  # its options whose value is the next word (so not an operand)
    subcommands: frozenset[str] = frozenset()  # a first operand that runs a script or program (`npm run`)
    safe_subcommands: frozenset[str] | None = None  # when set, any other first operand runs a script (`yarn x`)
    operand_ends_options: bool = False  # interpreters: words after the script are the script's own
    reads_input: bool = False  # with no operand (or `-`) it runs code read from its input
    always: str | None = None  # runs what a person at it (or its input) tells it: always asks


NODE_PACKAGES = {"run", "run-script", "rum", "urn", "exec", "x", "test", "tst", "t", "start", "stop", "restart",
                 "explore", "init", "create", "install-test", "it", "cit", "install-ci-test", "rebuild", "rb",
                 "dlx", "node", "workspace", "workspaces", "why-run"}
YARN_SAFE = frozenset({"add", "audit", "autoclean", "bin", "cache", "check", "config", "global", "help", "import",
                       "info", "install", "licenses", "link", "list", "login", "logout", "outdated", "owner",
                       "pack", "policies", "publish", "remove", "tag", "team", "unlink", "unplug", "upgrade",
                       "version", "versions", "why", "up", "dedupe", "explain", "npm", "set", "search", "constraints",
                       "i", "ls", "update", "rm", "uninstall", "fetch", "store", "prune", "patch",
                       "patch-commit", "env", "root", "server", "setup"})
INTERACTIVE = ("an interactive program that can run a shell or any command it is told")

def interpreter(*options: str, takes_value: tuple[str, ...] = ()) -> Tool:
    """A language's interpreter: code given with OPTIONS or read from its input asks; a script file does not."""
    return Tool(options=options, takes_value=takes_value, operand_ends_options=True, reads_input=True)


TOOLS: dict[str, Tool] = {
    "python": interpreter("-c", "-m", takes_value=("-W", "-X", "-Q")),
    "pypy": interpreter("-c", "-m", takes_value=("-W", "-X")),
    "node": interpreter("-e", "--eval", "-p", "--print", "-r", "--require", "--import", "--loader",
                          "--experimental-loader", "-i", "--interactive"),
    "deno": Tool(subcommands=frozenset({"run", "eval", "repl", "task", "x"})),
    "perl": interpreter("-e", "-E", "-M", "-m", "-x", "-d"),
    "ruby": interpreter("-e", "-r", "-x"),
    "php": interpreter("-r", "-B", "-R", "-E", "-F", "-a"),
    "lua": interpreter("-e", "-l", "-i"),
    "luajit": interpreter("-e", "-l", "-i"),
    "Rscript": Tool(options=("-e", "--expr"), operand_ends_options=True),
    "tclsh": interpreter(),
    "tar": Tool(options=("--to-command", "--checkpoint-action", "--use-compress-program", "-I", "--info-script",
                         "--new-volume-script", "-F", "--rmt-command", "--rsh-command")),
    "rsync": Tool(options=("-e", "--rsh", "--rsync-path")),
    "zip": Tool(options=("-TT", "--unzip-command")),
    "scp": Tool(options=("-S", "-F", "-o")),
    "sftp": Tool(options=("-S", "-F", "-o", "-D")),
    "ssh": Tool(options=("-F", "-o")),
    "npm": Tool(subcommands=frozenset(NODE_PACKAGES), options=("--script-shell",)),
    "pnpm": Tool(subcommands=frozenset(NODE_PACKAGES), safe_subcommands=YARN_SAFE, options=("--script-shell",)),
    "yarn": Tool(subcommands=frozenset(NODE_PACKAGES), safe_subcommands=YARN_SAFE),
    "bun": Tool(subcommands=frozenset(NODE_PACKAGES), safe_subcommands=YARN_SAFE, options=("-e", "--eval")),
    "cargo": Tool(subcommands=frozenset({"run", "r", "install", "script"}), options=("--config",)),
    "go": Tool(subcommands=frozenset({"run", "generate", "tool"}), options=("-exec", "-toolexec")),
    "uv": Tool(subcommands=frozenset({"run", "tool"})),
    "poetry": Tool(subcommands=frozenset({"run", "shell"})),
    "pipenv": Tool(subcommands=frozenset({"run", "shell"})),
    "pdm": Tool(subcommands=frozenset({"run"})),
    "hatch": Tool(subcommands=frozenset({"run", "shell"})),
    "pipx": Tool(subcommands=frozenset({"run"})),
    "conda": Tool(subcommands=frozenset({"run"})),
    "make": Tool(options=("--eval", "-E")),  # and any VAR=value: see _tool_asks
    "gmake": Tool(options=("--eval", "-E")),
}
for always in ("npx", "pnpx", "bunx", "uvx", "at", "batch", "crontab", "systemd-run", "expect", "parallel",
               "dbus-run-session", "xdg-open", "open", "sensible-browser", "run-parts"):
    TOOLS[always] = Tool(always="it runs programs or scripts it is given")
for interactive in ("less", "more", "most", "pg", "man", "info", "vi", "vim", "nvim", "view", "vimdiff", "ex",
                    "ed", "emacs", "nano", "pico", "mc", "gdb", "lldb", "pdb", "script", "tmux", "screen",
                    "ipython", "irb", "ftp", "telnet", "mysql", "psql", "sqlite3", "top", "htop"):
    TOOLS[interactive] = Tool(always=INTERACTIVE)


@dataclass(frozen=True)
class Wrapper:
    """A command that runs the command given after its own options (and, for some, positionals)."""

    takes_value: tuple[str, ...] = ()  # options whose value is the next word
    positionals: int = 0  # words before the command (`timeout DURATION`, `flock FILE`, `chroot DIR`)
    code_options: tuple[str, ...] = ()  # options whose value is shell code (`flock -c`, `su -c`)
    no_run_options: tuple[str, ...] = ()  # options after which nothing is run (`command -v`)
    joins: bool = False  # the words are joined and given to a shell (`watch`)
    appends: bool = False  # adds words read at run time (`xargs`)
    as_other: str | None = None  # it also changes who or where the command runs as: asks


OTHER = "it runs the command as another user or in another root or namespace"
WRAPPERS: dict[str, Wrapper] = {
    "env": Wrapper(takes_value=("-u", "--unset", "-C", "--chdir"), code_options=("-S", "--split-string")),
    "nice": Wrapper(takes_value=("-n", "--adjustment")),
    "nohup": Wrapper(), "setsid": Wrapper(), "unbuffer": Wrapper(), "builtin": Wrapper(), "coproc": Wrapper(),
    "time": Wrapper(takes_value=("-f", "--format", "-o", "--output")),
    "timeout": Wrapper(takes_value=("-s", "--signal", "-k", "--kill-after"), positionals=1),
    "stdbuf": Wrapper(takes_value=("-i", "-o", "-e")),
    "ionice": Wrapper(takes_value=("-c", "--class", "-n", "--classdata", "-p", "-P", "-u")),
    "chrt": Wrapper(takes_value=("-T", "-P", "-D"), positionals=1),
    "taskset": Wrapper(positionals=1),
    "prlimit": Wrapper(takes_value=("-p", "--pid")),
    "command": Wrapper(no_run_options=("-v", "-V")),
    "exec": Wrapper(takes_value=("-a",)),
    "xargs": Wrapper(takes_value=("-a", "--arg-file", "-d", "--delimiter", "-E", "-e", "-I", "-i", "-L", "-l",
                                  "-n", "--max-args", "-P", "--max-procs", "-s", "--max-chars",
                                  "--process-slot-var"), appends=True),
    "flock": Wrapper(takes_value=("-w", "--timeout", "-E", "--conflict-exit-code"), positionals=1,
                     code_options=("-c", "--command")),
    "watch": Wrapper(takes_value=("-n", "--interval", "-d", "-q", "--equexit"), joins=True),
    "strace": Wrapper(takes_value=("-o", "-e", "-p", "-s", "-u", "-E", "-a", "-b", "-I", "-O", "-S", "-X", "-P")),
    "ltrace": Wrapper(takes_value=("-o", "-e", "-p", "-s", "-u", "-a", "-n", "-x", "-L")),
    "busybox": Wrapper(),
    "sudo": Wrapper(takes_value=("-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "-R"),
                    code_options=("-s", "--shell", "-i", "--login"), as_other=OTHER),
    "doas": Wrapper(takes_value=("-u", "-C"), code_options=("-s",), as_other=OTHER),
    "su": Wrapper(takes_value=("-g", "-G", "-s", "--shell", "-w"), code_options=("-c", "--command"),
                  positionals=1, as_other=OTHER),
    "runuser": Wrapper(takes_value=("-u", "-g", "-G", "-s", "--shell", "-w"), code_options=("-c", "--command"),
                       as_other=OTHER),
    "chroot": Wrapper(takes_value=("--userspec", "--groups"), positionals=1, as_other=OTHER),
    "unshare": Wrapper(as_other=OTHER), "nsenter": Wrapper(takes_value=("-t", "--target"), as_other=OTHER),
    "setpriv": Wrapper(as_other=OTHER), "firejail": Wrapper(as_other=OTHER), "bwrap": Wrapper(as_other=OTHER),
}
SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"})
CODE_FROM_FILE = frozenset({"source", "."})
INFORMATIONAL = frozenset({"--version", "-V", "--help", "-h"})
_VERSIONED = re.compile(r"^(python|pypy|perl|ruby|php|lua|node)[0-9.]*$")

# Variables that name a program, code, or where programs and libraries are found, for the command they
# are set for (`X=… cmd`, `env X=… cmd`, `export X=…`): setting one asks, as `GIT_*` and `LD_*` do.
PROGRAM_VARIABLES = frozenset({
    "PATH", "SHELL", "BASH_ENV", "ENV", "PAGER", "MANPAGER", "GIT_PAGER", "EDITOR", "VISUAL", "BROWSER",
    "LESSOPEN", "LESSCLOSE", "LESS", "SSH_ASKPASS", "SUDO_ASKPASS", "PROMPT_COMMAND", "PS0", "PS1", "PS4",
    "IFS", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONINSPECT", "PYTHONBREAKPOINT", "NODE_OPTIONS",
    "NODE_PATH", "PERL5OPT", "PERL5LIB", "PERLLIB", "PERL5DB", "RUBYOPT", "RUBYLIB", "MAKEFLAGS", "MAKEFILES",
    "CC", "CXX", "LD", "AR", "RUSTC_WRAPPER", "RUSTC", "CARGO_BUILD_RUSTC_WRAPPER", "GOFLAGS", "TAR_OPTIONS",
    "RSYNC_RSH", "CVS_RSH", "XDG_CONFIG_HOME", "HOME", "ZDOTDIR", "INPUTRC", "TERMINFO", "npm_config_script_shell",
    "NPM_CONFIG_SCRIPT_SHELL", "PIP_CONFIG_FILE", "COMP_WORDBREAKS", "HISTFILE", "FCEDIT", "TMPDIR",
})
PROGRAM_VARIABLE_PREFIXES = ("GIT_", "LD_", "DYLD_", "BASH_FUNC_", "SSH_", "npm_config_", "NPM_CONFIG_")


def variable_asks(name: str) -> str | None:
    """Why setting variable `name` for a command asks, or None."""
    if name in PROGRAM_VARIABLES or name.startswith(PROGRAM_VARIABLE_PREFIXES):
        return f"it sets {name}, which can make a program run another program or code"
    return None


def read(name: str, words: Words) -> Reading:
    """What the simple command `name words…` runs besides itself (see the module's docstring)."""
    base = PurePosixPath(name).name
    if name in CODE_FROM_FILE:
        return Reading(ask=f"`{name}` runs code from a file")
    if name in ("eval", "trap"):
        given = words if name == "eval" else words[:1]
        if any(w is None for w in given):
            return Reading(ask=f"`{name}` runs code only known when it runs")
        if given and given[0] not in ("-p", "-l"):
            return Reading(code=[" ".join(w or "" for w in given)])
        return Reading()
    if base in SHELLS:
        code = _shell_code(words)
        if code == "":
            return Reading(ask=f"`{name}` runs code only known when it runs (from its input or a computed string)")
        return Reading(code=[code] if code is not None else [])
    if base == "find":
        return _find(words)
    if base in WRAPPERS:
        return _wrapped(base, WRAPPERS[base], words)
    if base == "git":
        return Reading(ask=git_rules.asks(words))
    if base in ("sed", "gsed"):
        return Reading(ask=script_rules.sed_asks(words))
    if base in ("awk", "gawk", "mawk", "nawk", "busybox-awk"):
        return Reading(ask=script_rules.awk_asks(words))
    tool = TOOLS.get(base) or TOOLS.get(_VERSIONED.sub(r"\1", base))
    if tool is None:
        return Reading()
    return Reading(ask=_tool_asks(base, tool, words))


def _tool_asks(name: str, tool: Tool, words: Words) -> str | None:
    if tool.always:
        return f"`{name}`: {tool.always}"
    if name in ("make", "gmake") and any(w is not None and _is_assignment(w) for w in words):
        return f"`{name}` with a variable set on its command line (it can name the program a recipe runs)"
    if name in ("ssh", "scp", "sftp"):
        return script_rules.ssh_asks(name, words)
    operands = 0
    i = 0
    while i < len(words):
        word = words[i]
        if word is None:
            return f"`{name}` is given a word only known when it runs, which could be an option that runs a program"
        if word == "--":
            break
        if word.startswith("-") and word != "-" and not operands:
            hit = _option_hit(word, tool.options)
            if hit:
                return f"`{name} {hit}` runs a program or code given on the command line"
            if word in tool.takes_value:
                i += 1
        elif not word.startswith("-") or word == "-":
            if operands == 0:
                if word in tool.subcommands or (tool.safe_subcommands is not None
                                                and word not in tool.safe_subcommands):
                    return f"`{name} {word}` runs a script or program"
                if tool.reads_input and word == "-":
                    return f"`{name} -` runs code read from its input"
                if tool.operand_ends_options:
                    return None
            operands += 1
        elif operands and tool.options and _option_hit(word, tool.options) and not tool.operand_ends_options:
            return f"`{name} {word}` runs a program or code given on the command line"
        i += 1
    if tool.reads_input and operands == 0 and not INFORMATIONAL & {w for w in words if w}:
        return f"`{name}` with no script runs code read from its input"
    return None


def _option_hit(word: str, options: tuple[str, ...]) -> str | None:
    for option in options:
        if word == option or (option.startswith("--") and word.startswith(option + "=")):
            return option
        if len(option) == 2 and not word.startswith("--") and option[1] in word[1:] and word[1:].isalnum():
            return option  # a short option among others (`-Bc`), or with its value attached (`-cprint(1)`)
        if len(option) == 2 and not word.startswith("--") and word.startswith(option):
            return option
    return None


def _is_assignment(word: str) -> bool:
    name = word.split("=", 1)[0]
    return "=" in word and name.replace(".", "_").isidentifier()


def _wrapped(name: str, spec: Wrapper, words: Words) -> Reading:
    """The command a wrapper runs, judged as itself; a computed word where an option or the command could be
    asks, and so does a wrapper that adds words at run time to a command that has options that run programs."""
    reading = Reading(wrapper=True, ask=spec.as_other and f"`{name}`: {spec.as_other}")
    i, positionals, assignments = 0, spec.positionals, []
    while i < len(words):
        word = words[i]
        if word is None:
            reading.ask = reading.ask or f"`{name}` is given a word only known when it runs"
            return reading
        if word in spec.no_run_options:
            return Reading()
        code = _option_hit(word, spec.code_options) if word.startswith("-") else None
        if code:
            value = word.split("=", 1)[1] if "=" in word else (words[i + 1] if i + 1 < len(words) else None)
            if value is None or value.startswith("-"):
                reading.ask = reading.ask or f"`{name} {code}` runs code only known when it runs"
            else:
                reading.code.append(value)
            return reading
        if word == "--":
            i += 1
            break
        if word.startswith("-") and word != "-":
            i += 2 if word in spec.takes_value else 1
        elif name == "env" and _is_assignment(word):
            assignments.append(word)
            i += 1
        elif positionals:
            positionals -= 1
            i += 1
        else:
            break
    command = words[i:]
    for variable in assignments:
        reading.ask = reading.ask or variable_asks(variable.split("=", 1)[0])
    if not command:
        reading.wrapper = False  # nothing to run: the wrapper is judged as written (`env` prints)
        return reading
    if spec.joins:
        if any(w is None for w in command):
            reading.ask = reading.ask or f"`{name}` runs code only known when it runs"
        else:
            reading.code.append(" ".join(w or "" for w in command))
        return reading
    if spec.appends:
        command = [*command, None]  # what it reads is only known when it runs
    reading.runs.append(command)
    reading.deny_only = [command[j:] for j in range(1, len(command)) if command[j] is not None]
    return reading


def _find(words: Words) -> Reading:
    """The commands of `find … -exec CMD {} ;` (also -execdir, -ok, -okdir); `{}` is only known when it runs."""
    reading = Reading()
    for i, word in enumerate(words):
        if word in ("-exec", "-execdir", "-ok", "-okdir"):
            command: Words = []
            for inner in words[i + 1:]:
                if inner in (";", "+"):
                    break
                command.append(None if inner is not None and "{}" in inner else inner)
            if command:
                reading.runs.append(command)
    return reading


def _shell_code(values: Words) -> str | None:
    """The code a shell runs: that of `-c CODE`; None for a script file (judged by the shell's own
    pattern); "" when it is only known at run time (a computed string, or read from its input)."""
    if INFORMATIONAL & {v for v in values if v}:
        return None
    for i, value in enumerate(values):
        if value is None:
            return ""
        if value.startswith("-") and not value.startswith("--") and "c" in value:
            if i + 1 >= len(values) or values[i + 1] is None:
                return ""
            return values[i + 1]
        if value in ("-s", "-i") or not value.startswith("-"):
            return "" if value in ("-s", "-i") else None
    return ""
