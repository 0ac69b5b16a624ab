"""`bgagents chat` and `bgagents peek`: line parsing and formatting, and a real server on the demo model."""

from __future__ import annotations

import json
from collections.abc import Callable

from bgagents.cli.chat import format_response, format_session, format_sessions, parse_line

from .conftest import ServerProcess


def test_typed_lines_become_actions() -> None:
    buttons = ["Yes", "No"]
    assert parse_line("hello there", buttons).kind == "message"
    assert (parse_line("2", buttons).kind, parse_line("2", buttons).arg) == ("button", "No")
    assert parse_line("3", buttons).kind == "message"  # no third button: it is a message
    assert parse_line("   ", buttons).kind == "none"
    bg = parse_line("/bg  write a poem ", buttons)
    assert (bg.kind, bg.command, bg.arg) == ("command", "bg", "write a poem")
    assert (parse_line("/peek", buttons).kind, parse_line("/peek", buttons).command) == ("usage", "peek")
    assert parse_line("/Sessions", buttons).command == "sessions"
    assert parse_line("/exit", buttons).command == "quit"
    assert (parse_line("/frob x", buttons).kind, parse_line("/frob x", buttons).command) == ("unknown", "frob")


def test_responses_and_sessions_read_well() -> None:
    text = format_response({"message": "Pick one", "files": ["out/a.md"], "buttons": ["Yes", "No"]})
    assert text.splitlines() == ["Pick one", "  file: out/a.md", "  [1] Yes  [2] No"]
    assert format_response({"message": "", "files": [], "buttons": []}) == "[No output]"
    progress = {"requests": 3, "tool_calls": 2, "todos": {"done": 1, "total": 3}}
    main = {"name": "plan-trip", "main": True, "elapsed": 75.2, "status": "running", "progress": progress,
            "prompt": "plan a trip", "model": "demo"}
    side = {**main, "name": "book-hotel", "main": False, "elapsed": 3}
    rows = format_sessions([main, side]).splitlines()
    assert rows[0].startswith("▶ plan-trip") and "1m15s" in rows[0] and "todos 1/3" in rows[0]
    assert rows[0].endswith("[main]") and rows[1].startswith("- book-hotel")
    assert format_sessions([]) == "no sessions running"
    assert "  prompt:   plan a trip" in format_session(main).splitlines()


def test_chat_message_and_peek_against_a_server(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo")
    server.start()
    answered = server.cli("chat", "--message", "hello", "--wait", "30")
    assert answered.returncode == 0 and "[demo model] You said 'hello'" in answered.stdout
    asked = server.cli("chat", "-c", "other", "-m", "should we?", "--json")
    [response] = json.loads(asked.stdout)
    assert response["buttons"] == ["Yes", "No", "Later"] and response["conversation_id"] == "other"
    bad = server.cli("chat", "-c", "not ok!", "-m", "hi")
    assert bad.returncode == 1 and "not a conversation id" in bad.stderr
    missing = server.cli("peek", "bg_nothere", "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["code"] == "not_found"
    interactive_json = server.cli("chat", "--json")
    assert interactive_json.returncode == 1 and "--message" in interactive_json.stdout


def test_chat_without_a_server_is_one_clear_line(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()  # never started
    result = server.cli("chat", "-m", "hi")
    assert result.returncode == 1 and "no bgagents server answers" in result.stderr
    assert "Traceback" not in result.stderr
