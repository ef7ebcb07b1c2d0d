"""The S3 backend: one object per item at ``<path>/<backend name>``, no directory objects.

Directories are implied by the keys below them (``needs_mkdir=False``).  ``create()`` puts one
empty object at ``<path>/``, the store's marker (the PyPI borgstore does the same), so that an
empty store exists; ``open()`` looks for it, or for anything below ``<path>/``.

Requests per operation: store, load and info 1; move (soft deletion) 2, a server-side copy then
the delete of the source, so the item is never lost, but the move is not atomic: a crash between
the two leaves both names; ``list_tree`` 1 per 1,000 items.
"""

import base64
import hashlib
from typing import Optional

from borgstore.backends._base import BackendBase, Capabilities, ItemInfo
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    ObjectAlreadyExists,
    ObjectNotFound,
)
from borgstore.backends.http import range_data, range_header
from borgstore.backends.toolkit import PLAIN_NAME, check_backend_name, check_load_range
from borgstore.constants import TMP_SUFFIX

from . import _credentials, _listing, _multipart
from ._client import S3Client, error_code, parse_xml
from ._sigv4 import Signer, quote_path
from ._url import Location, parse, redact

DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024
DEFAULT_PART_SIZE = 16 * 1024 * 1024
DEFAULT_TIMEOUT = 60.0
_KMS = ("aws:kms", "aws:kms:dsse")


def s3_backend_from_url(
    url: str,
    *,
    region: Optional[str] = None,
    conditional_create: Optional[bool] = None,
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
    part_size: int = DEFAULT_PART_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
) -> "S3Backend":
    """An unopened backend for an ``s3:`` or ``b2:`` URL; nothing is read or sent yet."""
    return S3Backend(
        parse(url),
        shown_url=redact(url),
        region=region,
        conditional_create=conditional_create,
        multipart_threshold=multipart_threshold,
        part_size=part_size,
        timeout=timeout,
    )


def _positive(value, name: str, minimum: float = 1):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ValueError(f"invalid {name} {value!r}: a number >= {minimum}")
    return value


def _md5(value) -> str:
    return base64.b64encode(hashlib.md5(value).digest()).decode()


def _bytes_view(value) -> memoryview:
    view = memoryview(value)
    if view.ndim != 1:
        raise ValueError(f"invalid value: a 1-D bytes-like object, not a {view.ndim}-D memoryview")
    return view if view.format == "B" else view.cast("B")


