"""Shared fixtures. Server fixtures (PostgreSQL, MongoDB-wire) live in tests/servers.py."""

pytest_plugins = ["tests.servers"]
