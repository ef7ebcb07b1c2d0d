"""The first commands: ``plugins``, ``demo`` and ``clean-temps``."""

import hashlib
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING, Optional, TextIO

if TYPE_CHECKING:
    import argparse


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add this module's subcommands to the ``borgstore`` parser."""
    plugins = commands.add_parser("plugins", help="list installed backends, nesting strategies and middleware")
    plugins.set_defaults(run=lambda args: _print_plugins(sys.stdout))
    demo = commands.add_parser("demo", help="run the demo on a fresh temporary store, or on the store at URL")
    demo.add_argument("url", nargs="?", default=None, help="e.g. file:///tmp/demo (default: a temporary store)")
    demo.set_defaults(
        run=lambda args: _demo(args.url, sys.stdout, interactive=sys.stdin is not None and sys.stdin.isatty())
    )
    clean = commands.add_parser("clean-temps", help="remove temp items that writers which died left behind")
    clean.add_argument("url")
    clean.add_argument(
        "--older-than",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="remove only temp items unchanged for this long (default: %(default)g; 0 only when nobody writes)",
    )
    clean.set_defaults(run=lambda args: _clean_temps(args.url, args.older_than, sys.stdout))


def _print_plugins(out: TextIO) -> int:
    from .. import _plugins

    print("backends:", file=out)
    for scheme, provided in sorted(_plugins.backends().items()):
        spec = provided.spec
        # what the spec declares is a default for display: the opened backend's are the truth
        caps = "as the backend finds at open()"
        if spec.capabilities is not None:
            caps = "usually: " + ", ".join(
                f"{name}={value}" if not isinstance(value, bool) else name
                for name, value in spec.capabilities.as_dict().items()
                if value
            )
        version = f" {provided.version}" if provided.version else ""
        print(f"  {scheme}:  {provided.distribution}{version}  [{caps}]", file=out)
        if spec.description:
            print(f"      {spec.description}", file=out)
    print("nesting strategies:", file=out)
    for name, strategy in sorted(_plugins.nesting_strategies().items()):
        print(f"  {name}  ({strategy.distribution})  {strategy.spec.description}", file=out)
    print("middleware:", file=out)
    for name, middleware in sorted(_plugins.middlewares().items()):
        print(f"  {name}  ({middleware.distribution})  {middleware.spec.description}", file=out)
    failures = _plugins.load_failures()
    if failures:
        print("plugins that failed to load:", file=out)
        for failure in failures:
            print(f"  {failure}", file=out)
    return 0


def _demo(url: Optional[str], out: TextIO, interactive: bool) -> int:
    from .. import Store

    scratch = None
    if url is None:
        scratch = tempfile.mkdtemp(prefix="borgstore-demo-")
        url = "file://" + os.path.join(scratch, "store")
    config = {"config/": {"levels": [0]}, "data/": {"levels": [2]}}
    store = Store(url, config=config)
    say = lambda *args: print(*args, file=out)  # noqa: E731
    say(f"demo store: {url}")
    say(f"middleware chain (outermost first): {', '.join(store.middleware)} -> {type(store.chain.backend).__name__}")
    store.create()
    try:
        with store:
            say("\n1. namespaces: 'config/' is flat (level 0), 'data/' is nested two levels deep")
            store.store("config/main", b"demo settings")
            chunks = [f"chunk {i}".encode() for i in range(4)]
            keys = []
            for chunk in chunks:
                key = hashlib.sha256(chunk).hexdigest()
                store.store(f"data/{key}", chunk)
                keys.append(key)
            for key in keys[:2]:
                say(f"   data/{key[:16]}...  is stored as  {store.find('data/' + key)[:27]}...")
            say(f"   config/main  is stored as  {store.find('config/main')}")
            say("\n2. listing data/ (sorted, nesting invisible):")
            for info in store.list("data"):
                say(f"   {info.name[:16]}...  {info.size} bytes")
            say("\n3. soft deletion: data/" + keys[0][:16] + "... is moved aside, not removed")
            store.move(f"data/{keys[0]}", delete=True)
            say(
                f"   live items: {sum(1 for _ in store.list('data'))}, soft-deleted: "
                f"{sum(1 for _ in store.list('data', deleted=True))}"
            )
            store.move(f"data/{keys[0]}", undelete=True)
            say(f"   undeleted: live items now {sum(1 for _ in store.list('data'))}")
            say("\n4. partial loads of config/main (b'demo settings'):")
            say(f"   offset=5, size=3  -> {store.load('config/main', offset=5, size=3)!r}")
            say(f"   offset=-8         -> {store.load('config/main', offset=-8)!r}")
            say("\n5. stats (calls and volume counted by the 'stats' middleware):")
            stats = store.stats
            for op in ("store", "load", "info", "list", "move"):
                say(
                    f"   {op:6} calls={stats[op + '_calls']:3}  time={stats[op + '_time'] * 1000:.2f} ms"
                    + (f"  volume={stats[op + '_volume']} bytes" if op + "_volume" in stats else "")
                )
        if interactive and scratch is None:
            answer = input(f"\ndestroy the demo store at {url}? [y/N] ")
            if answer.strip().lower() != "y":
                say("kept.")
                return 0
        store.destroy()
        say("\ndemo store destroyed.")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _clean_temps(url: str, older_than: float, out: TextIO) -> int:
    from .. import Store, redact_url

    # the nesting config does not matter: temp items are found below the root, whatever the levels
    store = Store(url, config={"": {"levels": [0]}})
    with store:
        removed = store.remove_stale_temps(older_than)
    print(f"removed {removed} stale temp item(s) older than {older_than:g} s from {redact_url(url)}", file=out)
    return 0
