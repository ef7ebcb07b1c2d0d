"""Multipart uploads: large values go up in parts, each checked by the server, and an upload
that fails is aborted so that its parts do not stay behind (and cost money).

An upload that a dead writer left is listed by the backend's ``list_temp`` as a temp item named
``<item>.<upload digest>.tmp``, which ``Store.remove_stale_temps()`` (``borgstore clean-temps``)
removes by aborting it.
"""

import base64
import hashlib
from typing import Iterator, Optional

from borgstore.backends.errors import BackendError

from ._client import S3Client, _text, parse_xml
from ._listing import parse_time

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's floor for every part but the last
MAX_PARTS = 10_000


def content_md5(data) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def upload_digest(upload_id: str) -> str:
    """The short stand-in for an upload id in a temp item's name (ids are long and opaque)."""
    return hashlib.sha256(upload_id.encode()).hexdigest()[:16]


def _check(client: S3Client, response, what: str, expected=(200,)):
    if response.status not in expected:
        raise client.error(response, what)
    return response


def upload(client: S3Client, key: str, value, part_size: int, what: str, *, if_none_match: bool = False) -> None:
    """Store *value* at *key* as a multipart upload of *part_size* parts; the object appears
    whole when the upload completes, or not at all (the upload is aborted on any failure)."""
    view = memoryview(value).cast("B")
    part_size = max(part_size, MIN_PART_SIZE, -(-len(view) // MAX_PARTS))
    response = _check(client, client.request("POST", key, query={"uploads": ""}, mutation=True, what=what), what)
    upload_id = _text(parse_xml(response.data, what), "UploadId")
    if not upload_id:
        raise BackendError(f"{what}: the server started a multipart upload without an UploadId")
    try:
        etags = []
        for number, start in enumerate(range(0, len(view), part_size), 1):
            part = view[start : start + part_size]
            response = client.request(
                "PUT",
                key,
                query={"partNumber": number, "uploadId": upload_id},
                headers={"content-md5": content_md5(part)},
                body=part,
                mutation=True,
                what=f"{what} (part {number})",
            )
            _check(client, response, f"{what} (part {number})")
            etags.append(response.headers.get("etag", ""))
        parts = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>" for number, etag in enumerate(etags, 1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        headers = {"content-md5": content_md5(body)}
        if if_none_match:
            headers["if-none-match"] = "*"
        response = client.request(
            "POST", key, query={"uploadId": upload_id}, headers=headers, body=body, mutation=True, what=what
        )
        _check(client, response, what)
        # a 200 answer may still carry an error: the completion failed after it started
        if parse_xml(response.data, what).tag.rpartition("}")[2] == "Error":
            raise client.error(response, what)
    except BaseException:
        abort(client, key, upload_id, what)
        raise


def abort(client: S3Client, key: str, upload_id: str, what: str) -> None:
    """Abort the upload, best effort: a failure here must not hide the error that led here."""
    try:
        client.request("DELETE", key, query={"uploadId": upload_id}, mutation=True, what=f"{what} (abort)")
    except BackendError:
        pass


def pending(client: S3Client, prefix: str, what: str) -> Iterator[tuple]:
    """(key, upload id, initiated POSIX time) of every unfinished upload whose key starts with *prefix*."""
    query = {"uploads": "", "prefix": prefix}
    while True:
        response = _check(client, client.request("GET", None, query=query, mutation=False, what=what), what)
        root = parse_xml(response.data, what)
        for element in root:
            if element.tag.rpartition("}")[2] == "Upload":
                yield _text(element, "Key"), _text(element, "UploadId"), parse_time(_text(element, "Initiated"))
        if _text(root, "IsTruncated") != "true":
            return
        query = {**query, "key-marker": _text(root, "NextKeyMarker"), "upload-id-marker": _text(root, "NextUploadIdMarker")}


def find(client: S3Client, key: str, digest: str, what: str) -> Optional[str]:
    """The id of the unfinished upload to exactly *key* whose digest is *digest*, or None."""
    for upload_key, upload_id, _initiated in pending(client, key, what):
        if upload_key == key and upload_digest(upload_id) == digest:
            return upload_id
    return None


