"""Credentials, region and endpoint, found where AWS users keep them.

The order is the AWS tools' (first found wins):

1. the key id and secret in the URL;
2. the profile named in the URL;
3. the environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN``;
4. the profile ``AWS_PROFILE`` names, else ``default``.

A profile is read from the shared credentials file (``AWS_SHARED_CREDENTIALS_FILE``, default
``~/.aws/credentials``, sections ``[name]``) and the config file (``AWS_CONFIG_FILE``, default
``~/.aws/config``, sections ``[profile name]`` or ``[default]``); the credentials file wins.
A profile may also hold ``region`` and ``endpoint_url``.

The region: the backend option, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's, a B2
endpoint's own (``s3.<region>.backblazeb2.com``), else ``us-east-1`` (on AWS, opening learns a
bucket's real region from the server).  The endpoint: the URL's, ``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``, the profile's ``endpoint_url``, else AWS.
"""

import configparser
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from borgstore.backends.errors import BackendError, BackendURLInvalid

from ._url import Location

DEFAULT_REGION = "us-east-1"
_B2_HOST = re.compile(r"s3\.(?P<region>[a-z0-9-]+)\.backblazeb2\.com")


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: Optional[str] = field(default=None, repr=False)
    source: str = ""  # where they came from, for messages


@dataclass(frozen=True)
class Settings:
    credentials: Credentials
    region: str
    endpoint: Optional[str]  # None: AWS
    region_given: bool  # False: the default, which opening may correct from the server's answer


def _read_ini(path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        # not the parser's message: it quotes the offending line, which may hold a secret
        line = getattr(exc, "lineno", None) or next(iter(getattr(exc, "errors", ())), (None,))[0]
        where = f" (line {line})" if line else ""
        raise BackendError(f"cannot read {path}{where}: not an INI file of [sections] ({type(exc).__name__})") from None
    return parser


def _profile(name: str, environ) -> Optional[dict]:
    """The profile's keys from both files (the credentials file wins), or None if neither has it."""
    home = os.path.expanduser("~")
    credentials_file = environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials")
    config_file = environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config")
    found = None
    config = _read_ini(os.path.expanduser(config_file))
    section = name if name == "default" else f"profile {name}"
    for candidate in (section, name):
        if config.has_section(candidate):
            found = dict(config.items(candidate))
            break
    credentials = _read_ini(os.path.expanduser(credentials_file))
    if credentials.has_section(name):
        found = {**(found or {}), **dict(credentials.items(name))}
    return found


def _from_profile(name: str, values: dict, source: str) -> Credentials:
    key_id, secret = values.get("aws_access_key_id"), values.get("aws_secret_access_key")
    if not key_id or not secret:
        raise BackendError(
            f"the AWS profile {name!r} ({source}) has no aws_access_key_id and aws_secret_access_key "
            "(other credential sources, such as credential_process or SSO, are not supported)"
        )
    return Credentials(key_id, secret, values.get("aws_session_token") or None, source)


def resolve(location: Location, region: Optional[str] = None, environ=None) -> Settings:
    """The credentials, region and endpoint for *location*; raise BackendError (or
    BackendURLInvalid for a B2 URL without an endpoint) naming what is missing."""
    environ = os.environ if environ is None else environ
    profile_values = None
    if location.access_key_id is not None:
        assert location.secret_access_key is not None  # _url.parse() sets both or neither
        credentials = Credentials(location.access_key_id, location.secret_access_key, None, "the URL")
    elif location.profile is not None:
        profile_values = _profile(location.profile, environ)
        if profile_values is None:
            raise BackendError(f"the AWS profile {location.profile!r} named in the URL is in neither ~/.aws file")
        credentials = _from_profile(location.profile, profile_values, f"profile {location.profile!r} from the URL")
    elif bool(environ.get("AWS_ACCESS_KEY_ID")) != bool(environ.get("AWS_SECRET_ACCESS_KEY")):
        present, missing = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")[:: 1 if environ.get("AWS_ACCESS_KEY_ID") else -1]
        raise BackendError(f"partial S3 credentials in the environment: {present} is set, {missing} is not")
    elif environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        credentials = Credentials(
            environ["AWS_ACCESS_KEY_ID"],
            environ["AWS_SECRET_ACCESS_KEY"],
            environ.get("AWS_SESSION_TOKEN") or None,
            "the AWS_* environment variables",
        )
    else:
        name = environ.get("AWS_PROFILE") or "default"
        profile_values = _profile(name, environ)
        if profile_values is None:
            raise BackendError(
                "no S3 credentials: give access_key_id:secret@ or a profile in the URL, set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add the profile "
                f"{name!r} to ~/.aws/credentials"
            )
        credentials = _from_profile(name, profile_values, f"profile {name!r}")
    if profile_values is None and location.profile is None:
        # region and endpoint still come from the usual profile when the keys came from elsewhere;
        # an unreadable file there must not stop a URL that carries everything it needs
        try:
            profile_values = _profile(environ.get("AWS_PROFILE") or "default", environ) or {}
        except BackendError:
            profile_values = {}
    profile_values = profile_values or {}
    endpoint = (
        location.endpoint
        or environ.get("AWS_ENDPOINT_URL_S3")
        or environ.get("AWS_ENDPOINT_URL")
        or profile_values.get("endpoint_url")
    )
    if endpoint:
        endpoint = endpoint.rstrip("/")
        if not re.fullmatch(r"https?://[^/:@]+(:[0-9]+)?", endpoint):
            raise BackendURLInvalid(f"invalid S3 endpoint {endpoint!r}: use http(s)://hostname[:port]")
    if location.provider == "b2" and not endpoint:
        raise BackendURLInvalid(
            "a b2: URL needs the bucket's S3 endpoint, e.g. b2:KEYID:KEY@https://s3.us-west-004.backblazeb2.com/bucket/path"
        )
    given = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or profile_values.get("region")
    if not given and endpoint:
        b2_host = _B2_HOST.fullmatch(endpoint.partition("://")[2].partition(":")[0])
        given = b2_host["region"] if b2_host else None
    return Settings(credentials, given or DEFAULT_REGION, endpoint, region_given=bool(given))
