"""Looking into a store and changing single items: ``ls``, ``stat``, ``cat``, ``put``, ``rm``, ``mv``
and ``du`` (docs/cli.md).

Names are the application's (``data/0123abcd...``), never the backend's nested ones; the
namespaces' nesting levels come from ``--levels`` or are read off the tree (``_levels``).
Exit status: 0 done, 1 the named item (or namespace) does not exist, 2 any other error.
"""

import argparse
import contextlib
import heapq
import json
import sys
import time
from typing import TYPE_CHECKING, Callable, Collection, Iterable, Iterator, Optional, Sequence

from .._names import check_name, check_namespace
from ..backends.errors import BackendError, ObjectAlreadyExists, ObjectNotFound, PermissionDenied
from ..constants import DEL_SUFFIX
from ._levels import USAGE_FIELDS, CommandFailed, Layout, Session, levels_option, nesting_option, usage

if TYPE_CHECKING:
    from ..backends._base import ItemInfo
    from ..store import Store

    #: the sub-parsers object of the ``borgstore`` parser
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

#: a subcommand: parsed arguments -> exit status
Command = Callable[[argparse.Namespace], int]
#: one line of ls: (application name, its ItemInfo or None for a namespace, soft-deleted)
Entry = tuple[str, Optional["ItemInfo"], bool]

#: exit status when the named item or namespace does not exist (scripts test for it); every
#: other error is 2 (CommandFailed's default, and the status of ``borgstore._cli.main``)
MISSING = 1


def register(commands: "SubParsers") -> None:
    """Add the browsing subcommands to the ``borgstore`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", metavar="URL", help="the store, e.g. file:///srv/repo or sftp://host/repo")
    common.add_argument(
        "--levels",
        metavar="NS=N[,N...]",
        action="append",
        type=levels_option,
        default=[],
        help="nesting levels of namespace NS (repeatable, e.g. --levels data/=2 --levels config/=0); "
        "default: read off the store's tree",
    )
    common.add_argument(
        "--nesting",
        metavar="NS=STRATEGY",
        action="append",
        type=nesting_option,
        default=[],
        help="nesting strategy of namespace NS (hex or hash; default: read off the tree, else hex)",
    )
    for add in (_add_ls, _add_stat, _add_cat, _add_put, _add_rm, _add_mv, _add_du):
        add(commands, common)


def _parser(
    commands: "SubParsers",
    common: argparse.ArgumentParser,
    name: str,
    help_text: str,
    run: Command,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        parents=[common],
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog="exit status: 0 done, 1 no such item or namespace, 2 any other error. "
        "Names are the application's (data/0123...). How levels are read off the tree: docs/cli.md.",
    )
    parser.set_defaults(run=_guarded(run))
    return parser


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per line, for scripts")
    parser.add_argument(
        "--human-readable", action="store_true", help="sizes in KiB, MiB, GiB (1024-based) instead of bytes"
    )


def _add_ls(commands: "SubParsers", common: argparse.ArgumentParser) -> None:
    ls = _parser(commands, common, "ls", "list the items of a namespace, or the root and its namespaces", _ls)
    ls.add_argument("namespace", metavar="NAMESPACE", nargs="?", help="e.g. data/ (default: the root)")
    ls.add_argument("-R", "--recursive", action="store_true", help="every item of every namespace")
    which = ls.add_mutually_exclusive_group()
    which.add_argument("--deleted", action="store_true", help="only soft-deleted items")
    which.add_argument("-a", "--all", action="store_true", help="live and soft-deleted items")
    _add_output_options(ls)


def _add_stat(commands: "SubParsers", common: argparse.ArgumentParser) -> None:
    stat = _parser(commands, common, "stat", "show an item's size, mtime, whether it is soft-deleted", _stat)
    stat.add_argument("name", metavar="NAME", help="e.g. data/0123abcd... (the live item, else the soft-deleted one)")
    stat.add_argument("--deleted", action="store_true", help="only the soft-deleted item of that name")
    _add_output_options(stat)


def _add_cat(commands: "SubParsers", common: argparse.ArgumentParser) -> None:
    cat = _parser(commands, common, "cat", "write an item's bytes (or a range of them) to stdout", _cat)
    cat.add_argument("name", metavar="NAME")
    cat.add_argument("--offset", type=int, default=0, help="start here (negative: from the end; default 0)")
    cat.add_argument("--size", type=int, default=None, help="at most this many bytes (default: to the end)")
    cat.add_argument("--deleted", action="store_true", help="read the soft-deleted item of that name")


def _add_put(commands: "SubParsers", common: argparse.ArgumentParser) -> None:
    put = _parser(commands, common, "put", "store a file (or stdin) as an item", _put)
    put.add_argument("name", metavar="NAME")
    put.add_argument("file", metavar="FILE", nargs="?", default="-", help="'-' or absent: standard input")
    put.add_argument("-f", "--force", action="store_true", help="replace an existing item")


def _add_rm(commands: "SubParsers", common: argparse.ArgumentParser) -> None:
    rm = _parser(commands, common, "rm", "soft-delete items (--hard: for good)", _rm)
    rm.add_argument("names", metavar="NAME", nargs="+")
    rm.add_argument("--hard", action="store_true", help="delete for good instead of soft-deleting")
    rm.add_argument("--deleted", action="store_true", help="remove the soft-deleted item of that name, for good")


def _add_mv(commands: "SubParsers", common: argparse.ArgumentParser) -> None:
    mv = _parser(commands, common, "mv", "rename an item, or undelete soft-deleted items", _mv)
    mv.add_argument("names", metavar="NAME", nargs="+", help="NAME NEW_NAME, or with --undelete NAME...")
    mv.add_argument("--undelete", action="store_true", help="bring soft-deleted items back")
    mv.add_argument("-f", "--force", action="store_true", help="replace an existing item at the target")


def _add_du(commands: "SubParsers", common: argparse.ArgumentParser) -> None:
    du = _parser(commands, common, "du", "count items and bytes per namespace, live and soft-deleted", _du)
    du.add_argument("namespaces", metavar="NAMESPACE", nargs="*", help="default: the root and every namespace")
    _add_output_options(du)


def _guarded(command: Command) -> Command:
    """*command* with its failures printed as one ``error:`` line and turned into an exit status."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CommandFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.status
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return run


