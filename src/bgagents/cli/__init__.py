"""The `bgagents` command line: a client of the HTTP API (plus `serve` and `demo`, which run it)."""
