"""The PyPI borgstore 0.7's REST client behind our backend contract, for interoperability tests
and benchmarks: :class:`PyPIClientBackend` forwards every call to that client running in a venv
of its own (a different ``borgstore`` package, so it cannot share our interpreter), one JSON line
per call over the pipes of a child process.

``PyPIClientBackend(python, url)``: *python* is the venv's interpreter (with ``borgstore[rest]==0.7.0``
installed), *url* an ``http:``, ``https:`` or ``rest:`` URL that its client understands.  Errors
come back as our classes of the same names, so the conformance kit can hold the PyPI client to the
same contract as ours.  The bridge adds one local pipe round trip per call: fine for tests, and
the benchmarks measure it (``benchmarks/bench_rest.py`` subtracts nothing and says so).

Its name check refuses names ending in ``.hid`` or ``.tmp`` before sending anything, as the REST
protocol wants (``_wire.RESERVED_SUFFIXES``): the class declares them ``reserved_suffixes``.
"""

import base64
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from typing import Any, Optional

from borgstore.backends import errors
from borgstore.backends._base import BackendBase, Capabilities, ItemInfo, Value

from ._wire import RESERVED_SUFFIXES

# Runs in the PyPI venv: reads {"op", "args", "kwargs"} lines, answers {"ok": ...} or {"error": ...}.
_CHILD = r"""
import base64, json, sys
from borgstore.backends.rest import get_rest_backend
backend = get_rest_backend(sys.argv[1])

def plain(result):
    if isinstance(result, (bytes, bytearray)):
        return {"b64": base64.b64encode(result).decode()}
    if hasattr(result, "_asdict"):
        return dict(result._asdict())
    if hasattr(result, "__next__") or isinstance(result, list):
        return [plain(item) for item in result]
    return result

for line in sys.stdin:
    call = json.loads(line)
    args = [base64.b64decode(a["b64"]) if isinstance(a, dict) and "b64" in a else a for a in call["args"]]
    try:
        answer = {"ok": plain(getattr(backend, call["op"])(*args, **call["kwargs"]))}
    except Exception as exc:
        answer = {"error": type(exc).__name__, "message": str(exc)}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""

_RAISABLE = {name: cls for name, cls in vars(errors).items() if isinstance(cls, type) and issubclass(cls, Exception)}
_RAISABLE.update(ValueError=ValueError, TypeError=TypeError, KeyError=KeyError)


class PyPIClientBackend(BackendBase):
    """The PyPI 0.7 REST client, called through a child process (see the module docstring)."""

    capabilities = Capabilities(reserved_suffixes=RESERVED_SUFFIXES)

    def __init__(self, python: str, url: str, *, env: Optional[dict[str, str]] = None):
        self._python = python
        self._url = url
        self._env = env
        self._child: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PyPIClientBackend {self._url}>"

    def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._child is None or self._child.poll() is not None:
                self._child = subprocess.Popen(
                    [self._python, "-c", _CHILD, self._url],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    cwd="/",  # never import our borgstore from a working directory
                    env={**os.environ, **(self._env or {})},
                )
            assert self._child.stdin is not None and self._child.stdout is not None
            sent = [
                {"b64": base64.b64encode(bytes(a)).decode()} if isinstance(a, (bytes, bytearray, memoryview)) else a
                for a in args
            ]
            self._child.stdin.write((json.dumps({"op": op, "args": sent, "kwargs": kwargs}) + "\n").encode())
            self._child.stdin.flush()
            line = self._child.stdout.readline()
        if not line:
            raise errors.BackendConnectionError(f"the PyPI client process for {self._url} ended")
        answer = json.loads(line)
        if "error" in answer:
            raise _RAISABLE.get(answer["error"], errors.BackendError)(answer["message"])
        return answer["ok"]

    def close_child(self) -> None:
        """End the child process (close() of the backend does not: the PyPI client may be reopened)."""
        child, self._child = self._child, None
        if child is not None:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(30)
            if child.stdout is not None:
                child.stdout.close()

    def __del__(self) -> None:
        child = getattr(self, "_child", None)
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()

    def create(self) -> None:
        self._call("create")

    def destroy(self) -> None:
        self._call("destroy")

    def open(self) -> None:
        self._call("open")

    def close(self) -> None:
        self._call("close")

    def mkdir(self, name: str) -> None:
        self._call("mkdir", name)

    def rmdir(self, name: str) -> None:
        self._call("rmdir", name)

    def info(self, name: str) -> ItemInfo:
        return ItemInfo(**self._call("info", name))

    def load(self, name: str, *, size: Optional[int] = None, offset: int = 0) -> bytes:
        return base64.b64decode(self._call("load", name, size=size, offset=offset)["b64"])

    def store(self, name: str, value: Value) -> None:
        self._call("store", name, value)

    def delete(self, name: str) -> None:
        self._call("delete", name)

    def move(self, curr_name: str, new_name: str) -> None:
        self._call("move", curr_name, new_name)

    def list(self, name: str) -> Iterator[ItemInfo]:
        return iter([ItemInfo(**item) for item in self._call("list", name)])

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        return str(self._call("hash", name, algorithm=algorithm))

    def gather(self, sources: Any) -> bytes:
        return base64.b64decode(self._call("gather", [list(source) for source in sources])["b64"])

    def defrag(
        self,
        sources: Any,
        *,
        target: Optional[str] = None,
        algorithm: Optional[str] = None,
        namespace: Optional[str] = None,
        levels: int = 0,
    ) -> str:
        sent = [list(source) for source in sources]
        return str(self._call("defrag", sent, target=target, algorithm=algorithm, namespace=namespace, levels=levels))

    def quota(self) -> dict[str, int]:
        return dict(self._call("quota"))
