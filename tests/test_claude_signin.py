"""Where Claude Code would find its sign-in, checked at launch without starting its CLI (no SDK needed)."""

from __future__ import annotations

from pathlib import Path


def test_how_claude_code_would_sign_in(tmp_path: Path) -> None:
    from bgagents.runners.claude_code.signin import signed_in

    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    assert signed_in({}, home) is None
    assert signed_in({"ANTHROPIC_API_KEY": " "}, home) is None
    assert signed_in({"CLAUDE_CODE_USE_BEDROCK": "0"}, home) is None
    assert signed_in({"ANTHROPIC_API_KEY": "sk-x"}, home) == "ANTHROPIC_API_KEY"
    assert signed_in({"CLAUDE_CODE_OAUTH_TOKEN": "t"}, home) == "CLAUDE_CODE_OAUTH_TOKEN"
    assert signed_in({"CLAUDE_CODE_USE_VERTEX": "1"}, home) == "CLAUDE_CODE_USE_VERTEX"
    (home / ".claude" / "settings.json").write_text('{"apiKeyHelper": "~/bin/key"}')
    assert signed_in({}, home) == f"the apiKeyHelper of {home / '.claude' / 'settings.json'}"
    (home / ".claude" / "settings.json").write_text("{not json")
    assert signed_in({}, home) is None
    (home / ".claude" / ".credentials.json").write_text('{"claudeAiOauth": {}}')  # what `claude` /login writes
    assert signed_in({}, home) == f"the login in {home / '.claude'}"
    elsewhere = tmp_path / "config"
    elsewhere.mkdir()
    assert signed_in({"CLAUDE_CONFIG_DIR": str(elsewhere)}, home) is None  # the CLI would read that one
    (elsewhere / ".claude.json").write_text('{"primaryApiKey": "sk-x"}')
    assert signed_in({"CLAUDE_CONFIG_DIR": str(elsewhere)}, home) == "the API key Claude Code stored"
