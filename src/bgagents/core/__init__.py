"""The runtime core: tasks, sessions, events and the durable engine. Knows nothing of HTTP or the CLI."""
