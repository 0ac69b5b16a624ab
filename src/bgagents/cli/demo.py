"""`bgagents demo`: a real server on a temporary home, a few `demo`-model agents, live progress."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from . import render
from .client import Client, ClientError, dashboard_url

PROMPTS = [
    "Survey the workspace and write a short note about what is in it",
    "Plan a tidy-up of the project files and record the plan",
    "Check the environment and summarise the machine",
    "Draft release notes for the next version",
    "List open questions about the codebase",
]
SEED_FILES = {
    "README.md": "# Sample project\n\nA tiny project for the bgagents demo.\n",
    "app.py": "def greet(name: str) -> str:\n    return f'hello {name}'\n",
    "notes/todo.txt": "- write tests\n- ship it\n",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_server(home: Path, port: int, token: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BGAGENTS_HOME": str(home), "BGAGENTS_MODEL": "demo", "BGAGENTS_TOKEN": token,
           "BGAGENTS_URL": f"http://127.0.0.1:{port}"}
    env.pop("BGAGENTS_WORKSPACE", None)
    env.pop("BGAGENTS_DATABASE_URL", None)
    log = open(home / "server.log", "wb")
    # the server stops when this process is gone, even by kill -9: it holds the read end of a pipe whose
    # write end only this process has (as `serve --workers` does for its workers)
    read_end, _write_end = os.pipe()
    try:
        return subprocess.Popen([sys.executable, "-m", "bgagents.cli.main", "serve", "--port", str(port),
                                 "--parent-fd", str(read_end)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=(read_end,))
    finally:
        os.close(read_end)


def _wait_ready(client: Client, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the demo server exited at start")
        try:
            client.get("/stats")
            return
        except ClientError:
            time.sleep(0.1)
    raise RuntimeError("the demo server did not start in time")


def _view(tasks: list[dict[str, Any]], lines: list[Text]) -> Group:
    title = "bgagents demo — background agents on the offline demo model"
    return Group(render.tasks_table(tasks, title=title, show_model=False), *lines[-8:])


def run_demo(*, keep: bool, agents: int, port: int | None, json_mode: bool) -> int:
    console = Console(stderr=json_mode, highlight=False)
    home = Path(tempfile.mkdtemp(prefix="bgagents-demo-"))
    for rel, text in SEED_FILES.items():
        path = home / "workspace" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    port = port or _free_port()
    token = secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port}"
    server = _start_server(home, port, token)
    client = Client(url, token)
    code = 0
    try:
        console.print(f"[bold]Starting a demo server[/bold] at {url}", soft_wrap=True)
        console.print(f"home: {home}", soft_wrap=True, style="dim")
        console.print(f"dashboard: {dashboard_url(url, token)}", soft_wrap=True)
        _wait_ready(client, server)
        ids = [client.post("/tasks", {"prompt": PROMPTS[i % len(PROMPTS)], "model": "demo"})["id"]
               for i in range(agents)]
        lines: list[Text] = []
        with Live(_view(client.get("/tasks"), lines), console=console, refresh_per_second=8,
                  transient=False) as live:
            for event in client.events():
                line = render.event_line(event)
                if line is not None and event.get("task_id"):
                    full = Text(f"{event['task_id']} ", style="dim") + line
                    full.no_wrap, full.overflow = True, "ellipsis"
                    lines.append(full)
                tasks = client.get("/tasks", limit=len(ids) + 10)
                live.update(_view(tasks, lines))
                if all(t["status"] in ("completed", "failed", "cancelled") for t in tasks if t["id"] in ids):
                    break
        tasks = [client.get(f"/tasks/{i}") for i in ids]
        code = 0 if all(t["status"] == "completed" for t in tasks) else 1
        if json_mode:
            print(json.dumps(tasks, indent=2))
        env = f"BGAGENTS_URL={url} BGAGENTS_TOKEN={token}" if keep else ""
        console.print(f"\n[bold green]{sum(t['status'] == 'completed' for t in tasks)}/{len(tasks)} "
                      "demo agents finished.[/bold green]")
        if keep:
            console.print(f"Their notes are in {home / 'workspace' / 'demo-notes'}")
            # started in the background of a script, SIGINT is ignored from the start: Ctrl-C (or kill -INT)
            # must still stop the demo, as it is about to say
            signal.signal(signal.SIGINT, signal.default_int_handler)
            console.print("Look next, in another terminal:", soft_wrap=True)
            console.print(f"  export {env}", soft_wrap=True, markup=False)
            for command in ("ls --all", f"logs {ids[0]}", f"show {ids[0]}", f"output {ids[0]}",
                            "launch 'write a haiku about queues' --wait"):
                console.print(f"  bgagents {command}", soft_wrap=True, markup=False)
            console.print(f"  dashboard: {dashboard_url(url, token)}", soft_wrap=True, markup=False)
            console.print(f"  API docs: {url}/docs   (Ctrl-C stops the server)")
            server.wait()
        else:
            console.print("Next: run 'bgagents demo --keep' to explore these tasks with 'bgagents ls/logs/show'; "
                          "talk to a main agent with 'BGAGENTS_MODEL=demo bgagents serve &' then 'bgagents chat'; "
                          "or point BGAGENTS_MODEL at a real model (see README).")
    except KeyboardInterrupt:
        code = 130
    except (ClientError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}; the server's log ends with:", soft_wrap=True)
        console.print(_tail(home / "server.log"), markup=False, highlight=False, soft_wrap=True)
        code = 1
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if keep:
            console.print(f"The demo's home stays in {home}", soft_wrap=True, style="dim")
        else:  # a demo leaves nothing behind
            shutil.rmtree(home, ignore_errors=True)
    return code


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