def _session(args: argparse.Namespace, *, read_only: bool) -> Session:
    return Session(args.url, dict(args.levels), dict(args.nesting), read_only=read_only)


def _configure(session: Session, namespaces: Iterable[str], names: Iterable[str] = ()) -> None:
    try:
        session.configure(namespaces, names)
    except PermissionDenied as exc:
        raise CommandFailed(f"permission denied in {session.shown_url}: {exc}") from None
    for note in session.notes():
        print(f"note: {note}", file=sys.stderr)


def _namespace_of(name: str) -> str:
    return name.partition("/")[0] if "/" in name else ""


def _checked_names(names: Collection[str]) -> list[str]:
    """Every name checked before anything is opened: a typo in the third changes nothing."""
    for name in names:
        check_name(name)
    return list(names)


def _shown_namespace(namespace: str) -> str:
    return repr(namespace + "/") if namespace else "the root namespace"


def _existing_namespace(session: Session, namespace: str) -> str:
    name = check_namespace(namespace)
    if name and name not in session.namespaces:
        present = ", ".join(f"{ns}/" for ns in session.namespaces) or "none"
        raise CommandFailed(f"no namespace {name + '/'!r} in {session.shown_url} (namespaces: {present})", MISSING)
    return name


@contextlib.contextmanager
def _on_item(session: Session, name: str, deleted: bool = False) -> Iterator[None]:
    """Turn a missing item and a refused permission into messages naming *name*."""
    try:
        yield
    except ObjectNotFound:
        raise CommandFailed(_missing(session, name, deleted), MISSING) from None
    except PermissionDenied as exc:
        raise CommandFailed(f"permission denied for {name} in {session.shown_url}: {exc}") from None


def _missing(session: Session, name: str, deleted: bool) -> str:
    """The message for a missing item, with a hint when the other kind of that name exists."""
    what = "soft-deleted item" if deleted else "item"
    message = f"no {what} {name} in {session.shown_url}"
    try:
        other = session.store.info(name, deleted=not deleted).exists
    except (BackendError, ValueError):  # only a hint: the message stands without it
        other = False
    if other and deleted:
        message += " (only the live item exists)"
    elif other:
        message += " (it is soft-deleted: --deleted acts on it, mv --undelete brings it back)"
    return message


# --- output ---
def _size(size: int, human: bool) -> str:
    if not human or size < 1024:
        return f"{size} B" if human else str(size)
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def _time(mtime: float) -> str:
    # local time, as ls -l and rclone lsl show it; 0 is an unknown time
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime)) if mtime else "-"


def _print_item(name: str, info: "ItemInfo", deleted: bool, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps({"name": name, "size": info.size, "deleted": deleted, "mtime": info.mtime or None}))
    else:
        marker = "  (deleted)" if deleted else ""
        print(f"{_size(info.size, args.human_readable):>12}  {_time(info.mtime):19}  {name}{marker}")


