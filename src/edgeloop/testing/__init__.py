"""Helpers for tests and benchmarks that start real servers (shipped so users can test too)."""
