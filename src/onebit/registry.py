"""Name -> object registries for models, methods and (later) datasets.

Extension is by registration (as in timm's ``@register_model``): a new model or
method is one ``register`` call, and every lookup of an unknown name fails with
the list of known names.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from .errors import UnknownNameError, UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None):
        """``reg.register(name, obj)`` or ``@reg.register(name)`` as a decorator."""

        def add(obj: T) -> T:
            if name in self._items:
                raise UserError(f"{self.kind} {name!r} is already registered")
            own = getattr(obj, "name", name)
            if isinstance(own, str) and own != name:
                raise UserError(f"{self.kind} registered as {name!r} calls itself {own!r}: give both the same name")
            self._items[name] = obj
            return obj

        return add(item) if item is not None else add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
