"""API keys of translation endpoints: named by environment variable, read where requests are sent.

A config names the variable (``translation.api_key_env``: one name for every endpoint, or a mapping
endpoint URL -> name), never the key; the process that sends requests (a Ray worker, the driver)
reads it from its own environment. The servers vlmix starts itself get a random key per run
(:func:`new_key`), which only the run's request senders are given. A key is sent as
``Authorization: Bearer <key>`` and is never logged or written: errors name the variable.

>>> keys = endpoint_keys(["http://a/v1", "http://b/v1"], api_key_env={"http://a/v1": "A_KEY"},
...                      environ={"A_KEY": "s3cret"})
>>> keys["http://a/v1"].header, keys["http://b/v1"]
({'Authorization': 'Bearer s3cret'}, None)
"""

from __future__ import annotations

import email.utils
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_RETRY_AFTER_S = 600.0  # a Retry-After beyond this is taken as this


class MissingApiKey(ValueError):
    """``api_key_env`` names a variable that this process's environment does not hold."""


class Unauthorized(PermissionError):
    """An endpoint refused the request's credentials (HTTP 401/403): no retry will change that."""


@dataclass(frozen=True)
class EndpointKey:
    """A key and where it came from; its repr never shows the key."""

    source: str  # "$VAR" or "the key of the servers vlmix started"
    value: str = field(repr=False)

    @property
    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_api_key_env(value: str | Mapping[str, str] | None, endpoints: list[str]) -> None:
    """Raise ValueError if ``translation.api_key_env`` is not a variable name, or maps an endpoint
    that is not configured (a mapping names only the endpoints that want a key)."""
    names = [value] if isinstance(value, str) else list((value or {}).values())
    bad = [name for name in names if not _NAME.match(name)]
    if bad:
        raise ValueError(f"api_key_env: {bad} are not environment variable names (the key itself never "
                         "goes in the config: name the variable that holds it)")
    if isinstance(value, Mapping):
        unknown = sorted({url.rstrip("/") for url in value} - {url.rstrip("/") for url in endpoints})
        if unknown:
            raise ValueError(f"api_key_env names keys for {unknown}, which are not in endpoints")


def new_key() -> str:
    """A random key for the servers of one run."""
    return secrets.token_urlsafe(32)


def endpoint_keys(
    endpoints: list[str],
    api_key: str | None = None,
    api_key_env: str | Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, EndpointKey | None]:
    """Each endpoint's key: ``api_key`` (the servers vlmix started) for all, else the variable
    ``api_key_env`` names for it; raises :class:`MissingApiKey` if that variable is not set here."""
    environ = os.environ if environ is None else environ
    keys: dict[str, EndpointKey | None] = {}
    for url in endpoints:
        url = url.rstrip("/")
        if api_key:
            keys[url] = EndpointKey("the key of the servers vlmix started", api_key)
            continue
        name = api_key_env if isinstance(api_key_env, str) else _lookup(api_key_env or {}, url)
        if name is None:
            keys[url] = None
        elif environ.get(name):
            keys[url] = EndpointKey(f"${name}", environ[name])
        else:
            host = os.uname().nodename
            raise MissingApiKey(
                f"translation.api_key_env names {name} for {url}, but {name} is not set in the "
                f"environment of this process (pid {os.getpid()} on {host}): export it wherever "
                "translation requests are sent (the driver, and every Ray node)"
            )
    return keys


def _lookup(mapping: Mapping[str, str], url: str) -> str | None:
    return {key.rstrip("/"): value for key, value in mapping.items()}.get(url)


def unauthorized(url: str, status: int, key: EndpointKey | None) -> Unauthorized:
    if key is None:
        return Unauthorized(f"HTTP {status} from {url}: the endpoint wants an API key; set "
                            "translation.api_key_env to the name of the environment variable that holds it")
    return Unauthorized(f"HTTP {status} from {url}: the endpoint refused the key from {key.source}")


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), at most
    :data:`MAX_RETRY_AFTER_S`; None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
