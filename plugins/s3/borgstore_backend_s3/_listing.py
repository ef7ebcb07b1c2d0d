"""ListObjectsV2, page by page: one request per 1,000 keys, however deeply they are nested."""

import calendar
from typing import Iterator, NamedTuple, Optional

from ._client import S3Client, _text, parse_xml

PAGE_SIZE = 1000
_MONTHS = {name: number for number, name in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


def parse_time(text: str) -> int:
    """``2026-11-30T18:27:42.000Z`` (a listing's LastModified) -> POSIX seconds; 0 if unreadable."""
    try:
        return calendar.timegm(
            (int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), int(text[17:19]))
        )
    except (ValueError, IndexError):
        return 0


def parse_http_time(text: str) -> int:
    """``Mon, 30 Nov 2026 18:27:42 GMT`` (a Last-Modified header) -> POSIX seconds; 0 if unreadable."""
    try:
        _weekday, day, month, year, clock = text.split()[:5]
        hour, minute, second = clock.split(":")
        return calendar.timegm((int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second)))
    except (ValueError, KeyError):
        return 0


class Page(NamedTuple):
    objects: list  # (key, size, mtime), in key order
    prefixes: list  # common prefixes ("dir/" forms), in key order


def pages(
    client: S3Client, prefix: str, *, delimiter: Optional[str], what: str, max_keys: int = PAGE_SIZE
) -> Iterator[Page]:
    """The listing of every key starting with *prefix*, page by page; with *delimiter* "/",
    the keys below a further "/" come as common prefixes instead."""
    query = {"list-type": "2", "prefix": prefix, "max-keys": max_keys}
    if delimiter:
        query["delimiter"] = delimiter
    while True:
        response = client.request("GET", None, query=query, mutation=False, what=what)
        if response.status != 200:
            raise client.error(response, what)
        root = parse_xml(response.data, what)
        objects, prefixes = [], []
        for element in root:
            tag = element.tag.rpartition("}")[2]
            if tag == "Contents":
                size = _text(element, "Size")
                objects.append((_text(element, "Key"), int(size or 0), parse_time(_text(element, "LastModified"))))
            elif tag == "CommonPrefixes":
                prefixes.append(_text(element, "Prefix"))
        yield Page(objects, prefixes)
        token = _text(root, "NextContinuationToken")
        if _text(root, "IsTruncated") != "true" or not token:
            return
        query = {**query, "continuation-token": token}
