"""What on a git command line runs another program, so that `git *` never allows it (see `program_rules`).

Git runs a program named on its command line through: a config key that holds one (`-c`/`--config-env`,
`git config KEY VALUE`, `clone --config`; the class is `core.git.program_key`, plus the keys that bring in
more config, hooks or transports: `include*`, `url.*`, `protocol.*`, `init.templateDir`); `--exec-path`
(where git finds its subcommands); a subcommand that is not a known built-in (an alias, `git-NAME` on the
PATH); the subcommands and options that run programs (`difftool`, `mergetool`, `bisect run`, `rebase
--exec`, `submodule foreach`, `--upload-pack`, `--template`, `merge -s NAME`, `grep -O`, ...); and remote
helper URLs (`ext::…`, any `TRANSPORT::ADDRESS`). A word only known when it runs asks wherever it could be
one of those.
"""

from __future__ import annotations

from .git import program_key

Words = list[str | None]

# built-ins that run no program named on the command line (checked ones are in CHECKED)
SAFE = frozenset("""
add am annotate apply blame branch bundle cat-file check-attr check-ignore check-mailmap check-ref-format
checkout checkout-index cherry cherry-pick clean column commit commit-graph commit-tree count-objects describe
diagnose diff diff-files diff-index diff-tree fast-export fast-import fmt-merge-msg for-each-ref format-patch
fsck fsck-objects gc get-tar-commit-id hash-object index-pack interpret-trailers log ls-files ls-tree mailinfo
mailsplit merge-base merge-file merge-tree mktag mktree multi-pack-index mv name-rev notes pack-objects
pack-redundant pack-refs patch-id prune prune-packed range-diff read-tree reflog repack replace rerere reset
restore rev-list rev-parse revert rm shortlog show show-branch show-index show-ref sparse-checkout stage stash
status stripspace switch symbolic-ref tag unpack-file unpack-objects update-index update-ref
update-server-info var verify-commit verify-pack verify-tag version whatchanged worktree write-tree
""".split())
TRANSPORT_OPTIONS = ("--upload-pack", "--receive-pack", "--exec", "--template", "-u")
# subcommand: its options that run a program (exact, or `--opt=…`, or a short one with its value attached)
CHECKED: dict[str, tuple[str, ...]] = {
    "rebase": ("-x", "--exec"), "bisect": (), "submodule": (), "config": ("-e", "--edit"),
    "clone": (*TRANSPORT_OPTIONS, "-c", "--config"), "fetch": ("--upload-pack",),
    "pull": ("--upload-pack", "-s", "--strategy"), "push": ("--receive-pack", "--exec"),
    "ls-remote": ("--upload-pack",), "archive": ("--exec", "--remote"), "remote": (), "grep":
    ("-O", "--open-files-in-pager"), "help": ("-w", "--web", "-i", "--info", "-m", "--man"),
    "merge": ("-s", "--strategy"), "init": ("--template",), "init-db": ("--template",),
}
RUNS_PROGRAMS = {
    "difftool": "runs a diff tool", "mergetool": "runs a merge tool", "filter-branch": "runs filters given to it",
    "instaweb": "runs a web server and browser", "web--browse": "runs a browser", "send-email": "runs programs",
    "credential": "runs credential helpers", "hook": "runs hooks", "for-each-repo": "runs git in other repositories",
    "maintenance": "schedules jobs", "daemon": "serves repositories", "shell": "runs commands",
    "remote-ext": "runs a command", "remote-fd": "runs a transport", "upload-pack": "serves a repository",
    "receive-pack": "runs hooks", "upload-archive": "serves a repository", "submodule--helper": "runs commands",
    "bisect--helper": "runs commands", "env--helper": "reads the environment", "p4": "runs p4", "svn": "runs svn",
    "cvsimport": "runs cvs", "quiltimport": "runs quilt", "imap-send": "runs a tunnel command",
}
MERGE_STRATEGIES = frozenset({"ort", "recursive", "resolve", "octopus", "ours", "subtree"})
TRANSPORTS = frozenset({"clone", "fetch", "pull", "push", "ls-remote", "remote", "submodule", "archive"})
GLOBAL_VALUES = ("-C", "--git-dir", "--work-tree", "--namespace", "--super-prefix", "--list-cmds")


