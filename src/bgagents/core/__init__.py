"""The runtime core: tasks, sessions, events and the durable engine.

Knows nothing of HTTP, the CLI, conversations, schedules or channels: those attach from above
through `extensions.Extension`."""
