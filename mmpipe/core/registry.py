"""Named plug-ins (heads, encoder backends, layouts), found by discovery so that a new one is one file.

A registry knows its package: asking it for a name imports every module of that package once (each module
registers what it defines with ``@REGISTRY.register("name")``), then the ``importlib.metadata`` entry points of
its group, then the plug-in files named by ``MMPIPE_PLUGINS`` (``os.pathsep``-separated ``.py`` files or folders
of them; the workflow sets it from the config's ``plugins:`` list, so jobs and cluster nodes see the same ones).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from mmpipe.core.errors import ConfigError

T = TypeVar("T")

PLUGINS_ENV = "MMPIPE_PLUGINS"
_loaded_plugins: set[str] = set()


def plugin_files(spec: str | Iterable[str] | None = None) -> list[Path]:
    """The ``.py`` files named by ``spec`` (default: ``$MMPIPE_PLUGINS``); a folder stands for its ``*.py``."""
    if spec is None:
        spec = os.environ.get(PLUGINS_ENV, "")
    items = spec.split(os.pathsep) if isinstance(spec, str) else list(spec)
    files: list[Path] = []
    for item in filter(None, (str(i).strip() for i in items)):
        path = Path(item).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        elif path.suffix == ".py" and path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"plugins: {item!r} not found (expected a .py file or a folder of them)")
    return files


def load_plugins(spec: str | Iterable[str] | None = None) -> None:
    """Import each plug-in file once per process (as module ``mmpipe_plugin_<stem>``)."""
    for path in plugin_files(spec):
        key = str(path.resolve())
        if key in _loaded_plugins:
            continue
        _loaded_plugins.add(key)
        name = f"mmpipe_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec and module_spec.loader
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            _loaded_plugins.discard(key)
            del sys.modules[name]
            raise ConfigError(f"plugin {path}: {type(exc).__name__}: {exc}") from exc


class Registry(Generic[T]):
    """``name -> object`` for one kind of plug-in.

    Parameters
    ----------
    kind : what the names name, for messages ("head", "encoder backend", "layout").
    package : the package whose modules hold the built-in ones (imported on first use).
    group : the entry-point group that installed packages add theirs to (e.g. ``mmpipe.heads``).
    """

    def __init__(self, kind: str, package: str, group: str):
        self.kind, self.package, self.group = kind, package, group
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make ``obj`` available under ``name`` (sets ``obj.name`` where it can)."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                known = self._items[name]
                if getattr(known, "__qualname__", None) != getattr(obj, "__qualname__", None) or \
                        getattr(known, "__module__", None) != getattr(obj, "__module__", None):
                    raise ConfigError(f"{self.kind} {name!r} is registered twice: by {_where(known)} and {_where(obj)}")
            try:
                setattr(obj, "name", name)
            except (AttributeError, TypeError):
                pass
            self._items[name] = obj
            return obj

        return deco

    def discover(self) -> None:
        """Import the built-in modules and the entry points (once), and any plug-in files not yet loaded."""
        if not self._discovered:
            self._discovered = True
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            for ep in entry_points(group=self.group):
                try:
                    ep.load()
                except Exception as exc:
                    raise ConfigError(f"entry point {ep.name!r} ({ep.value}) of {self.group}: {exc}") from exc
        load_plugins()

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def get(self, name: str) -> T:
        """The plug-in called ``name``; an unknown name is a ``ConfigError`` that lists the known ones."""
        if name not in self._items and name.isidentifier() and \
                importlib.util.find_spec(f"{self.package}.{name}") is not None:
            importlib.import_module(f"{self.package}.{name}")  # a module named as it registers: no full scan
        if name not in self._items:
            self.discover()
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        self.discover()
        return sorted(self._items.items())


def _where(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
