"""Scratch locations under a user's URL: the kit never touches anything it did not create.

Also the plumbing of a live run (``borgstore check``): Hypothesis's files kept in a cache
directory instead of the working directory, and a count of the state machines' examples for
the progress display.
"""

import contextlib
import functools
import os
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..backends.errors import BackendDoesNotExist


def scratch_url(url: str) -> str:
    """A new, unique location below *url*: ``file:///srv/x`` -> ``file:///srv/x/borgstore-check-<id>``;
    *url* itself where its backend serves no locations below a URL (see :func:`needs_empty_url`)."""
    if not _locations_below(url):
        return url
    name = f"borgstore-check-{uuid.uuid4().hex[:12]}"
    if url.endswith((":", "/")):
        return url + name
    return f"{url}/{name}"


def _locations_below(url: str) -> bool:
    from .._plugins import backends, url_scheme

    provided = backends().get(url_scheme(url))
    return provided is None or provided.spec.locations_below


def needs_empty_url(url: str) -> Optional[str]:
    """Why the checks cannot run at *url*, or None: where the backend serves one store per URL
    (``BackendSpec.locations_below`` False), the checks create and destroy the store at *url*
    itself, so a store there (or a location that cannot be told apart from one) is refused."""
    if _locations_below(url):
        return None
    exists = location_exists(url)
    if exists is False:
        return None
    from .._plugins import redact_url

    what = "holds a store" if exists else "could not be opened to see whether it holds a store"
    return (
        f"{redact_url(url)} {what}: its backend serves one store per URL, so the checks would create and "
        "destroy the store there; point them at one that does not exist yet (e.g. a server of a fresh store)"
    )


def remove_scratch(url: str) -> None:
    """Destroy whatever a check left at the scratch location *url* (nothing if it is gone already)."""
    from .._plugins import backend_for_url

    backend = backend_for_url(url)
    try:
        backend.destroy()
    except BackendDoesNotExist:
        pass


def location_exists(url: str) -> Optional[bool]:
    """True if the location of *url* exists (it opens), False if open() says it does not, None if
    opening failed otherwise (then nobody can tell, and nothing may be removed)."""
    from .._plugins import backend_for_url

    backend = backend_for_url(url)
    try:
        backend.open()
    except BackendDoesNotExist:
        return False
    except Exception:
        return None
    with contextlib.suppress(Exception):
        backend.close()
    return True


def remove_created_root(url: str) -> Optional[str]:
    """Remove the location of *url*, which the caller made (it did not exist before), if nothing
    is in it.  Returns None when it is gone, else why it stays."""
    from .._plugins import backend_for_url

    backend = backend_for_url(url)
    try:
        backend.open()
    except BackendDoesNotExist:
        return None  # the scratch locations were separate names (memory:) or nothing was made
    try:
        # listed right before destroy(): what is in it now was put there during the check
        left = [entry.name for entry in backend.list("")]
    except Exception as exc:
        return f"its entries could not be listed: {type(exc).__name__}: {exc}"
    finally:
        backend.close()
    if left:
        return f"it is not empty ({', '.join(sorted(left)[:5])})"
    with contextlib.suppress(BackendDoesNotExist):
        backend.destroy()
    return None


def hypothesis_cache_directory() -> Path:
    """Where a live run keeps Hypothesis's files: ``$XDG_CACHE_HOME/borgstore/hypothesis``, or
    ``~/.cache/borgstore/hypothesis``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "borgstore" / "hypothesis"


@contextlib.contextmanager
def hypothesis_files_in_cache() -> Iterator[None]:
    """Inside the block, Hypothesis writes its files (e.g. the constants it collects from the
    code) to :func:`hypothesis_cache_directory` instead of ``.hypothesis/`` in the working
    directory, which is the user's, not a test suite's.  HYPOTHESIS_STORAGE_DIRECTORY, if set,
    is left to win.  Afterwards Hypothesis's own choice applies again."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(hypothesis_cache_directory())
    try:
        yield
    finally:
        set_hypothesis_home_dir(None)


@contextlib.contextmanager
def examples_counted(callback: Callable[[bool], object]) -> Iterator[None]:
    """Inside the block, ``callback(failed)`` runs after each example of the kit's state machines
    (in all profiles), *failed* telling whether the example raised an error.

    Hypothesis calls a state machine's teardown() once at the end of every example, passing or
    failing; the two base machines' teardown() is wrapped for the duration of the block (the
    faults machines call theirs).  Hypothesis has no callback per example that costs nothing:
    its observability interface also traces coverage and renders every step."""
    from hypothesis.errors import HypothesisException

    from ._backend_machine import BackendMachine
    from ._store_machine import StoreMachine

    def counted(teardown: Callable[[object], None]) -> Callable[[object], None]:
        @functools.wraps(teardown)
        def wrapper(self: object) -> None:
            try:
                teardown(self)
            finally:
                # called from Hypothesis's finally: the example's exception, if any, is in flight;
                # KeyboardInterrupt and Hypothesis's control flow are no failure of the backend
                error = sys.exc_info()[1]
                callback(isinstance(error, Exception) and not isinstance(error, HypothesisException))

        return wrapper

    originals = {machine: machine.__dict__["teardown"] for machine in (BackendMachine, StoreMachine)}
    for machine, teardown in originals.items():
        # setattr: replacing a method for the block's duration is the point here
        setattr(machine, "teardown", counted(teardown))
    try:
        yield
    finally:
        for machine, teardown in originals.items():
            setattr(machine, "teardown", teardown)
