"""What the Managed Agents API has and bgagents does not serve answers so, in the API's error shape: a
404 `not_found_error` naming the resource, never a bare 404 page or a 500."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ...errors import NotFound

router = APIRouter(tags=["managed agents"])

NOT_SERVED = {
    "memory_stores": "memory stores", "vaults": "vaults", "skills": "skills", "files": "files",
    "deployments": "deployments", "deployment_runs": "deployment runs", "dreams": "dreams",
    "messages": "the Messages API", "models": "the model list", "user_profiles": "user profiles",
    "tunnels": "tunnels", "organizations": "organization administration", "webhooks": "webhooks of this API",
}
SERVED = "agents, environments, sessions and their events"


def what(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "sessions" and parts[2] == "resources":
        return "session resources (files, GitHub repositories, memory stores)"
    if len(parts) >= 3 and parts[0] == "environments" and parts[2] == "work":
        return "self-hosted environment work"
    if parts and parts[0] in NOT_SERVED:
        return NOT_SERVED[parts[0]]
    return f"/v1/{'/'.join(parts)}"


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def not_served(path: str, request: Request) -> None:
    raise NotFound(f"{what(path)}: not served by bgagents (it serves {SERVED} of the Managed Agents API)")
