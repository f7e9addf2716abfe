"""Shared pytest setup for nbcore's own suite (and the plugin suites under tests/)."""
pytest_plugins = ["nbcore.testing"]
