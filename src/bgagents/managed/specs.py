"""What an agent or environment body of the Managed Agents API says, checked and resolved into what is
stored (and answered), and the bgagents agent profile a session of them runs with.

Only what bgagents can honour is accepted: a field it cannot (a custom tool, an MCP toolset, a host
list, packages) is a clear `InvalidInput` naming it, never silently dropped."""

from __future__ import annotations

from typing import Any

from ..core.profiles import Profile
from ..errors import InvalidInput

# the Managed Agents toolset's tools that bgagents serves, on its own tools of the same names
SERVED_TOOLS = ("bash", "edit", "read", "write", "glob", "grep")
UNSERVED_TOOLS = ("web_fetch", "web_search")
TOOLSET = "agent_toolset_20260401"
POLICIES = {"always_allow": "allow", "always_ask": "ask"}
NOT_YET = "is not served by bgagents yet"
MAX_METADATA = 16


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: must be an object")
    return value


def _text(value: Any, where: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise InvalidInput(f"{where}: must be a{'' if empty else ' non-empty'} string")
    return value


def metadata(value: Any, where: str = "metadata", patch: dict[str, str] | None = None) -> dict[str, str]:
    """A metadata bag; with `patch` (an update), a key set to null is removed from it."""
    if value is None:
        return dict(patch or {}) if patch is not None else {}
    out = dict(patch) if patch is not None else {}
    for key, item in _object(value, where).items():
        if item is None and patch is not None:
            out.pop(key, None)
            continue
        if not isinstance(item, str) or len(key) > 64 or len(item) > 512:
            raise InvalidInput(f"{where}.{key}: values are strings of at most 512 characters, keys at most 64")
        out[key] = item
    if len(out) > MAX_METADATA:
        raise InvalidInput(f"{where}: at most {MAX_METADATA} pairs")
    return out


def model_config(value: Any) -> dict[str, Any]:
    """`model`: a model string (any bgagents model: `demo`, `openai-chat:…`, `anthropic:…`) or `{id, …}`."""
    if isinstance(value, str):
        value = {"id": value}
    config = _object(value, "model")
    name = _text(config.get("id"), "model.id", empty=False).strip()
    speed = config.get("speed") or "standard"
    if speed != "standard":
        raise InvalidInput(f"model.speed '{speed}' {NOT_YET} (bgagents sends each request as the model's default)")
    out: dict[str, Any] = {"id": name, "speed": "standard"}
    if config.get("effort") is not None:
        out["effort"] = config["effort"]
    return out


def _policy(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    kind = _object(value, where).get("type")
    if kind == "auto":
        raise InvalidInput(f"{where}: the 'auto' permission policy {NOT_YET}; use always_allow or always_ask")
    if kind not in POLICIES:
        raise InvalidInput(f"{where}: unknown permission policy {kind!r}; known: always_allow, always_ask")
    return {"type": kind}


def _toolset(value: dict[str, Any], where: str) -> dict[str, Any]:
    default = _object(value.get("default_config") or {}, f"{where}.default_config")
    enabled = default.get("enabled")
    policy = _policy(default.get("permission_policy"), f"{where}.default_config.permission_policy")
    resolved_default = {"enabled": True if enabled is None else bool(enabled),
                        "permission_policy": policy or {"type": "always_allow"}}
    configs: dict[str, dict[str, Any]] = {}
    given = value.get("configs") or []
    if not isinstance(given, list):
        raise InvalidInput(f"{where}.configs: must be an array")
    for index, item in enumerate(given):
        item = _object(item, f"{where}.configs[{index}]")
        name = item.get("name")
        if name in UNSERVED_TOOLS:
            if item.get("enabled") is False:
                continue
            raise InvalidInput(f"{where}.configs[{index}]: the {name} tool {NOT_YET}")
        if name not in SERVED_TOOLS:
            raise InvalidInput(f"{where}.configs[{index}]: unknown tool {name!r}; known: {', '.join(SERVED_TOOLS)}")
        if name in configs:
            raise InvalidInput(f"{where}.configs[{index}]: {name} is configured twice")
        on = item.get("enabled")
        configs[name] = {"name": name, "type": name,
                         "enabled": resolved_default["enabled"] if on is None else bool(on),
                         "permission_policy": _policy(item.get("permission_policy"),
                                                      f"{where}.configs[{index}].permission_policy")
                         or resolved_default["permission_policy"]}
    every = [configs.get(name) or {"name": name, "type": name, "enabled": resolved_default["enabled"],
                                   "permission_policy": resolved_default["permission_policy"]}
             for name in SERVED_TOOLS]
    return {"type": TOOLSET, "configs": every, "default_config": resolved_default}


def tools(value: Any) -> list[dict[str, Any]]:
    """`tools`, resolved: the agent toolset with a config for each of its tools."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("tools: must be an array")
    out: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"tools[{index}]"
        kind = _object(item, where).get("type")
        if kind == TOOLSET:
            if any(t["type"] == TOOLSET for t in out):
                raise InvalidInput(f"{where}: the agent toolset is given twice")
            out.append(_toolset(item, where))
        elif kind == "custom":
            raise InvalidInput(f"{where}: custom tools {NOT_YET}")
        elif kind == "mcp_toolset":
            raise InvalidInput(f"{where}: MCP toolsets {NOT_YET}")
        else:
            raise InvalidInput(f"{where}: unknown tool type {kind!r}; known: {TOOLSET}")
    return out


def _refuse(body: dict[str, Any], fields: dict[str, str]) -> None:
    for field, what in fields.items():
        if body.get(field):
            raise InvalidInput(f"{field}: {what} {NOT_YET}")


AGENT_UNSERVED = {"mcp_servers": "MCP servers", "skills": "skills", "multiagent": "multiagent (callable agents)"}


def agent_spec(body: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored form of an agent: from a create body, or (with `current`) an update of it, where an
    omitted field keeps its value."""
    _refuse(body, AGENT_UNSERVED)
    identity = body.get("execution_identity")
    if identity not in (None, {"type": "service_account"}):
        raise InvalidInput(f"execution_identity: only service_account {NOT_YET.replace(' yet', '')}")
    spec = dict(current or {})
    if current is None or "name" in body:
        spec["name"] = _text(body.get("name"), "name", empty=False)
    if current is None or "model" in body:
        spec["model"] = model_config(body.get("model"))
    for field in ("description", "system"):
        if current is None or field in body:
            value = body.get(field)
            spec[field] = None if value in (None, "") else _text(value, field)
    if current is None or "tools" in body:
        spec["tools"] = tools(body.get("tools"))
    if current is None:
        spec["metadata"] = metadata(body.get("metadata"))
    elif "metadata" in body:
        spec["metadata"] = metadata(body.get("metadata"), patch=spec.get("metadata") or {})
    return spec


def environment_spec(body: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored form of an environment: its sessions' network setting (bgagents' sandbox has the network
    on or off, so `limited` means off); the workspace is the server's."""
    spec = dict(current or {})
    if current is None or "name" in body:
        spec["name"] = _text(body.get("name"), "name", empty=False)
    if current is None or "description" in body:
        value = body.get("description")
        spec["description"] = None if value in (None, "") else _text(value, "description")
    if current is None or body.get("config") is not None:
        spec["config"] = _config(body.get("config"), (current or {}).get("config"))
    if current is None:
        spec["metadata"] = metadata(body.get("metadata"))
    elif "metadata" in body:
        spec["metadata"] = metadata(body.get("metadata"), patch=spec.get("metadata") or {})
    spec["scope"] = "organization"
    return spec


EMPTY_PACKAGES = {"type": "packages", "apt": [], "cargo": [], "gem": [], "go": [], "npm": [], "pip": []}


def _config(value: Any, current: dict[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {"type": "cloud", "networking": {"type": "unrestricted"}, "packages": dict(EMPTY_PACKAGES)}
    config = _object(value, "config")
    kind = config.get("type")
    if kind == "self_hosted":
        return {"type": "self_hosted"}
    if kind != "cloud":
        raise InvalidInput(f"config.type: unknown {kind!r}; known: cloud, self_hosted")
    packages = config.get("packages")
    if packages and any(v for k, v in _object(packages, "config.packages").items() if k != "type"):
        raise InvalidInput(f"config.packages: installing packages {NOT_YET}; install them in the workspace")
    networking = config.get("networking")
    if networking is None:
        networking = (current or {}).get("networking") or {"type": "unrestricted"}
    net_kind = _object(networking, "config.networking").get("type")
    if net_kind == "limited":
        if networking.get("allowed_hosts") or networking.get("allow_package_managers") \
                or networking.get("allow_mcp_servers"):
            raise InvalidInput("config.networking: bgagents' sandbox has the network on or off; allowed hosts "
                               f"{NOT_YET} (use 'limited' with none, or 'unrestricted')")
        networking = {"type": "limited", "allowed_hosts": [], "allow_mcp_servers": False,
                      "allow_package_managers": False}
    elif net_kind == "unrestricted":
        networking = {"type": "unrestricted"}
    else:
        raise InvalidInput(f"config.networking.type: unknown {net_kind!r}; known: unrestricted, limited")
    return {"type": "cloud", "networking": networking, "packages": dict(EMPTY_PACKAGES)}


def network_of(environment: dict[str, Any]) -> bool | None:
    """The sandbox network of an environment's sessions: None (the server's setting) when self-hosted."""
    config = environment.get("config") or {}
    if config.get("type") != "cloud":
        return None
    return (config.get("networking") or {}).get("type") != "limited"


def permissions_of(agent: dict[str, Any]) -> dict[str, str]:
    """Tool name → `allow` or `ask` for the agent's enabled toolset tools."""
    out: dict[str, str] = {}
    for toolset in agent.get("tools") or []:
        if toolset.get("type") == TOOLSET:
            for config in toolset["configs"]:
                if config["enabled"]:
                    out[config["name"]] = POLICIES[config["permission_policy"]["type"]]
    return out


def profile_of(name: str, agent: dict[str, Any], environment: dict[str, Any]) -> Profile:
    """The bgagents profile a session runs with: the agent's prompt and enabled tools with their policies
    (any other tool denied), and the environment's network."""
    permissions = permissions_of(agent)
    return Profile(name=name, description=agent.get("description") or "", prompt=agent.get("system") or "",
                   model=agent["model"]["id"], tools=list(permissions),
                   permissions={**permissions, "*": "deny"}, network=network_of(environment), source="managed")
