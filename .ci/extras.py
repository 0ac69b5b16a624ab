"""Prints the extras that constraints.txt pins, comma-separated: every extra of pyproject.toml but those below."""

import tomllib
from pathlib import Path

# bench: LangGraph's server caps protobuf and jsonschema-rs, which would hold back schemathesis and others for
# everyone; the benchmarks install it on their own.
UNPINNED = {"bench"}


def pinned_extras() -> list[str]:
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    return [name for name in pyproject["project"]["optional-dependencies"] if name not in UNPINNED]


if __name__ == "__main__":
    print(",".join(pinned_extras()))
