"""Whether Claude Code can sign in where the server runs, known at launch rather than from a failed turn.

Claude Code reads its credentials from the environment (an API key or token, or a cloud provider's
switch), from `.credentials.json` in its config directory (`claude` then `/login`; on macOS the
Keychain), or from an `apiKeyHelper` in its settings. These are checked as files and variables: no CLI
is started, so a launch stays fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
CLOUDS = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY")
KEYCHAIN_SERVICE = "Claude Code-credentials"


def signed_in(env: Mapping[str, str], home: Path) -> str | None:
    """How Claude Code would sign in (for the message of a check), or None when it could not."""
    for key in KEYS:
        if env.get(key, "").strip():
            return key
    for switch in CLOUDS:
        if env.get(switch, "").strip() not in ("", "0", "false"):
            return switch
    config = Path(env["CLAUDE_CONFIG_DIR"]) if env.get("CLAUDE_CONFIG_DIR") else home / ".claude"
    if (config / ".credentials.json").is_file():
        return f"the login in {config}"
    for name in ("settings.json", "cowork_settings.json"):
        if _has(config / name, "apiKeyHelper"):
            return f"the apiKeyHelper of {config / name}"
    if _has(config / ".claude.json" if env.get("CLAUDE_CONFIG_DIR") else home / ".claude.json", "primaryApiKey"):
        return "the API key Claude Code stored"
    if sys.platform == "darwin" and "CLAUDE_CONFIG_DIR" not in env and _in_keychain():
        return "the login in the macOS Keychain"
    return None


def why_not(home: Path) -> str:
    return (f"Claude Code is not signed in where the server runs (HOME {home}): set ANTHROPIC_API_KEY (or "
            "CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`) in the server's environment, or sign in once with "
            "`claude` (/login) as the user that runs `bgagents serve`")


def _has(path: Path, key: str) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get(key))


_KEYCHAIN_FOUND: list[bool] = []  # once found, for the life of the process (a subprocess per launch is not cheap)


def _in_keychain() -> bool:
    if _KEYCHAIN_FOUND:
        return True
    try:
        found = subprocess.run(["security", "find-generic-password", "-s", KEYCHAIN_SERVICE],
                               capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if found.returncode == 0:
        _KEYCHAIN_FOUND.append(True)
    return found.returncode == 0
