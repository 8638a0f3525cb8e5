"""One URL fetched within a wall-clock budget, whatever the server does; img2dataset's contract.

img2dataset's ``download_image`` gives each socket operation ``timeout`` seconds, so a server that
sends one byte a second (or its headers a line a minute) holds a thread for as long as it likes,
and one such host keeps a shard, and so the stage, from finishing. Here each URL gets a budget
(``Download.url_budget_s``; :mod:`download.limits`) for everything: waiting for a slot
to its host, connecting, redirects, headers and body. It is enforced twice: before each read the
socket's timeout is set to what is left (and ``read1`` returns whatever has arrived, where
``read(n)`` waits for n bytes), and a watchdog thread shuts down the sockets of a URL whose budget
has passed, which also ends a read blocked inside http.client (trickled headers, a redirect's body). Name resolution is the one
step it cannot interrupt: that is bounded by the resolver's own timeouts.

Also: at most ``max_redirects`` hops; bodies decoded per their Content-Encoding with the size cap
on the decoded bytes (:mod:`download.encoding`); at most ``max_connections_per_host``
downloads in flight to one host in a process; and a 429/503's ``Retry-After`` recorded in the
failure message, for the retry pass to honour (``not_before``).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http.client
import io
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from download.encoding import BadEncoding, CappedDecoder, DecodedTooLarge, UnsupportedEncoding
from download.limits import Budget, TooSlow, host_slots
from download.messages import (
    BAD_ENCODING,
    BODY_TOO_LARGE,
    TOO_MANY_REDIRECTS,
    TOO_SLOW,
    UNSUPPORTED_ENCODING,
)

_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) vlmix (+img2dataset)"
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """What one download may cost; built from the ``download`` settings, sent to each shard task."""

    max_bytes: int
    budget_s: float
    max_redirects: int = 5
    per_host: int = 16
    max_wait_s: float = 60.0
    not_before: dict[str, float] = field(default_factory=dict)  # url -> epoch seconds (Retry-After)


class Refused(Exception):
    """The response is refused for what it is (size, encoding, site directive): not worth a retry."""


class _TooManyRedirects(Exception):
    pass


def _watched(base: type[http.client.HTTPConnection]):
    class Watched(base):
        def __init__(self, *args, budget: Budget, **kwargs):
            super().__init__(*args, **kwargs)
            self._budget = budget

        def connect(self):
            self.timeout = self._budget.timeout(self.timeout)  # a redirect's hop gets what is left
            super().connect()
            self._budget.adopt(self.sock)

    Watched.__name__ = f"Watched{base.__name__}"
    return Watched


_WatchedHTTP = _watched(http.client.HTTPConnection)
_WatchedHTTPS = _watched(http.client.HTTPSConnection)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, budget: Budget):
        super().__init__()
        self.budget = budget

    def http_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTP, budget=self.budget), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, budget: Budget):
        super().__init__()
        self.budget = budget

    def https_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTPS, budget=self.budget), req, context=self._context)


class _CappedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, limit: int):
        self.limit = limit
        self.max_redirections = self.max_repeats = limit + 1  # ours fires first, with its own message

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        hops = getattr(req, "vlmix_hops", 0) + 1
        if hops > self.limit:
            fp.close()
            raise _TooManyRedirects(f"{TOO_MANY_REDIRECTS} (more than {self.limit}, last to {newurl})")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.vlmix_hops = hops
        return new


def retry_after_s(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


_RETRY_AFTER = re.compile(r"\(retry after ([0-9.]+) s, not before ([0-9.]+)\)")


def parse_retry_after(message: str | None) -> tuple[float, float] | None:
    """``(seconds asked for, epoch not before)`` from a failure message, or None."""
    found = _RETRY_AFTER.search(message or "")
    return (float(found[1]), float(found[2])) if found else None


def _read_body(response, budget: Budget, per_operation: float, max_bytes: int) -> bytes:
    try:
        decoder = CappedDecoder(response.headers.get("Content-Encoding"), max_bytes)
    except UnsupportedEncoding as err:
        raise Refused(f"{UNSUPPORTED_ENCODING} ({err})") from None
    parts, raw = [], 0
    try:
        while True:
            budget.bound_next_read(per_operation)
            chunk = response.read1(_CHUNK)  # what has arrived, not a full chunk
            if not chunk:
                break
            raw += len(chunk)
            if raw > max_bytes:
                raise Refused(f"{BODY_TOO_LARGE} (> {max_bytes} bytes)")
            parts.extend(decoder.feed(chunk))
        if budget.left() <= 0:  # the watchdog's shutdown reads as the end of a body of unknown length
            raise TooSlow(f"{TOO_SLOW} (more than {budget.seconds:g} s)")
        parts.append(decoder.finish())
    except DecodedTooLarge as err:
        raise Refused(f"{BODY_TOO_LARGE} ({err})") from None
    except BadEncoding as err:
        raise Refused(f"{BAD_ENCODING} ({err})") from None
    return b"".join(parts)


def fetch(url: str, policy: FetchPolicy, timeout: float, agent: str, refuse=None) -> bytes:
    """The decoded body of ``url``; raises with a message :func:`~download.guards.classify_error` maps."""
    budget = Budget(policy.budget_s)
    try:
        with host_slots(policy.per_host).hold(url, budget):
            opener = urllib.request.build_opener(
                _HTTPHandler(budget), _HTTPSHandler(budget), _CappedRedirects(policy.max_redirects)
            )
            request = urllib.request.Request(url, headers={"User-Agent": agent})
            with opener.open(request, timeout=budget.timeout(timeout)) as response:
                if refuse is not None and (why := refuse(response.headers)):
                    raise Refused(why)
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                    raise Refused(f"{BODY_TOO_LARGE} ({declared} bytes declared > {policy.max_bytes})")
                return _read_body(response, budget, timeout, policy.max_bytes)
    except urllib.error.HTTPError as err:
        asked = retry_after_s(err.headers.get("Retry-After")) if err.code in (429, 503) and err.headers else None
        err.close()
        if asked is not None:
            raise Refused(f"{err} (retry after {asked:g} s, not before {time.time() + asked:.3f})") from None
        raise
    except (TooSlow, Refused):
        raise
    except Exception as err:
        if budget.left() <= 0:  # whatever the interrupted read said, the budget is why it ended
            raise TooSlow(f"{TOO_SLOW} (more than {budget.seconds:g} s: {err or type(err).__name__})") from None
        raise
    finally:
        budget.close()


def download_image(row, timeout, user_agent_token, disallowed_header_directives, *, policy: FetchPolicy):
    """img2dataset's ``download_image`` contract: ``(key, BytesIO or None, error message or None)``."""
    from img2dataset.downloader import is_disallowed

    key, url = row
    agent = _USER_AGENT if not user_agent_token else f"{_USER_AGENT} ({user_agent_token})"
    wait = policy.not_before.get(url, 0.0) - time.time()
    if wait > 0:  # the server's Retry-After, from the previous pass; not counted in the budget
        time.sleep(min(wait, policy.max_wait_s))

    def refuse(headers):
        if disallowed_header_directives and is_disallowed(headers, user_agent_token, disallowed_header_directives):
            return "Use of image disallowed by X-Robots-Tag directive"
        return None

    try:
        return key, io.BytesIO(fetch(url, policy, timeout, agent, refuse)), None
    except Exception as err:  # noqa: BLE001 - every failure becomes a counted row, as in img2dataset
        return key, None, str(err) or type(err).__name__
