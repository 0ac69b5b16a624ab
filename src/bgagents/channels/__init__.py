"""Channels carry conversations to messaging services, one package per service, on top of the runtime."""
