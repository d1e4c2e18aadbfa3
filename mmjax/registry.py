"""One small registry for every "name in a config -> implementation" choice.

    TASKS = Registry("task")

    @TASKS.register("contrastive")
    class ContrastiveTask: ...

    TASKS.get(config.task.name, key="config.task.name")  # -> ContrastiveTask

An unknown name is a ``ConfigError`` that names the config key and lists the known names
(exit code 2 from the ``mmjax`` command), so no caller writes its own if-chain or message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from mmjax.config import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> registered objects (classes or functions) of one kind (``kind_name``:
    ``'task'``, ``'data source'``, ... as error messages say it)."""

    def __init__(self, kind_name: str):
        self.kind_name = kind_name
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: registers the decorated object under ``name`` and returns it unchanged.
        A name registered twice is an error (two implementations of one name)."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind_name} {name!r} is already registered "
                    f"({self._entries[name]!r}); pick another name"
                )
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str, key: str = "") -> T:
        """The object registered as ``name``; unknown: ``ConfigError`` naming ``key`` (the
        config key the name came from, e.g. ``'config.task.name'``) and the known names."""
        try:
            return self._entries[name]
        except KeyError:
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}unknown {self.kind_name} {name!r}; known: {self.names()}"
            ) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
