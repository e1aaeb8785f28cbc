"""Entry-point plugins: the ``umt.heads`` and ``umt.datamodules`` groups, listed without importing, loaded on use.

A plugin that fails to import gives one warning naming its distribution and the error, and never breaks ``umt``
or the other plugins.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cache, partial
from importlib.metadata import EntryPoint, entry_points
from typing import Any

GROUPS = {"heads": "umt.heads", "datamodules": "umt.datamodules"}


class PluginError(ImportError):
    """A plugin is unknown, or its module raises on import."""


@dataclass(frozen=True)
class Plugin:
    """One registered entry point.

    Attributes:
        name: the entry-point name (what recipes may write as ``class_path``).
        target: ``module:attribute``.
        distribution: the installed distribution that registers it.
    """

    name: str
    target: str
    distribution: str

    @property
    def class_path(self) -> str:
        """``module.attribute``, as jsonargparse's ``class_path``."""
        return self.target.replace(":", ".")


def _distribution(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return dist.name if dist is not None else "?"


def plugins(kind: str) -> dict[str, Plugin]:
    """Registered plugins of ``kind`` (``heads`` or ``datamodules``) by name, without importing any."""
    found: dict[str, Plugin] = {}
    for point in entry_points(group=GROUPS[kind]):
        found.setdefault(point.name, Plugin(point.name, point.value, _distribution(point)))
    return dict(sorted(found.items()))


@cache
def _load(kind: str, name: str) -> Any:
    plugin = plugins(kind).get(name)
    if plugin is None:
        known = ", ".join(plugins(kind)) or "none"
        raise PluginError(f"no {kind[:-1]} plugin named {name!r}; installed: {known}")
    module, _, attribute = plugin.target.partition(":")
    try:
        target: Any = __import__(module, fromlist=["_"])
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as error:  # any error of a third-party module must not break the CLI
        raise PluginError(f"{kind[:-1]} plugin {name!r} of distribution {plugin.distribution!r} "
                          f"({plugin.target}) failed to load: {type(error).__name__}: {error}") from error
    return target


def load(kind: str, name: str) -> Any:
    """The object a plugin names, imported now (cached).

    Raises:
        PluginError: unknown name, or the plugin's module raises on import.
    """
    return _load(kind, name)


def status(kind: str) -> list[tuple[Plugin, str]]:
    """Every plugin of ``kind`` with ``ok`` or its import error (imports each)."""
    rows = []
    for plugin in plugins(kind).values():
        try:
            load(kind, plugin.name)
            rows.append((plugin, "ok"))
        except PluginError as error:
            cause = error.__cause__
            rows.append((plugin, f"broken: {type(cause).__name__}: {cause}" if cause else f"broken: {error}"))
    return rows


def factory_target(factory: Any) -> Any:
    """The class (or function) behind a head factory: through ``functools.partial`` layers, including the ones
    jsonargparse builds for ``Callable`` options (the class is then among the partial's arguments)."""
    while isinstance(factory, partial):
        classes = [arg for arg in factory.args if isinstance(arg, type)]
        factory = classes[0] if classes else factory.func
    return factory


def head_name(factory: Any) -> str:
    """The name a head factory goes by: its entry-point name when its class is registered, else its class name
    in snake case (``LinearProbeHead`` -> ``linear_probe``)."""
    target = factory_target(factory)
    path = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    for plugin in plugins("heads").values():
        if plugin.class_path == path:
            return plugin.name
    name = getattr(target, "__name__", type(target).__name__).removesuffix("Head") or "head"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def resolve_class_paths(config: Any, kind: str = "heads") -> tuple[Any, bool]:
    """``config`` (a parsed recipe, any nesting) with every ``class_path`` that is a plugin name replaced by the
    plugin's class path; whether anything changed. A broken plugin warns once and is left as written (the parser
    then reports it)."""
    if isinstance(config, dict):
        changed = False
        out = {}
        for key, value in config.items():
            if key == "class_path" and isinstance(value, str) and "." not in value and value in plugins(kind):
                try:
                    load(kind, value)
                except PluginError as error:
                    warnings.warn(str(error), stacklevel=2)
                out[key] = plugins(kind)[value].class_path
                changed = True
            else:
                out[key], sub = resolve_class_paths(value, kind)
                changed |= sub
        return out, changed
    if isinstance(config, list):
        items = [resolve_class_paths(item, kind) for item in config]
        return [item for item, _ in items], any(changed for _, changed in items)
    return config, False
