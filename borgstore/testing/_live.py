"""Scratch locations under a user's URL: the kit never touches anything it did not create."""

import uuid

from ..backends.errors import BackendDoesNotExist


def scratch_url(url: str) -> str:
    """A new, unique location below *url*: ``file:///srv/x`` -> ``file:///srv/x/borgstore-check-<id>``."""
    name = f"borgstore-check-{uuid.uuid4().hex[:12]}"
    if url.endswith((":", "/")):
        return url + name
    return f"{url}/{name}"


def remove_scratch(url: str) -> None:
    """Destroy whatever a check left at the scratch location *url* (nothing if it is gone already)."""
    from .._plugins import backend_for_url

    backend = backend_for_url(url)
    try:
        backend.destroy()
    except BackendDoesNotExist:
        pass