def _print_namespace(name: str, layout: Layout, args: argparse.Namespace) -> None:
    levels = ",".join(str(level) for level in layout.levels)
    if args.json:
        print(
            json.dumps(
                {"name": name + "/", "namespace": True, "levels": list(layout.levels), "nesting": layout.nesting}
            )
        )
    else:
        nesting = "" if layout.nesting in ("hex", None) else f", nesting {layout.nesting}"
        print(f"{'-':>12}  {'-':19}  {name}/  (levels {levels}{nesting})")


# --- ls ---
def _ls(args: argparse.Namespace) -> int:
    with _session(args, read_only=True) as session:
        if args.namespace is not None:
            targets, show_namespaces = [_existing_namespace(session, args.namespace)], False
        elif args.recursive:
            targets, show_namespaces = ["", *session.namespaces], False
        else:
            targets, show_namespaces = [""], True
        _configure(session, [*targets, *(session.namespaces if show_namespaces else ())])
        for namespace in targets:
            try:
                entries = _entries(session.store, namespace, session.layouts[namespace], args)
                if show_namespaces:
                    listed = ((f"{ns}/", None, False) for ns in session.namespaces)
                    entries = heapq.merge(entries, listed, key=lambda entry: entry[0])
                for name, info, deleted in entries:
                    if info is None:
                        _print_namespace(name[:-1], session.layouts[name[:-1]], args)
                    else:
                        _print_item(name, info, deleted, args)
            except PermissionDenied as exc:
                raise CommandFailed(
                    f"permission denied listing {_shown_namespace(namespace)} in {session.shown_url}: {exc}"
                ) from None
    return 0


def _entries(store: "Store", namespace: str, layout: Layout, args: argparse.Namespace) -> Iterator[Entry]:
    """(application name, ItemInfo, deleted) of a namespace's items, sorted by name."""
    prefix = f"{namespace}/" if namespace else ""
    listed: Iterable[ItemInfo] = store.list(namespace)
    if layout.nesting is None:
        # the Store walks it as hex-nested, in directory order: the order of the keys only then
        listed = sorted(listed, key=lambda info: info.name)
    live = ((prefix + info.name, info, False) for info in listed)
    deleted = ((prefix + info.name, info, True) for info in store.list(namespace, deleted=True))
    if args.deleted:
        return deleted
    if args.all:
        return heapq.merge(live, deleted, key=lambda entry: (entry[0], entry[2]))
    return live


# --- stat, cat ---
def _stat(args: argparse.Namespace) -> int:
    name = _checked_names([args.name])[0]
    with _session(args, read_only=True) as session:
        _configure(session, [_namespace_of(name)], [name])
        store = session.store
        with _on_item(session, name, args.deleted):
            deleted = args.deleted
            info = store.info(name, deleted=deleted)
            if not info.exists and not deleted:
                deleted = True
                info = store.info(name, deleted=True)
            if not info.exists:
                raise ObjectNotFound(name)
            stored_as = store.find(name, deleted=deleted) + (DEL_SUFFIX if deleted else "")
    if args.json:
        fields = {"name": name, "size": info.size, "deleted": deleted, "mtime": info.mtime or None}
        print(json.dumps({**fields, "stored_as": stored_as}))
        return 0
    print(f"name:      {name}")
    print(f"size:      {_size(info.size, args.human_readable)}")
    print(f"mtime:     {_time(info.mtime)}")
    print(f"deleted:   {'yes' if deleted else 'no'}")
    print(f"stored as: {stored_as}")
    return 0


def _cat(args: argparse.Namespace) -> int:
    name = _checked_names([args.name])[0]
    with _session(args, read_only=True) as session:
        _configure(session, [_namespace_of(name)], [name])
        with _on_item(session, name, args.deleted):
            data = session.store.load(name, offset=args.offset, size=args.size, deleted=args.deleted)
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


