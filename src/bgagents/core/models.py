"""Model names → pydantic-ai models, checked at launch, and the concurrency key of each."""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx2
from pydantic_ai.exceptions import UserError
from pydantic_ai.models import DEFAULT_HTTP_TIMEOUT, Model, infer_model
from pydantic_ai.providers import Provider, infer_provider

from ..errors import UnknownModel
from ..runners import find_runner
from .demo_model import DEMO_MODEL_NAME, demo_model

OPENAI_NAMES = frozenset({"openai", "openai-chat", "openai-responses"})  # one OpenAIProvider serves them all


class ModelRegistry:
    """Resolves model strings once each; models registered by name (the demo, test models) come first."""

    def __init__(self) -> None:
        self._models: dict[str, Model] = {}
        self._providers: dict[str, Provider[Any]] = {}
        self._clients: list[httpx2.AsyncClient] = []
        self._inferred: set[str] = set()
        self._lock = threading.Lock()

    def _provider(self, name: str) -> Provider[Any]:
        """One provider per name, so every model of a provider shares one connection pool. OpenAI's keeps
        alive as many connections as it may open: by default it keeps 100, so with more requests in
        flight each one past the 100th opened a new TCP connection."""
        if name in OPENAI_NAMES:
            name = "openai"
        with self._lock:
            if name in self._providers:
                return self._providers[name]
        if name == "openai":
            from pydantic_ai.providers.openai import OpenAIProvider

            client = httpx2.AsyncClient(timeout=httpx2.Timeout(DEFAULT_HTTP_TIMEOUT, connect=5),
                                        limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=1000))
            provider: Provider[Any] = OpenAIProvider(http_client=client)
            self._clients.append(client)
        else:
            provider = infer_provider(name)
        with self._lock:
            return self._providers.setdefault(name, provider)

    async def aclose(self) -> None:
        """Closes the connection pools this registry opened; models made from names are made again."""
        for client in self._clients:
            await client.aclose()
        with self._lock:
            self._clients.clear()
            self._providers.clear()
            for name in self._inferred:
                self._models.pop(name, None)
            self._inferred.clear()

    def register(self, name: str, model: Model) -> None:
        with self._lock:
            self._models[name] = model

    def check(self, name: str) -> None:
        """Raises `UnknownModel` unless `name` can run: a pydantic-ai model, or a runner's (`claude-code:…`)."""
        runner = find_runner(name)
        if runner is None:
            self.resolve(name)
        else:
            runner.check(name.strip())

    def resolve(self, name: str) -> Model:
        """The model for `name`, or `UnknownModel` saying what is wrong (unknown name, missing key)."""
        name = name.strip()
        if not name:
            raise UnknownModel("the model name is empty")
        with self._lock:
            if name in self._models:
                return self._models[name]
        if name == DEMO_MODEL_NAME:
            model: Model = demo_model()
        else:
            try:
                model = infer_model(name, provider_factory=self._provider)
                with self._lock:
                    self._inferred.add(name)
            except UserError as exc:
                raise UnknownModel(f"model '{name}' cannot be used: {_why(str(exc))}") from None
            except Exception as exc:  # a provider package that is missing, a malformed name
                raise UnknownModel(f"model '{name}' cannot be used: {_why(str(exc) or type(exc).__name__)}") from None
        with self._lock:
            return self._models.setdefault(name, whole_answers_only(model))


def _why(error: str) -> str:
    """pydantic-ai's reason, said for bgagents: where a key is read, and the keyless `demo` model
    (instead of pydantic-ai's advice to use `Agent('test')`)."""
    if key := re.search(r"`([A-Z][A-Z0-9_]*_API_KEY)`", error):
        return (f"{key[1]} is not set in the environment of the process that runs the agents; "
                f"set it there, or use the offline model '{DEMO_MODEL_NAME}', which needs no key")
    error = error.split(" To try Pydantic AI", 1)[0].strip()
    if error.startswith("Unknown model"):
        error += (" (model names are provider:model, e.g. 'openai:gpt-4o' or 'anthropic:claude-sonnet-4-5')")
    return f"{error}; the offline model '{DEMO_MODEL_NAME}' needs no key"


def whole_answers_only(model: Model) -> Model:
    """A Chat Completions stream cut off before its `finish_reason` is an error, not a short answer.

    pydantic-ai takes such a stream for a `stop` unless the model's profile requires a finish reason
    (some OpenAI-compatible servers never send one); an answer cut mid-way must be retried instead."""
    if type(model).__name__ != "OpenAIChatModel":  # the OpenAI SDK is not imported for other models
        return model
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.profiles.openai import OpenAIModelProfile

    if type(model) is OpenAIChatModel and model.provider is not None:
        return OpenAIChatModel(model.model_name, provider=model.provider, settings=model.settings,
                               profile=OpenAIModelProfile(openai_chat_streaming_requires_finish_reason=True))
    return model


def concurrency_key(model_name: str) -> str:
    """The resolved `provider:model`; names without a provider keep their own name."""
    return model_name.strip()


def provider_of(key: str) -> str:
    return key.split(":", 1)[0] if ":" in key else key


def concurrency_limit(key: str, default: int, providers: dict[str, int], models: dict[str, int]) -> int:
    """Per model, else per provider, else the default; 0 means unlimited."""
    if key in models:
        return models[key]
    provider = provider_of(key)
    if provider in providers:
        return providers[provider]
    return default
