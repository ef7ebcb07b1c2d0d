"""The error taxonomy: every class says whether a later try may succeed, a failed mutation says
whether it may have been applied, and the toolkit maps errno values and HTTP statuses the same
way for every backend (docs/errors.md is the table these tests hold it to)."""

import errno
import re
from pathlib import Path

import pytest

from borgstore.backends import errors
from borgstore.backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    ObjectAlreadyExists,
    ObjectNotFound,
    PermissionDenied,
    ReadRangeError,
    is_temporary,
    may_have_been_applied,
)
from borgstore.backends.toolkit import error_for_errno, error_for_http_status, lost_reply

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"

TEMPORARY_CLASSES = {BackendConnectionError, BackendTimeout, BackendUnavailable, CircuitOpen}


def all_error_classes():
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, BackendError)
    ]


def test_every_class_has_a_temporary_default_and_only_the_network_ones_are_temporary():
    for cls in all_error_classes():
        assert cls("x").temporary is (cls in TEMPORARY_CLASSES), cls
        assert cls("x").maybe_applied is False, cls


def test_flags_can_be_set_per_error_and_leave_the_class_default_alone():
    lost = BackendConnectionError("lost", maybe_applied=True)
    assert lost.maybe_applied and lost.temporary
    assert BackendConnectionError("other").maybe_applied is False
    permanent = BackendConnectionError("host key mismatch", temporary=False)
    assert not is_temporary(permanent)
    assert BackendConnectionError.temporary is True
    assert str(lost) == "lost"


def test_helpers_answer_for_any_exception():
    assert is_temporary(BackendTimeout("slow"))
    assert not is_temporary(OSError(errno.EIO, "raw OSError is not classified"))
    assert not may_have_been_applied(KeyboardInterrupt())
    assert may_have_been_applied(BackendError("x", maybe_applied=True))


def test_every_class_is_in_the_table_of_docs_errors():
    text = DOC.read_text()
    for cls in all_error_classes():
        assert f"`{cls.__name__}`" in text, cls.__name__


@pytest.mark.parametrize(
    "code, cls, temporary",
    [
        (errno.ENOENT, ObjectNotFound, False),
        (errno.ENOTDIR, ObjectNotFound, False),
        (errno.EACCES, PermissionDenied, False),
        (errno.EROFS, PermissionDenied, False),
        (errno.ETIMEDOUT, BackendTimeout, True),
        (errno.EBUSY, BackendUnavailable, True),
        (errno.EAGAIN, BackendUnavailable, True),
        (errno.EIO, BackendConnectionError, True),
        (errno.ECONNRESET, BackendConnectionError, True),
        (errno.ESTALE, BackendConnectionError, True),
        (errno.ENOSPC, BackendError, False),
        (errno.ELOOP, BackendError, False),
    ],
)
def test_errno_map(code, cls, temporary):
    error = error_for_errno(code, "store 'data/00/00ab'")
    assert type(error) is cls
    assert error.temporary is temporary
    assert str(error).startswith("store 'data/00/00ab' [")
    assert errno.errorcode[code] in str(error)


def test_errno_map_keeps_maybe_applied_for_temporary_failures_only():
    assert error_for_errno(errno.ECONNRESET, "move", maybe_applied=True).maybe_applied
    assert not error_for_errno(errno.ENOENT, "move", maybe_applied=True).maybe_applied


@pytest.mark.parametrize(
    "status, cls, temporary",
    [
        (404, ObjectNotFound, False),
        (401, PermissionDenied, False),
        (403, PermissionDenied, False),
        (408, BackendTimeout, True),
        (409, ObjectAlreadyExists, False),
        (412, ObjectAlreadyExists, False),
        (416, ReadRangeError, False),
        (429, BackendUnavailable, True),
        (500, BackendUnavailable, True),
        (503, BackendUnavailable, True),
        (400, BackendError, False),
        (501, BackendError, False),
    ],
)
def test_http_status_map(status, cls, temporary):
    error = error_for_http_status(status, "GET data/00/00ab")
    assert type(error) is cls
    assert error.temporary is temporary
    assert f"[HTTP {status}]" in str(error)


def test_lost_reply_says_whether_a_mutation_was_sent():
    sent = lost_reply("delete 'data/x'", mutation=True, cause=EOFError("eof"))
    assert type(sent) is BackendConnectionError and sent.maybe_applied and sent.temporary
    assert str(sent) == "delete 'data/x': eof"
    assert not lost_reply("info 'data/x'", mutation=False).maybe_applied


def test_the_doc_tables_match_the_maps():
    """The errno and HTTP tables of docs/errors.md name the class each map returns."""
    text = DOC.read_text()
    for line in text.splitlines():
        match = re.match(r"\| (\d{3}(?:, \d{3})*) \| `(\w+)`", line)
        if match:
            for status in match.group(1).split(", "):
                assert type(error_for_http_status(int(status), "x")).__name__ == match.group(2), line
        match = re.match(r"\| ((?:E[A-Z]+)(?:, E[A-Z]+)*) \| `(\w+)`", line)
        if match:
            for name in match.group(1).split(", "):
                assert type(error_for_errno(getattr(errno, name), "x")).__name__ == match.group(2), line
