"""Usage and cost: each task's own, its whole subtree's, and totals by model, agent and day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from bgagents import Runtime
from bgagents.cli.more import parse_since
from bgagents.cli.render import usage_cell
from bgagents.server import create_app

from .conftest import make_settings

TOKEN = "t"


def priced(model_name: str, input_tokens: int, output_tokens: int) -> FunctionModel:
    """A model that answers once with the given usage, priced as OpenAI's `model_name` by genai-prices."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("ok")], model_name=model_name, provider_name="openai",
                             usage=RequestUsage(input_tokens=input_tokens, output_tokens=output_tokens))

    return FunctionModel(answer, model_name=model_name)


async def test_a_parent_with_two_children_totals_by_hand(tmp_path: Path) -> None:
    async with Runtime(make_settings(tmp_path)) as rt:
        # OpenAI's list prices: gpt-4o $2.50 in / $10 out, gpt-4o-mini $0.15 in / $0.60 out, per million tokens
        rt.register_model("big", priced("gpt-4o", 1_000_000, 100_000))      # $2.50 + $1.00 = $3.50
        rt.register_model("small", priced("gpt-4o-mini", 2_000_000, 1_000_000))  # $0.30 + $0.60 = $0.90
        rt.register_model("big2", priced("gpt-4o", 200_000, 50_000))       # $0.50 + $0.50 = $1.00
        parent = await rt.wait((await rt.launch("lead", model="big")).id, 30)
        a = await rt.wait((await rt.launch("child a", model="small", parent_id=parent.id)).id, 30)
        b = await rt.wait((await rt.launch("child b", model="big2", parent_id=parent.id, agent="explore")).id, 30)
        assert parent.progress.cost_usd == pytest.approx(3.50)
        assert a.progress.cost_usd == pytest.approx(0.90) and b.progress.cost_usd == pytest.approx(1.00)
        tree, leaf = await rt.with_subtree([await rt.get(parent.id), await rt.get(a.id)])
        assert tree.subtree is not None and leaf.subtree is not None
        assert tree.subtree.tasks == 3 and tree.subtree.requests == 3
        assert tree.subtree.input_tokens == 3_200_000 and tree.subtree.output_tokens == 1_150_000
        assert tree.subtree.cost_usd == pytest.approx(5.40)
        assert leaf.subtree.tasks == 1 and leaf.subtree.cost_usd == pytest.approx(0.90)

        by_model = {g.key: g for g in await rt.usage("model")}
        assert by_model["big"].cost_usd == pytest.approx(3.50) and by_model["small"].input_tokens == 2_000_000
        assert [g.key for g in await rt.usage("model")] == ["big", "big2", "small"]  # largest cost first
        by_agent = {g.key: g for g in await rt.usage("agent")}
        assert by_agent["general"].tasks == 2 and by_agent["general"].cost_usd == pytest.approx(4.40)
        assert by_agent["explore"].cost_usd == pytest.approx(1.00)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        assert [(g.key, g.tasks) for g in await rt.usage("day")] == [(today, 3)]
        assert await rt.usage("model", since=rt.clock() + 60) == []

        app = create_app(rt, TOKEN, manage_runtime=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t/api/v1",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            one: dict[str, Any] = (await http.get(f"/tasks/{parent.id}")).json()
            assert one["subtree"]["cost_usd"] == pytest.approx(5.40) and one["progress"]["cost_usd"] == 3.5
            listed = {t["id"]: t for t in (await http.get("/tasks")).json()}
            assert listed[parent.id]["subtree"]["tasks"] == 3 and listed[b.id]["subtree"]["tasks"] == 1
            grouped = (await http.get("/usage", params={"by": "agent", "since": 0})).json()
            assert {g["key"] for g in grouped} == {"general", "explore"}
            for bad in ({"by": "week"}, {"since": "yesterday"}, {"since": -1}, {"since": 10**30}):
                answer = await http.get("/usage", params=bad)
                assert answer.status_code == 422 and "error" in answer.json(), bad
        assert usage_cell(one["subtree"]) == "4.3M $5.4000 ×3"


def test_since_accepts_durations_dates_and_seconds() -> None:
    assert parse_since("1700000000") == 1_700_000_000
    assert parse_since("2026-11-01") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()
    day = parse_since("1d")
    assert day is not None and abs(day - (dt.datetime.now(dt.UTC).timestamp() - 86400)) < 5
    with pytest.raises(Exception, match="not a duration"):
        parse_since("last week")
