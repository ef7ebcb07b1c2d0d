"""How the kit reports: every check belongs to a named rule, and a broken rule says which it is.

A failing check raises :class:`ConformanceFailure` carrying the rule's id (``"list-sorted"``), so
a test, the pytest plugin and ``python -m borgstore check`` can all tell *which* promise of the
contract was broken, not only that something was.  A check that cannot run because the backend
declares it lacks a capability raises :class:`NotApplicable` instead of passing quietly.

Capabilities are read from the *opened* backend (:func:`capabilities_of` after ``open()``): a
backend may learn what its storage can do only when it connects.

A few promises of the contract cannot be checked by a backend-independent kit; they are listed in
:data:`UNCHECKED_RULES` (``python -m borgstore check URL --rules`` prints them too), and each
plugin's own tests must cover them.
"""

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Protocol

if TYPE_CHECKING:
    from ..backends._base import Capabilities


#: rule id -> the promise, for the rules no generic check can provoke
UNCHECKED_RULES = {
    "errors-not-missing": "a generic failure (an I/O or permission error, an SFTP SSH_FX_FAILURE) is never "
    "reported as missing (ObjectNotFound, info() exists=False, an empty listing) but raises BackendError "
    "naming it; only a backend's own tests can inject such failures",
}


class ConformanceFailure(AssertionError):
    """A backend or store broke rule :attr:`rule` of the contract."""

    def __init__(self, rule: str, message: str):
        super().__init__(f"[{rule}] {message}")
        self.rule = rule
        self.message = message

    def __reduce__(self) -> tuple[type["ConformanceFailure"], tuple[str, str]]:
        return type(self), (self.rule, self.message)


class KitCheck(Protocol):
    """An example check of the kit: a function registered for the id of the rule it checks."""

    rule: str

    def __call__(self, *args: Any, **kwargs: Any) -> None: ...


class NotApplicable(Exception):
    """The check does not apply: the backend declares that it lacks what the check needs."""


def expect(rule: str, condition: object, message: str) -> None:
    """Raise ConformanceFailure(rule, message) unless *condition* holds."""
    if not condition:
        raise ConformanceFailure(rule, message)


@contextmanager
def expect_raises(rule: str, error_class: type[BaseException], what: str) -> Iterator[None]:
    """The block must raise *error_class* (or a subclass); anything else breaks *rule*."""
    try:
        yield
    except error_class:
        return
    except ConformanceFailure:
        raise
    except Exception as exc:
        raise ConformanceFailure(
            rule, f"{what}: expected {error_class.__name__}, got {type(exc).__name__}: {exc}"
        ) from exc
    raise ConformanceFailure(rule, f"{what}: expected {error_class.__name__}, but nothing was raised")


@contextmanager
def no_error(rule: str, what: str) -> Iterator[None]:
    """An exception inside the block breaks *rule* (instead of surfacing as a bare traceback)."""
    try:
        yield
    except ConformanceFailure:
        raise
    except Exception as exc:
        raise ConformanceFailure(rule, f"{what} raised {type(exc).__name__}: {exc}") from exc


def require(condition: object, reason: str) -> None:
    """Raise NotApplicable(reason) unless *condition* holds."""
    if not condition:
        raise NotApplicable(reason)


def capabilities_of(backend: object) -> "Capabilities":
    """The declared capabilities of a backend or chain link (defaults if it declares none).

    Call it on an open backend: before open() a backend may not know them yet."""
    from ..backends._base import Capabilities

    return getattr(backend, "capabilities", None) or Capabilities()
