"""Compilers that turn an edgeloop Pipeline into another orchestrator's format."""
