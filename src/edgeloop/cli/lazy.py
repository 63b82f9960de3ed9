"""A root command group that imports each noun's module only when that noun is used.

`edgeloop replicate` then starts without importing serving, fleet or pipeline code (and
their numpy, pyarrow, SQLAlchemy...); `edgeloop --help` lists the nouns from their summaries.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

Command = Any  # a click command of typer's bundled click (typer._click.Command)


@dataclass(frozen=True)
class LazyCommand:
    """Where a noun lives (`module:attribute`, a Typer app or a command function) and the
    summary `edgeloop --help` shows for it without importing the module."""

    target: str
    summary: str

    def load(self, name: str) -> Command:
        """Import the module and build the click command exactly as a direct registration
        on the root app would (`add_typer` for apps, `command` for functions)."""
        module, _, attribute = self.target.partition(":")
        obj = getattr(importlib.import_module(module), attribute)
        holder = typer.Typer()
        if isinstance(obj, typer.Typer):
            holder.add_typer(obj, name=name)
        else:
            holder.command(name)(obj)
        return typer.main.get_group(holder).commands[name]


class LazyCommands(MutableMapping[str, Command]):
    """The root's command table: commands registered directly, then lazy ones loaded on
    first lookup. Iterating names loads nothing."""

    def __init__(self, loaded: Mapping[str, Command], lazy: Mapping[str, LazyCommand]) -> None:
        self._loaded: dict[str, Command] = dict(loaded)
        self._lazy = {name: spec for name, spec in lazy.items() if name not in self._loaded}

    def peek(self, name: str) -> Command | None:
        """The command if loaded, else a stand-in that carries only its name and summary."""
        if name in self._loaded:
            return self._loaded[name]
        spec = self._lazy.get(name)
        return None if spec is None else TyperCommand(name=name, help=spec.summary)

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            spec = self._lazy[name]  # KeyError for unknown names, as a dict would
            self._loaded[name] = spec.load(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._loaded
        yield from (name for name in self._lazy if name not in self._loaded)

    def __len__(self) -> int:
        return len(set(self._loaded) | set(self._lazy))


def lazy_group(commands: Mapping[str, LazyCommand]) -> type[TyperGroup]:
    """A TyperGroup class (for `typer.Typer(cls=...)`) that also offers `commands`, lazily."""

    class LazyGroup(TyperGroup):
        def __init__(self, **attrs: Any) -> None:
            super().__init__(**attrs)
            self.commands = LazyCommands(self.commands, commands)
            self._listing = False

        def list_commands(self, ctx: Any) -> list[str]:
            return list(self.commands)

        def get_command(self, ctx: Any, cmd_name: str) -> Command | None:
            table = self.commands
            if self._listing and isinstance(table, LazyCommands):
                return table.peek(cmd_name)
            return table.get(cmd_name)

        def format_help(self, ctx: Any, formatter: Any) -> None:
            # Listing the nouns needs their summaries only, not their modules.
            self._listing = True
            try:
                super().format_help(ctx, formatter)
            finally:
                self._listing = False

    return LazyGroup
