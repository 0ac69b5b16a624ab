"""The MCP server through the `mcp` SDK's own client: in process, on stdio and on streamable HTTP."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from bgagents import Runtime
from bgagents.mcp import build_server
from bgagents.mcp.backends import RuntimeBackend

from .conftest import ROOT, Script, ServerProcess, make_settings

TOOLS = {"background_task", "background_output", "background_send", "background_cancel", "background_list"}


def data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    content: dict[str, Any] = result.structured_content
    return content


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content)


async def test_tools_in_process(tmp_path: Path) -> None:
    slow = Script(steps=[("todowrite", {"todos": [{"content": "look", "status": "in_progress"}]}),
                         ("bash", {"command": "echo one"}), ("bash", {"command": "echo two"})],
                  answer="all done", delay=0.3)
    async with Runtime(make_settings(tmp_path)) as rt:
        rt.register_model("script", slow.model())
        async with Client(build_server(RuntimeBackend(rt))) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            started = data(await client.call_tool("background_task", {"prompt": "do three things",
                                                                      "model": "script", "name": "three"}))
            assert started["name"] == "three" and started["status"] in ("queued", "running")
            progress: list[str] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(message or "")

            out = data(await client.call_tool("background_output", {"id": started["id"], "block": True,
                                                                     "timeout": 60}, progress_callback=on_progress))
            assert out["status"] == "completed" and out["result"] == "all done"
            assert len(progress) >= 2 and any("tool calls" in line for line in progress), progress
            listed = data(await client.call_tool("background_list", {"status": "completed"}))
            assert [t["id"] for t in listed["tasks"]] == [started["id"]]
            assert listed["tasks"][0]["tool_calls"] == 3


async def test_send_cancel_and_not_blocking(tmp_path: Path) -> None:
    gate = Script(steps=[("bash", {"command": "sleep 30"})], answer="never")
    async with Runtime(make_settings(tmp_path)) as rt:
        rt.register_model("script", gate.model())
        async with Client(build_server(RuntimeBackend(rt))) as client:
            tid = data(await client.call_tool("background_task", {"prompt": "wait", "model": "script"}))["id"]
            out = data(await client.call_tool("background_output", {"id": tid, "block": True, "timeout": 0.3}))
            assert out["finished"] is False and out["timed_out"] is True and "running" in out["progress"]
            sent = data(await client.call_tool("background_send", {"id": tid, "message": "hurry up"}))
            assert sent["id"] == tid
            cancelled = data(await client.call_tool("background_cancel", {"id": tid}))
            assert cancelled["cancelled"] == [tid] and cancelled["status"] == "cancelled"
            out = data(await client.call_tool("background_output", {"id": tid}))
            assert out["status"] == "cancelled" and out["finished"] is True
            assert "resume" in error_text(await client.call_tool("background_send", {"id": tid, "message": "x"}))
            other = data(await client.call_tool("background_task", {"prompt": "wait again", "model": "script"}))
            assert data(await client.call_tool("background_cancel", {"all": True}))["cancelled"] == [other["id"]]


BAD_INPUT = [
    ("background_output", {"id": "bg_nosuchtask"}, "no task with id"),
    ("background_task", {"prompt": ""}, "prompt"),
    ("background_task", {"prompt": "   "}, "prompt is empty"),
    ("background_task", {"prompt": "x", "model": "nosuchprovider:nomodel"}, "nosuchprovider"),
    ("background_task", {"prompt": "x", "agent": "nosuchagent"}, "nosuchagent"),
    ("background_cancel", {}, "give the id"),
    ("background_cancel", {"id": "bg_x", "all": True}, "not both"),
    ("background_list", {"status": "bogus"}, "unknown status"),
    ("background_output", {"id": "bg_x", "timeout": -1}, "timeout"),
    ("background_send", {"id": "bg_nosuchtask", "message": "hi"}, "no task with id"),
]


async def test_bad_input_is_a_clear_tool_error(tmp_path: Path) -> None:
    async with Runtime(make_settings(tmp_path, model="demo")) as rt:
        async with Client(build_server(RuntimeBackend(rt))) as client:
            for tool, args, says in BAD_INPUT:
                assert says in error_text(await client.call_tool(tool, args)), (tool, args)
        assert await rt.list() == []


def _stdio(env: dict[str, str], *args: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "bgagents.cli.main", "mcp", *args],
                                 env=env, cwd=env["BGAGENTS_HOME"])


@pytest.mark.slow
async def test_stdio_with_its_own_runtime(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
    env.update({"BGAGENTS_HOME": str(home), "BGAGENTS_MODEL": "demo", "BGAGENTS_DEMO_PAUSE": "0.01",
                "BGAGENTS_URL": "http://127.0.0.1:9", "PYTHONPATH": str(ROOT)})
    async with Client(_stdio(env, "--mode", "local")) as client:
        tid = data(await client.call_tool("background_task", {"prompt": "write a note"}))["id"]
        out = data(await client.call_tool("background_output", {"id": tid, "block": True, "timeout": 60}))
        assert out["status"] == "completed" and "demo" in out["result"]
        assert "no task" in error_text(await client.call_tool("background_output", {"id": "bg_zzz"}))
    # the tasks live in the home's database: a second start sees them
    async with Client(_stdio(env, "--mode", "local")) as client:
        assert [t["id"] for t in data(await client.call_tool("background_list", {}))["tasks"]] == [tid]


async def test_stdio_as_a_client_of_a_running_server(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo")
    server.start()
    async with Client(_stdio(server.env)) as client:
        tid = data(await client.call_tool("background_task", {"prompt": "list the files", "name": "via-mcp"}))["id"]
        out = data(await client.call_tool("background_output", {"id": tid, "block": True, "timeout": 60}))
        assert out["status"] == "completed"
    with server.client() as http:  # the task ran on the server
        assert http.get(f"/tasks/{tid}").json()["name"] == "via-mcp"


@pytest.mark.slow
async def test_stdio_server_mode_without_a_server_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
    env.update({"BGAGENTS_HOME": str(tmp_path), "BGAGENTS_URL": "http://127.0.0.1:9", "PYTHONPATH": str(ROOT)})
    import subprocess

    done = subprocess.run([sys.executable, "-m", "bgagents.cli.main", "mcp", "--mode", "server"], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and done.stdout == ""
    assert "no bgagents server answers" in done.stderr and "Traceback" not in done.stderr


async def test_streamable_http_behind_the_token(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo")
    server.start()
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {server.token}"})
    async with http, Client(streamable_http_client(server.url + "/mcp", http_client=http)) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        tid = data(await client.call_tool("background_task", {"prompt": "write a note"}))["id"]
        progress: list[str] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(message or "")

        out = data(await client.call_tool("background_output", {"id": tid, "block": True, "timeout": 60},
                                          progress_callback=on_progress))
        assert out["status"] == "completed" and progress
    import httpx

    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = httpx.post(server.url + "/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1,
                                                                          "method": "tools/list"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"


def test_the_real_claude_code_cli_as_the_mcp_client(server_factory: Callable[..., ServerProcess],
                                                     tmp_path: Path) -> None:
    """Claude Code (the CLI bundled with claude-agent-sdk, offline on a fake Anthropic endpoint) is told by its
    model to call background_task; `bgagents mcp` on stdio hands it to the running server."""
    import json
    import subprocess

    sdk = pytest.importorskip("claude_agent_sdk", reason="needs the bgagents[claude] extra")
    cli = Path(sdk.__file__).parent / "_bundled" / "claude"
    if not cli.exists():
        pytest.skip(f"claude-agent-sdk has no bundled Claude Code CLI at {cli}")
    from .fake_anthropic import FakeAnthropic, Reply, Steps, tool_results

    server = server_factory(BGAGENTS_MODEL="demo")
    server.start()
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"bgagents": {
        "command": sys.executable, "args": ["-m", "bgagents.cli.main", "mcp"],
        "env": {"BGAGENTS_URL": server.url, "BGAGENTS_TOKEN": server.token, "PYTHONPATH": str(ROOT),
                "BGAGENTS_HOME": str(server.home)}}}}))
    home = tmp_path / "claude-home"
    home.mkdir()
    call = Reply(tool_uses=[("mcp__bgagents__background_task", {"prompt": "write a note about tea",
                                                                 "name": "tea-note"})])
    script = Steps(steps=[call], answer="I started a background agent for the note.")
    with FakeAnthropic(script) as fake:
        # ENABLE_TOOL_SEARCH=false: the CLI would otherwise offer MCP tools only through its ToolSearch tool,
        # which a real model calls first and this scripted one does not
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}, **fake.env(),
               "HOME": str(home), "ENABLE_TOOL_SEARCH": "false"}
        done = subprocess.run([str(cli), "-p", "Write me a note about tea, in the background.", "--mcp-config",
                               str(config), "--strict-mcp-config", "--allowedTools",
                               "mcp__bgagents__background_task", "--output-format", "json"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
        assert "background agent" in json.loads(done.stdout)["result"]
        offered = {t["name"] for t in fake.main_requests()[0]["tools"]}
        assert {"mcp__bgagents__background_task", "mcp__bgagents__background_output"} <= offered
        [result] = tool_results(fake.main_requests()[-1])
        text = json.dumps(result["content"])
        assert "bg_" in text and not result.get("is_error"), text
    with server.client() as http:
        [task] = [t for t in http.get("/tasks", params={"limit": 10}).json() if t["name"] == "tea-note"]
        assert task["prompt"] == "write a note about tea" and task["id"] in text