# --- put, rm, mv ---
def _put(args: argparse.Namespace) -> int:
    name = _checked_names([args.name])[0]
    # read everything first: a file that cannot be read leaves the store untouched
    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(args.file, "rb") as source:
                data = source.read()
        except OSError as exc:
            raise CommandFailed(f"cannot read {args.file}: {exc.strerror or exc}") from None
    with _session(args, read_only=False) as session:
        _configure(session, [_namespace_of(name)], [name])
        namespace = _namespace_of(name)
        if session.layouts[namespace].nesting is None:
            # guessing would write the item where no reader of this store looks for it
            raise CommandFailed(
                f"cannot tell how {namespace}/ in {session.shown_url} is nested (no item shows it): "
                f"give --nesting {namespace}/=hex or --nesting {namespace}/=hash"
            )
        store = session.store
        with _on_item(session, name):
            if args.force:
                store.store(name, data)
            elif store.info(name).exists:
                raise CommandFailed(f"{name} exists in {session.shown_url}: give --force to replace it")
            elif store.chain.capabilities.store_new:
                # a writer that raced us since info() must not be overwritten either
                try:
                    store.chain.store_new(store.find(name), data)
                except ObjectAlreadyExists:
                    raise CommandFailed(f"{name} exists in {session.shown_url}: give --force to replace it") from None
            else:
                store.store(name, data)
    return 0


def _rm(args: argparse.Namespace) -> int:
    names = _checked_names(args.names)
    with _session(args, read_only=False) as session:
        _configure(session, {_namespace_of(name) for name in names}, names)
        store = session.store
        status = 0
        for name in names:
            try:
                with _on_item(session, name, args.deleted):
                    if args.deleted:
                        store.delete(name, deleted=True)
                    elif args.hard:
                        store.delete(name)
                    else:
                        store.move(name, delete=True)
            except CommandFailed as exc:
                # like rm(1): report it and go on with the other names
                print(f"error: {exc}", file=sys.stderr)
                status = max(status, exc.status)
    return status


def _mv(args: argparse.Namespace) -> int:
    names = _checked_names(args.names)
    if not args.undelete and len(names) != 2:
        raise CommandFailed(f"mv needs NAME NEW_NAME (or --undelete NAME...), got {len(names)} name(s)")
    if not args.undelete and names[0] == names[1]:
        raise CommandFailed(f"mv: {names[0]} and {names[1]} are the same name")
    with _session(args, read_only=False) as session:
        _configure(session, {_namespace_of(name) for name in names}, names)
        if not args.undelete:
            _rename(session, names[0], names[1], args.force)
            return 0
        status = 0
        for name in names:
            try:
                _undelete(session, name, args.force)
            except CommandFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                status = max(status, exc.status)
    return status


def _rename(session: Session, name: str, new_name: str, force: bool) -> None:
    store = session.store
    with _on_item(session, name):
        if not store.info(name).exists:
            raise ObjectNotFound(name)
    with _on_item(session, new_name):
        if not force and store.info(new_name).exists:
            raise CommandFailed(f"{new_name} exists in {session.shown_url}: give --force to replace it")
    with _on_item(session, name):
        store.move(name, new_name)


def _undelete(session: Session, name: str, force: bool) -> None:
    store = session.store
    with _on_item(session, name, deleted=True):
        if not force and store.info(name).exists:
            raise CommandFailed(
                f"{name} exists in {session.shown_url}: give --force to replace it with the soft-deleted one"
            )
        store.move(name, undelete=True)


# --- du ---
def _du(args: argparse.Namespace) -> int:
    with _session(args, read_only=True) as session:
        if args.namespaces:
            targets = list(dict.fromkeys(_existing_namespace(session, ns) for ns in args.namespaces))
        else:
            targets = ["", *session.namespaces]
        _configure(session, targets)
        rows = []
        for namespace in targets:
            try:
                rows.append((namespace, usage(session.store.chain, namespace, session.layouts[namespace])))
            except PermissionDenied as exc:
                raise CommandFailed(
                    f"permission denied listing {_shown_namespace(namespace)} in {session.shown_url}: {exc}"
                ) from None
    total = [sum(counts[i] for _, counts in rows) for i in range(4)]
    if args.json:
        # the root namespace is "" as in Store.list(""); the total's namespace is null
        for shown, counts in [*((_config_name(ns), counts) for ns, counts in rows), (None, total)]:
            print(json.dumps({"namespace": shown, **dict(zip(USAGE_FIELDS, counts))}))
        return 0
    _print_table(
        [("namespace", "items", "bytes", "deleted items", "deleted bytes")]
        + [
            (label, str(items), _size(size, args.human_readable), str(gone), _size(gone_size, args.human_readable))
            for label, (items, size, gone, gone_size) in [
                *((_config_name(ns) or "(root)", counts) for ns, counts in rows),
                ("total", total),
            ]
        ]
    )
    return 0


def _config_name(namespace: str) -> str:
    return f"{namespace}/" if namespace else ""


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    """The first column left-aligned, the others right-aligned, two blanks between."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        print("  ".join(cells).rstrip())
