"""One registry mechanism for every pluggable kind (sources, processors, schedules, plugins).

A `Registry` maps a type name (what connector.yaml writes after `type:`) to a class. It is filled
from three places, looked at lazily on first use:

1. built-ins: modules of this package that call `register(...)` when imported;
2. explicit `register(type_name, cls)` calls (`register_source`, `register_processor`, ...);
3. the entry point group (`file_connector.sources`, `file_connector.processors`, ...) of installed
   distributions. An explicit registration wins over an entry point of the same name.

A third-party entry point that fails to import does not break the others: asking for its type raises
a ConfigError saying why it could not be loaded.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Generic, Sequence, TypeVar

from .errors import ConfigError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Type name -> class for one kind of pluggable thing.

    Args:
        kind: what the classes are, for messages ("source type", "processor", "schedule type").
        group: the entry point group third-party distributions declare their classes in.
        base: every registered class must subclass it.
        builtins: modules (absolute names) whose import registers the built-in types.
    """

    def __init__(self, kind: str, group: str, base: type, builtins: Sequence[str] = ()):
        self.kind = kind
        self.group = group
        self.base = base
        self.builtins = tuple(builtins)
        self._classes: dict[str, T] = {}
        self._broken: dict[str, str] = {}  # entry point name -> why it could not be loaded
        self._loaded = False

    def register(self, type_name: str, cls: T) -> None:
        """Make `type: <type_name>` build `cls` (replacing any earlier class of that name)."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{self.kind} {type_name!r}: {cls!r} is not a subclass of {self.base.__name__}")
        self._classes[type_name] = cls
        self._broken.pop(type_name, None)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtins:
            importlib.import_module(module)
        for entry in importlib.metadata.entry_points(group=self.group):
            if entry.name in self._classes:
                continue  # registered explicitly (or built in): that one wins
            try:
                self.register(entry.name, entry.load())
            except Exception as exc:  # a broken plugin must not take the others down
                self._broken[entry.name] = (f"entry point {entry.value!r} in group {self.group} cannot be loaded: "
                                            f"{type(exc).__name__}: {exc}")

    def reload(self) -> None:
        """Look at the entry points again on next use (after installing a distribution at run time)."""
        self._loaded = False

    def types(self) -> dict[str, T]:
        """Returns:
        Every known type name and its class."""
        self._load()
        return dict(self._classes)

    def get(self, type_name: str, where: str = "") -> T:
        """Returns:
        The class of `type_name`; an unknown name is a ConfigError listing the known ones."""
        self._load()
        if type_name in self._classes:
            return self._classes[type_name]
        if type_name in self._broken:
            raise ConfigError(f"{where}{self.kind} {type_name!r}: {self._broken[type_name]}")
        raise ConfigError(f"{where}unknown {self.kind} {type_name!r}; known {self.kind}s: "
                          f"{', '.join(sorted(self._classes)) or 'none'}")

    def broken(self) -> dict[str, str]:
        """Returns:
        Entry point names that could not be loaded, and why."""
        self._load()
        return dict(self._broken)

    def __contains__(self, type_name: str) -> bool:
        self._load()
        return type_name in self._classes