def config_asks(key: str, value: str | None) -> bool:
    """Whether setting config `key` (to `value`, None when not known) can make git run a program."""
    section = key.split(".", 1)[0].lower()
    if program_key(key) or section in ("include", "includeif", "url", "protocol"):
        return True
    if key.lower() in ("init.templatedir", "core.worktree"):
        return True
    return value is not None and "::" in value  # `remote.x.url=ext::…`


def asks(words: Words) -> str | None:
    """Why `git WORDS` needs a person, or None when `git *` may allow it."""
    i = 0
    while i < len(words):
        word = words[i]
        if word is None:
            return "a word of this git command is only known when it runs (it could be `-c` or a subcommand)"
        if word in ("-c", "--config-env") or word.startswith("--config-env="):
            setting = word.split("=", 1)[1] if "=" in word else (words[i + 1] if i + 1 < len(words) else "")
            if setting is None:
                return "`git -c` with a setting only known when it runs"
            key, _, value = setting.partition("=")
            if config_asks(key, None if word != "-c" else value):
                return f"`git -c {key}=…` makes git run a program or read more config"
            i += 1 if "=" in word else 2
            continue
        if word.startswith("--exec-path="):
            return "`git --exec-path=…` chooses the programs git runs"
        if word in GLOBAL_VALUES:
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        return _subcommand(word, words[i + 1:])
    return None


def _subcommand(name: str, rest: Words) -> str | None:
    if name in RUNS_PROGRAMS:
        return f"`git {name}` {RUNS_PROGRAMS[name]}"
    if name not in SAFE and name not in CHECKED:
        return f"`git {name}` is not a git built-in: an alias or another program (git-{name}) could run"
    if name not in CHECKED:
        return None
    options = CHECKED[name]
    operands = [w for w in rest if w is None or not w.startswith("-")]
    for j, word in enumerate(rest):
        if word is None:
            return f"a word of `git {name}` is only known when it runs"
        hit = next((o for o in options if word == o or word.startswith(o + "=")
                    or (len(o) == 2 and word.startswith(o) and len(word) > 2)), None)
        if hit in ("-s", "--strategy"):
            strategy = word[len(hit):].lstrip("=") or (rest[j + 1] if j + 1 < len(rest) else "") or "…"
            if strategy not in MERGE_STRATEGIES:
                return f"`git {name} -s {strategy}` runs the program git-merge-{strategy}"
        elif hit == "-c" or hit == "--config":
            setting = word[len(hit):].lstrip("=") or (rest[j + 1] if j + 1 < len(rest) else None)
            key, _, value = (setting or "").partition("=")
            if setting is None or config_asks(key, value):
                return f"`git {name} {hit}` sets config that makes git run a program"
        elif hit:
            return f"`git {name} {hit}` runs a program given on the command line"
        if name in TRANSPORTS and "::" in word:
            return f"`git {name}` with the remote-helper address `{word}` runs a program"
    first = operands[0] if operands else None
    if name == "bisect" and first == "run":
        return "`git bisect run` runs the command given to it"
    if name == "submodule" and "foreach" in operands:
        return "`git submodule foreach` runs the command given to it"
    if name == "help" and operands:
        return "`git help NAME` runs a manual viewer"
    if name == "config":
        for j, item in enumerate(rest):
            if item is not None and not item.startswith("-") and "." in item:
                if config_asks(item, rest[j + 1] if j + 1 < len(rest) else None):
                    return f"`git config {item}` sets or reads a key that makes git run a program"
            if item is not None and "::" in item:
                return "`git config` with a remote-helper address runs a program"
    return None
