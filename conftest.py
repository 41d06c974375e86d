"""Keeps the repository root importable, so tests run against the source tree."""
