"""The fake OpenAI server speaks Chat Completions well enough for pydantic-ai (streaming and not)."""

from __future__ import annotations

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from .fake_openai import FakeOpenAI


def model(fake: FakeOpenAI, name: str) -> OpenAIChatModel:
    return OpenAIChatModel(name, provider=OpenAIProvider(base_url=fake.base_url, api_key="test"))


async def test_tool_steps_streaming_and_not() -> None:
    with FakeOpenAI() as fake:
        calls: list[str] = []

        def bash(command: str) -> str:
            """Run a command."""
            calls.append(command)
            return "ok"

        agent = Agent(model(fake, "steps-2"), tools=[bash])
        result = await agent.run("go tag=abc")
        assert result.output == "done after 2 steps"
        assert calls == ["echo abc-step-1 >> steps.log", "echo abc-step-2 >> steps.log"]
        assert fake.count() == 3 and fake.completed_twice() == []
        async with agent.run_stream("again") as stream:
            text = await stream.get_output()
        assert text == "done after 2 steps"
        assert result.usage.input_tokens == 30


async def test_errors_and_flaky() -> None:
    with FakeOpenAI() as fake:
        with pytest.raises(ModelHTTPError) as info:
            await Agent(model(fake, "error-400")).run("x")
        assert info.value.status_code == 400
        with pytest.raises(ModelHTTPError) as info:
            await Agent(model(fake, "nonexistent")).run("x")
        assert info.value.status_code == 404
        assert (await Agent(model(fake, "echo")).run("hi")).output == "echo: hi"
