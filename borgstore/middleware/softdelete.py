"""The ``softdelete`` middleware: soft deletion as a rename to ``<name>.del``.

This is the on-disk form the PyPI borgstore uses: a soft-deleted item is the same object, renamed
with the suffix ``.del`` in the same directory.  Calls with ``deleted=True`` address those items;
listings show either the live items (``deleted=False``) or the soft-deleted ones, without their
suffix (``deleted=True``).  Links further in see only plain names and renames.
"""

from ..constants import DEL_SUFFIX
from .._plugins import MiddlewareSpec, hookimpl
from ._base import Middleware


def _strip(info):
    return info._replace(name=info.name[: -len(DEL_SUFFIX)]) if info.name.endswith(DEL_SUFFIX) else info


class SoftDeleteMiddleware(Middleware):
    name = "softdelete"

    def info(self, name, *, deleted=False):
        if deleted:
            return _strip(self.inner.info(name + DEL_SUFFIX))
        return self.inner.info(name)

    def load(self, name, *, size=None, offset=0, deleted=False):
        return self.inner.load(name + DEL_SUFFIX if deleted else name, size=size, offset=offset)

    def delete(self, name, *, deleted=False):
        return self.inner.delete(name + DEL_SUFFIX if deleted else name)

    def move(self, curr_name, new_name, *, deleted=False):
        if deleted:
            return self.inner.move(curr_name + DEL_SUFFIX, new_name + DEL_SUFFIX)
        return self.inner.move(curr_name, new_name)

    def soft_delete(self, name):
        return self.inner.move(name, name + DEL_SUFFIX)

    def undelete(self, name):
        return self.inner.move(name + DEL_SUFFIX, name)

    def hash(self, name, algorithm="sha256", *, deleted=False):
        return self.inner.hash(name + DEL_SUFFIX if deleted else name, algorithm)

    def gather(self, sources, *, deleted=False):
        if deleted:
            sources = [(name + DEL_SUFFIX, offset, size) for name, offset, size in sources]
        return self.inner.gather(sources)

    def list(self, name, *, deleted=False):
        items = self.inner.list(name)
        if not deleted:
            return (info for info in items if info.directory or not info.name.endswith(DEL_SUFFIX))
        # stripping the suffix can change the order ("a-b.del" < "a.del", but "a" < "a-b")
        return iter(
            sorted(
                (_strip(info) for info in items if info.directory or info.name.endswith(DEL_SUFFIX)),
                key=lambda info: info.name,
            )
        )


@hookimpl
def borgstore_middleware():
    return [MiddlewareSpec("softdelete", SoftDeleteMiddleware, "soft deletion: rename to <name>.del")]
