"""Overriding an operation a backend may lack (``OPTIONAL_OPERATIONS``: list_tree, list_temp,
store_new) without inventing it.

A middleware that passes such an operation through has it only where the link further in has it
(``Middleware.__init__`` binds it only then), so ``hasattr(link, "list_temp")`` tells whether the
chain can list temp items.  A method a middleware defines would exist on every instance and
break that; :func:`optional_operation` makes an override behave like the pass-through.
"""

from typing import Any, Callable, Concatenate, Generic, Optional, ParamSpec, TypeVar, overload

_P = ParamSpec("_P")
_R = TypeVar("_R")


class optional_operation(Generic[_P, _R]):
    """Decorator for a middleware's override of an optional operation: on an instance whose
    next link lacks the operation, the attribute does not exist (AttributeError)."""

    def __init__(self, function: Callable[Concatenate[Any, _P], _R]):
        self.function = function
        self.name = function.__name__
        self.__doc__ = function.__doc__
        self.__wrapped__ = function

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    # the type checker sees an operation of the instance, with the signature of the function
    @overload
    def __get__(self, instance: None, owner: Optional[type] = None) -> "optional_operation[_P, _R]": ...

    @overload
    def __get__(self, instance: object, owner: Optional[type] = None) -> Callable[_P, _R]: ...

    def __get__(self, instance: Any, owner: Optional[type] = None) -> Any:
        if instance is None:
            return self
        if not hasattr(instance.inner, self.name):
            raise AttributeError(f"{type(instance).__name__} has no {self.name!r}: the link further in lacks it")
        bound = self.function.__get__(instance, owner)
        # the next link's operations are fixed once it is built: later look-ups find this directly
        instance.__dict__[self.name] = bound
        return bound
