"""The Telegram channel (install `bgagents[telegram]`): each allowed chat of a bot is a conversation."""

from .channel import WEBHOOK_PATH, TelegramChannel

__all__ = ["WEBHOOK_PATH", "TelegramChannel"]
