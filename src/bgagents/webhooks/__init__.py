"""Webhooks (Standard Webhooks): a signed POST when a task ends or waits for approval, or a conversation answers.

`db.py` holds the tables, `urls.py` decides which addresses may receive, `store.py` reads and writes
subscriptions and deliveries, `service.py` turns stored events into deliveries and sends them with retries.
"""

from .service import EVENT_TYPES, Webhooks

__all__ = ["EVENT_TYPES", "Webhooks"]