class S3Backend(BackendBase):
    # thread safe: the HTTP client pools one connection per concurrent request.  transient_errors:
    # a network and a busy service (503 SlowDown) fail for a while, so the default chain retries.
    capabilities = Capabilities(needs_mkdir=False, thread_safe=True, list_tree=True, transient_errors=True)

    def __init__(
        self,
        location: Location,
        *,
        shown_url: str = "",
        region: Optional[str] = None,
        conditional_create: Optional[bool] = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        if region is not None and (not isinstance(region, str) or not region):
            raise ValueError(f"invalid region {region!r}: a region name such as 'eu-central-1'")
        if conditional_create is not None and not isinstance(conditional_create, bool):
            raise ValueError(f"invalid conditional_create {conditional_create!r}: True or False")
        self.location = location
        self._shown_url = shown_url or f"{location.provider}:/{location.bucket}/{location.path}"
        self._region = region
        # B2 and other S3 services may ignore If-None-Match: a store_new that overwrites would
        # break "write new, never overwrite", so it is on only where it is known to hold
        self._conditional = location.provider == "s3" if conditional_create is None else conditional_create
        self.multipart_threshold = int(_positive(multipart_threshold, "multipart_threshold", _multipart.MIN_PART_SIZE))
        self.part_size = int(_positive(part_size, "part_size", _multipart.MIN_PART_SIZE))
        self._timeout = float(_positive(timeout, "timeout", 0.1))
        self._prefix = location.prefix
        self._client: Optional[S3Client] = None
        self.capabilities = Capabilities(
            needs_mkdir=False,
            thread_safe=True,
            list_tree=True,
            store_new=self._conditional,
            transient_errors=True,
        )

    def __repr__(self):
        return f"<S3Backend {self._shown_url}>"

    # --- connection ---
    def _connect(self) -> S3Client:
        """The client, made on first need (create, destroy, open): credentials are read here."""
        if self._client is None:
            settings = _credentials.resolve(self.location, self._region)
            creds = settings.credentials
            signer = Signer(creds.access_key_id, creds.secret_access_key, creds.session_token, settings.region)
            client = S3Client(settings.endpoint, self.location.bucket, signer, timeout=self._timeout)
            if not settings.region_given and settings.endpoint is None:
                # AWS, no region configured: the bucket's region is in the answer to a HEAD of it
                # (also to one signed for the wrong region), so ask before anything else
                response = client.request("HEAD", None, mutation=False, what=f"find the region of {self._shown_url}")
                region = response.headers.get("x-amz-bucket-region")
                if region and region != signer.region:
                    client.set_region(region)
            self._client = client
        return self._client

    def _request(self, method, name, *, mutation, what, **kwargs):
        """A request for the item *name* (None: the bucket)."""
        key = None if name is None else self._prefix + name
        return self._connect().request(method, key, mutation=mutation, what=what, **kwargs)

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def requests(self) -> int:
        """Requests sent so far (for the benchmark)."""
        return self._client.requests if self._client is not None else 0

    # --- lifecycle ---
    def _keys_below_prefix(self, what: str, limit: int) -> list:
        page = next(_listing.pages(self._connect(), self._prefix, delimiter=None, what=what, max_keys=limit))
        return [key for key, _size, _mtime in page.objects]

    def create(self):
        self.check_closed()
        what = f"create {self._shown_url}"
        try:
            keys = self._keys_below_prefix(what, 2)
            if [key for key in keys if key != self._prefix]:
                raise BackendAlreadyExists(f"{what}: the bucket holds objects below {self._prefix!r} already")
            response = self._request("PUT", "", body=b"", headers={"content-md5": _md5(b"")}, mutation=True, what=what)
            if response.status != 200:
                raise self._client.error(response, what)
        finally:
            self._drop_client()

    def destroy(self):
        self.check_closed()
        what = f"destroy {self._shown_url}"
        try:
            self._connect()
            found = False
            for page in _listing.pages(self._client, self._prefix, delimiter=None, what=what):
                keys = [key for key, _size, _mtime in page.objects]
                found = found or bool(keys)
                self._delete_keys(keys, what)
            for key, upload_id, _initiated in _multipart.pending(self._client, self._prefix, what):
                found = True
                _multipart.abort(self._client, key, upload_id, what)
            if not found:
                raise BackendDoesNotExist(f"{what}: nothing below {self._prefix!r} in bucket {self.location.bucket!r}")
        finally:
            self._drop_client()

    def _delete_keys(self, keys: list, what: str) -> None:
        if not keys:
            return
        objects = "".join(f"<Object><Key>{_xml_escape(key)}</Key></Object>" for key in keys)
        body = f"<Delete><Quiet>true</Quiet>{objects}</Delete>".encode()
        client = self._client
        assert client is not None  # destroy(), the caller, connected first
        response = client.request(
            "POST", None, query={"delete": ""}, headers={"content-md5": _md5(body)}, body=body, mutation=True, what=what
        )
        if response.status != 200:
            raise client.error(response, what)
        root = parse_xml(response.data, what)
        failed = [e for e in root if e.tag.rpartition("}")[2] == "Error"]
        if failed:
            raise BackendError(f"{what}: {len(failed)} object(s) could not be deleted, e.g. {_listing._text(failed[0], 'Key')!r}")

    def open(self):
        self.check_closed()
        what = f"open {self._shown_url}"
        try:
            response = self._request("HEAD", "", mutation=False, what=what)
            if response.status == 404 and not self._keys_below_prefix(what, 1):
                raise BackendDoesNotExist(f"{what}: no store at {self._prefix!r} in bucket {self.location.bucket!r}")
            if response.status not in (200, 404):
                raise self._client.error(response, what)
        except BaseException:
            self._drop_client()
            raise
        self.opened = True

    def close(self):
        self.check_open()
        self.opened = False
        self._drop_client()

    # --- items ---
    def _check(self, name, root_ok=False):
        self.check_open()
        if type(name) is not str or not PLAIN_NAME.fullmatch(name):
            check_backend_name(name, root_ok=root_ok)

    def info(self, name):
        self._check(name, root_ok=True)
        if not name:
            return ItemInfo(name="", exists=True, size=0, directory=True)
        what = f"info {name!r}"
        response = self._request("HEAD", name, mutation=False, what=what)
        leaf = name.rpartition("/")[2]
        if response.status == 200:
            mtime = _listing.parse_http_time(response.headers.get("last-modified", ""))
            return ItemInfo(leaf, True, int(response.headers.get("content-length", 0)), False, mtime=mtime, atime=mtime)
        if response.status != 404:
            raise self._client.error(response, what)
        is_dir = self._has_keys_below(name, what)
        return ItemInfo(leaf, is_dir, 0, is_dir)

    def _has_keys_below(self, name: str, what: str) -> bool:
        assert self._client is not None  # open: open() made the client and only close() drops it
        page = next(_listing.pages(self._client, self._prefix + name + "/", delimiter=None, what=what, max_keys=1))
        return bool(page.objects)

    def load(self, name, *, size=None, offset=0):
        self._check(name)
        if size is not None or offset:
            check_load_range(size, offset)
        what = f"load {name!r}"
        wanted = range_header(offset, size)
        response = self._request("GET", name, headers={"range": wanted} if wanted else None, mutation=False, what=what)
        if wanted is None and response.status == 200:
            return response.data
        data = range_data(response, offset, size)
        if data is None:
            raise self._client.error(response, what)
        return data

    def store(self, name, value):
        self._check(name)
        self._put(name, _bytes_view(value), f"store {name!r}", if_none_match=False)

    def store_new(self, name, value):
        self._check(name)
        if not self._conditional:
            raise BackendError(f"store_new {name!r}: conditional create is off for {self._shown_url}")
        self._put(name, _bytes_view(value), f"store_new {name!r}", if_none_match=True)

    def _put(self, name: str, view: memoryview, what: str, *, if_none_match: bool) -> None:
        if len(view) > self.multipart_threshold:
            _multipart.upload(
                self._connect(), self._prefix + name, view, self.part_size, what, if_none_match=if_none_match
            )
            return
        md5 = hashlib.md5(view)
        headers = {"content-md5": base64.b64encode(md5.digest()).decode()}
        if if_none_match:
            headers["if-none-match"] = "*"
        response = self._request("PUT", name, headers=headers, body=view, mutation=True, what=what)
        if response.status != 200:
            if response.status == 412:
                raise ObjectAlreadyExists(f"{what}: an item of that name exists")
            assert self._client is not None  # _request() connected
            raise self._client.error(response, what)
        self._check_etag(response, md5.hexdigest(), what)

    def _check_etag(self, response, md5_hex: str, what: str) -> None:
        # The server checks Content-MD5; where one does not (some S3 clones), a single-part
        # object's ETag is still the MD5 of what it stored: refuse to report a corrupted upload
        # as stored.  KMS-encrypted objects have other ETags.
        etag = response.headers.get("etag", "").strip('"')
        if len(etag) != 32 or response.headers.get("x-amz-server-side-encryption") in _KMS:
            return
        if etag != md5_hex and "x-amz-server-side-encryption-customer-algorithm" not in response.headers:
            raise BackendError(f"{what}: the server stored other bytes than were sent (ETag {etag}, MD5 {md5_hex})")

    def delete(self, name):
        self._check(name)
        what = f"delete {name!r}"
        response = self._request("HEAD", name, mutation=False, what=what)
        if response.status == 404:
            if name.endswith(TMP_SUFFIX) and self._abort_upload(name, what):
                return
            raise ObjectNotFound(what)
        if response.status != 200:
            raise self._client.error(response, what)
        self._delete_object(name, what)

    def _delete_object(self, name: str, what: str) -> None:
        response = self._request("DELETE", name, mutation=True, what=what)
        if response.status not in (200, 204):
            assert self._client is not None  # _request() connected
            raise self._client.error(response, what)

    def move(self, curr_name, new_name):
        self._check(curr_name)
        self._check(new_name)
        what = f"move {curr_name!r} to {new_name!r}"
        if curr_name == new_name:
            if not self.info(curr_name).exists:
                raise ObjectNotFound(what)
            return
        source = f"/{self.location.bucket}/{self._prefix}{curr_name}"
        response = self._request(
            "PUT", new_name, headers={"x-amz-copy-source": quote_path(source)}, mutation=True, what=what
        )
        # a copy may fail after the server has answered 200: the error is then in the body
        if response.status != 200 or error_code(response.data)[0]:
            if response.status == 404 or error_code(response.data)[0] == "NoSuchKey":
                raise ObjectNotFound(f"{what}: no item {curr_name!r}")
            raise self._client.error(response, what)
        self._delete_object(curr_name, what)

    # --- directories ---
    def mkdir(self, name):
        # directories are implied by the keys below them: nothing to make
        self._check(name)

    def rmdir(self, name):
        self._check(name)
        what = f"rmdir {name!r}"
        if self._has_keys_below(name, what):
            raise BackendError(f"{what}: the directory is not empty")
        response = self._request("HEAD", name, mutation=False, what=what)
        if response.status == 200:
            raise BackendError(f"{what}: it is an item, not a directory")
        raise ObjectNotFound(f"{what}: no such directory")

    def list(self, name):
        self._check(name, root_ok=True)
        return self._list(name)

    def _list(self, name):
        what = f"list {name!r}"
        prefix = self._prefix + name + "/" if name else self._prefix
        entries = {}
        start = len(prefix)
        for page in _listing.pages(self._client, prefix, delimiter="/", what=what):
            for key, size, mtime in page.objects:
                leaf = key[start:]
                if leaf and not leaf.endswith(TMP_SUFFIX) and _valid_leaf(leaf):
                    entries[leaf] = ItemInfo(leaf, True, size, False, mtime=mtime, atime=mtime)
            for common in page.prefixes:
                leaf = common[start:-1]
                if _valid_leaf(leaf):
                    entries.setdefault(leaf, ItemInfo(leaf, True, 0, True))
        if not entries and name:
            response = self._request("HEAD", name, mutation=False, what=what)
            if response.status == 200:
                raise BackendError(f"{what}: it is an item, not a directory")
            if not self._has_keys_below(name, what):  # only .tmp items: the directory exists
                raise ObjectNotFound(f"{what}: no such directory")
        # sorted by leaf name, which is not S3's key order ("a-b" < "a/" but "a" < "a-b")
        yield from (entries[leaf] for leaf in sorted(entries))

    def list_tree(self, name):
        self._check(name, root_ok=True)
        return self._list_tree(name)

    def _objects_below(self, name: str, what: str):
        """(path relative to *name*, size, mtime) of every object below directory *name*, in key
        order, one request per 1,000; keys no backend name can reach (another tool's) left out."""
        prefix = self._prefix + name + "/" if name else self._prefix
        start = len(prefix)
        assert self._client is not None  # open: open() made the client and only close() drops it
        for page in _listing.pages(self._client, prefix, delimiter=None, what=what):
            for key, size, mtime in page.objects:
                path = key[start:]
                if path and _valid_path(path):
                    yield path, size, mtime

    def _list_tree(self, name):
        # S3's key order is list_tree's order: a directory sorts as its name plus "/"
        for path, size, mtime in self._objects_below(name, f"list_tree {name!r}"):
            if not path.endswith(TMP_SUFFIX):
                yield ItemInfo(path, True, size, False, mtime=mtime, atime=mtime)

    def list_temp(self, name):
        self._check(name, root_ok=True)
        return self._list_temp(name)

    def _list_temp(self, name):
        what = f"list_temp {name!r}"
        for path, size, mtime in self._objects_below(name, what):
            if path.endswith(TMP_SUFFIX):
                yield ItemInfo(path, True, size, False, mtime=mtime, atime=mtime)
        prefix = self._prefix + name + "/" if name else self._prefix
        for key, upload_id, initiated in _multipart.pending(self._client, prefix, what):
            path = f"{key[len(prefix):]}.{_multipart.upload_digest(upload_id)}{TMP_SUFFIX}"
            if _valid_path(path):
                yield ItemInfo(path, True, 0, False, mtime=initiated, atime=initiated)

    def _abort_upload(self, name: str, what: str) -> bool:
        """Abort the unfinished upload that list_temp showed as the temp item *name*."""
        stem = name[: -len(TMP_SUFFIX)]
        item, dot, digest = stem.rpartition(".")
        if not dot or len(digest) != 16:
            return False
        client = self._client
        assert client is not None  # open: open() made the client and only close() drops it
        upload_id = _multipart.find(client, self._prefix + item, digest, what)
        if upload_id is None:
            return False
        _multipart.abort(client, self._prefix + item, upload_id, what)
        return True


def _valid_leaf(leaf: str) -> bool:
    return "/" not in leaf and _valid_path(leaf)


def _valid_path(path: str) -> bool:
    """Keys that other tools put below the prefix and no backend name can reach are left out."""
    try:
        check_backend_name(path)
    except ValueError:
        return False
    return True


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
