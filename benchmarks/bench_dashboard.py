"""Dashboard figures in Debian's Chromium against a real `bgagents serve` on the demo model.

1. First paint of the task list: time from navigation to the first page of rows on screen, with 10
   tasks in the database (the baseline) and then with 2,000; the ratio says whether the list scales.
2. Event -> visible: for tasks launched one after another, the time from their stored event
   (`task.queued`, `task.completed`) to the page showing the row / the new status (p50, p99).

    python benchmarks/bench_dashboard.py [--rounds 5] [--events 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from tests.conftest import ServerProcess, free_port, seed_tasks  # noqa: E402

from bgagents import Settings  # noqa: E402
from bgagents.core import db  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TOKEN = "bench-token"

# Records when rows appear and when a row's status changes, in the page's own clock (ms since epoch).
OBSERVER = """() => {
  window.__seen = {};
  const note = (el) => {
    const row = el.closest && el.closest('tr.task-row');
    if (!row) return;
    const key = row.dataset.id + ' ' + row.querySelector('.status').textContent;
    if (!(key in window.__seen)) window.__seen[key] = Date.now();
  };
  new MutationObserver((records) => {
    for (const r of records) {
      const target = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      if (target) note(target);
      for (const n of r.addedNodes) {
        if (n.nodeType === 1) { note(n); n.querySelectorAll && n.querySelectorAll('tr.task-row td').forEach(note); }
      }
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def first_paint(browser: Any, server: ServerProcess, rounds: int) -> dict[str, float]:
    """Median over `rounds` fresh page loads: first contentful paint and the first page of rows on screen."""
    fcp, rows = [], []
    for _ in range(rounds):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{server.url}/?token={TOKEN}")  # logs in; the next load is the measured one
        page.wait_for_selector("tr.task-row")
        page.goto(f"{server.url}/#/", wait_until="commit")
        page.reload()
        page.wait_for_function("document.querySelectorAll('tr.task-row').length > 0")
        rows.append(page.evaluate("performance.now()"))
        fcp.append(page.evaluate(
            "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN"))
        context.close()
    return {"fcp_ms": statistics.median(fcp), "rows_ms": statistics.median(rows)}


def event_to_visible(browser: Any, server: ServerProcess, settings: Settings, count: int) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server.url}/?token={TOKEN}")
    page.wait_for_selector("#link-status:text('live')")
    page.evaluate(OBSERVER)
    ids = []
    with server.client() as c:
        for _ in range(count):
            task = c.post("/tasks", json={"prompt": "benchmark", "model": "demo"}).json()
            ids.append(task["id"])
            c.get(f"/tasks/{task['id']}/output", params={"wait": True, "timeout": 60})
        page.wait_for_function(f"Object.keys(window.__seen).filter(k => k.endsWith(' completed')).length >= {count}",
                               timeout=120_000)
        seen: dict[str, float] = page.evaluate("window.__seen")
    engine = db.create_engine(settings.sqlalchemy_url)  # the stored events of those tasks, with their times
    with engine.connect() as conn:
        events = conn.execute(sa.select(db.events.c.task_id, db.events.c.type, db.events.c.time)
                              .where(db.events.c.task_id.in_(ids))).mappings().all()
    engine.dispose()
    queued, done = [], []
    for event in events:
        kind = {"task.queued": "queued", "task.completed": "completed"}.get(event["type"])
        shown = seen.get(f"{event['task_id']} {kind}") if kind else None
        if shown is not None:
            (queued if kind == "queued" else done).append(shown - event["time"] * 1000)
    context.close()
    both = queued + done
    return {"n": len(both), "p50_ms": percentile(both, 0.5), "p99_ms": percentile(both, 0.99),
            "new_row_p50_ms": percentile(queued, 0.5) if queued else float("nan"),
            "status_p50_ms": percentile(done, 0.5) if done else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
        env.update({"BGAGENTS_HOME": str(home), "BGAGENTS_TOKEN": TOKEN, "BGAGENTS_MODEL": "demo",
                    "BGAGENTS_DEMO_PAUSE": "0.02", "PYTHONPATH": str(ROOT)})
        server = ServerProcess(home=home, env=env, port=port, token=TOKEN)
        settings = Settings(home=home)
        seed_tasks(settings, 10, prefix="base")
        server.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                small = first_paint(browser, server, args.rounds)
                seed_tasks(settings, 1990, prefix="bulk")
                large = first_paint(browser, server, args.rounds)
                live = event_to_visible(browser, server, settings, args.events)
                browser.close()
        finally:
            server.stop()
    result = {
        "first_paint_10_tasks": small, "first_paint_2000_tasks": large,
        "rows_ratio_2000_vs_10": large["rows_ms"] / small["rows_ms"],
        "event_to_visible": live,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"first paint, 10 tasks:    FCP {small['fcp_ms']:.0f} ms, rows on screen {small['rows_ms']:.0f} ms")
    print(f"first paint, 2,000 tasks: FCP {large['fcp_ms']:.0f} ms, rows on screen {large['rows_ms']:.0f} ms "
          f"(x{result['rows_ratio_2000_vs_10']:.2f} of 10 tasks)")
    print(f"event -> visible ({live['n']} changes): p50 {live['p50_ms']:.0f} ms, p99 {live['p99_ms']:.0f} ms "
          f"(new row p50 {live['new_row_p50_ms']:.0f} ms, status change p50 {live['status_p50_ms']:.0f} ms)")


if __name__ == "__main__":
    start = time.monotonic()
    main()
    print(f"({time.monotonic() - start:.0f} s)", file=sys.stderr)
