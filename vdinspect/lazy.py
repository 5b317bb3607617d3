"""Heavy modules imported on first use, so the command line starts at once.

``from ..lazy import np`` stands for ``import numpy as np``: numpy (about 60 ms and a BLAS
thread pool) is imported the first time an attribute is read, not when the module using it
is imported. ``vdinspect info`` reads a header and never touches an array, so it never
pays for numpy. On first use the stand-in copies numpy's namespace into itself, so later
``np.x`` look-ups cost what a module attribute costs.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from typing import Any

__all__ = ["LazyArray", "LazyModule", "SetBy", "np"]


class LazyModule(types.ModuleType):
    """A module imported when one of its attributes is first read (not ``sys.modules``'s
    entry: importing it normally elsewhere is unaffected)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_loaded"] = False

    def __getattr__(self, attr: str) -> Any:
        # called only for names not yet in this object's namespace; what the import
        # machinery and inspect probe a module for does not import numpy
        if attr in ("__path__", "__file__", "__wrapped__"):
            raise AttributeError(attr)
        real = importlib.import_module(self.__name__)
        if not self.__dict__["_lazy_loaded"]:
            ns = dict(real.__dict__)
            for k in ("__name__", "__spec__", "__loader__", "__package__"):
                ns.pop(k, None)
            self.__dict__.update(ns)
            self.__dict__["_lazy_loaded"] = True
        value = getattr(real, attr)  # a name numpy itself provides lazily (np.testing)
        self.__dict__[attr] = value
        return value

    @property
    def loaded(self) -> bool:
        """True once the real module has been imported through this stand-in."""
        return self.__dict__["_lazy_loaded"]


#: numpy, imported when first used
np: Any = LazyModule("numpy")


class LazyArray:
    """A module-level numpy constant built on first use (indexing it, or ``np.asarray``),
    so that defining it does not import numpy."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value = None

    @property
    def value(self) -> Any:
        """The array itself (built on the first call)."""
        if self._value is None:
            self._value = self._make()
        return self._value

    def __getitem__(self, key: Any) -> Any:
        return self.value[key]

    def __len__(self) -> int:
        return len(self.value)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        return self.value if dtype is None else self.value.astype(dtype)


class SetBy:
    """An instance attribute that one method sets together with others, on first use:
    ``payload_state = SetBy("_decode_bat")``. Reading it before it is set calls the method
    (which assigns the attribute and its companions); later reads find the instance's own
    value, as an assignment made at open would be found."""

    __slots__ = ("method", "name")

    def __init__(self, method: str) -> None:
        self.method = method
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        getattr(obj, self.method)()
        try:
            return obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(f"{self.method} did not set {self.name}") from None
