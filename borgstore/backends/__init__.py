"""Backends: the backend contract (:class:`BackendBase`) and the built-in ``memory:`` backend.

The other backends are separate distributions found through entry points:
``borgstore-backend-posixfs`` (``file:``), ``borgstore-backend-sftp`` (``sftp:``) and
``borgstore-backend-rclone`` (``rclone:``).
"""

from ._base import BackendBase, Capabilities, ItemInfo

__all__ = ["BackendBase", "Capabilities", "ItemInfo"]
