"""Schemathesis against a live `bgagents serve`: every operation of the OpenAPI document, fuzzed within a
fixed budget. No 5xx, and every response as the document says (status, content type, schema, headers), with
the token enforced wherever the document asks for it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import ServerProcess

CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
    "response_headers_conformance", "ignored_auth", "unsupported_method",
])
EXAMPLES = 15  # test cases per operation and phase
BUDGET = 90  # seconds for the whole run; well under two minutes on two cores
# Long polls would hold one request open for minutes: they are fuzzed without waiting.
CONFIG = '[parameters]\n"query.wait" = 0\n"query.timeout" = 0\n'


@pytest.mark.timeout(BUDGET + 150)
def test_schemathesis_finds_no_server_error_and_no_departure_from_the_document(
        server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = server_factory(BGAGENTS_MODEL="demo")
    server.start()
    doc = httpx.get(server.url + "/openapi.json").json()
    operations = sum(len(ops) for ops in doc["paths"].values())
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run",
         server.url + "/openapi.json", "--header", f"Authorization: Bearer {server.token}",
         "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--max-examples", str(EXAMPLES),
         "--max-time", str(BUDGET), "--seed", "1", "--generation-database", "none", "--request-timeout", "60",
         "--workers", "1", "--no-color"],
        capture_output=True, text=True, timeout=BUDGET + 120, cwd=tmp_path)
    report = result.stdout[-12_000:] + result.stderr[-2_000:]
    assert result.returncode == 0, report
    # how far the budget reaches depends on the machine's speed (all operations, both phases, on an idle one)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested and 1 <= int(tested[1]) <= operations, report
    log = server.log_text()
    assert "unhandled error" not in log and "Exception in ASGI application" not in log, log[-5_000:]
