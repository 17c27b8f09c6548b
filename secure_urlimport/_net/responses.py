"""What a server's answer means: pure decisions about URLs, redirects, lengths
and statuses, with no I/O (after httpx's ``_redirect_url``).

Everything here takes the status and header values a hostile server chose and
returns either what the download does next (a redirect target, a length to
expect) or a :class:`Refusal`: the DownloadError class and a short problem
text, already escaped and cut (:func:`~secure_urlimport.errors.shown`).  The
I/O loop (``download.py``) only adds which URL it was.  Nothing here may
raise: a Location ``urljoin`` cannot parse or a Content-Length of 5,000 digits
(beyond Python's int-digit limit) must end in a clear error, never a
ValueError out of an ``import`` statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from urllib.parse import urljoin, urlsplit

from ..errors import (
    DownloadError,
    HTTPStatusError,
    RedirectError,
    ResponseTooLargeError,
    redact,
    shown,
)

__all__ = [
    "REDIRECTS",
    "Refusal",
    "body_refusal",
    "declared_length",
    "expected_length",
    "https_problem",
    "last_modified_validator",
    "origin",
    "redirect",
    "redirect_target",
    "status_refusal",
    "status_text",
    "too_many_redirects",
]

Origin = tuple[str, str, int]

#: The statuses that send a download elsewhere (with a Location).
REDIRECTS = frozenset({301, 302, 303, 307, 308})

#: More digits than any length a cap allows (caps are far below 10**18).
_MAX_LENGTH_DIGITS = 18

_ADVICE = {
    400: "the server refused the request; if it requires a client certificate "
    "(mutual TLS), pass client_cert= with one it accepts",
    404: "the file is listed but not on the server; re-publish the release",
    401: "check the credentials passed as headers= or auth=",
    403: "check the credentials passed as headers= or auth=",
}


@dataclass(frozen=True)
class Refusal:
    """Why a download fails: the error to raise and what to say after
    ``cannot download URL:``; *status* is an HTTPStatusError's ``.status``."""

    error: type[DownloadError]
    problem: str
    status: int | None = None


def https_problem(url: str) -> tuple[str, str] | None:
    """What is wrong with ``url`` and how to fix it, or None if it is acceptable."""
    # Unprintable too (C1 controls, bidi overrides): a redirect target becomes
    # the URL that later messages name.
    if any(ch <= " " or not ch.isprintable() for ch in url):
        return "it contains whitespace or control characters", "remove them"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        return "it is not a valid URL", "pass a URL of the form https://host/path"
    if parts.scheme != "https":
        scheme = f"{parts.scheme}://" if parts.scheme else "no scheme"
        return f"it uses {shown(scheme, 40)}", "use an https:// URL (serve the files over TLS)"
    if "@" in parts.netloc:
        return "it embeds credentials (user@host)", "pass them as headers= instead"
    if "#" in url:
        return "it has a #fragment", "remove the fragment"
    if not parts.hostname:
        return "it names no host", "use a URL of the form https://host/path"
    return None


def origin(url: str) -> Origin:
    """(scheme, host, port) of a URL that :func:`https_problem` accepted."""
    parts = urlsplit(url)
    return (parts.scheme, parts.hostname or "", parts.port or 443)


def redirect(status: int, location: str | None, current: str) -> str | Refusal | None:
    """Where an answer with *status* sends a download that is at *current*:
    None if it is not a redirect (its body is the answer), the target if it
    may be followed, else the refusal -- no Location, or a target
    :func:`redirect_target` refuses."""
    if status not in REDIRECTS:
        return None
    if not location:
        return status_refusal(status)
    return redirect_target(current, location)


def too_many_redirects(limit: int) -> Refusal:
    """The refusal once *limit* redirects were followed and the next answer
    is one more."""
    return Refusal(RedirectError, f"more than {limit} redirects (a loop?); fix the server")


def redirect_target(current: str, location: str) -> str | Refusal:
    """The URL a redirect from *current* to *location* leads to, if it is a
    same-origin https one; else the refusal (credentials in it redacted)."""
    try:
        target = urljoin(current, location)
    except ValueError:  # e.g. "https://[" or "//[::1": an unclosed IPv6 bracket
        return Refusal(
            RedirectError,
            f"refusing redirect from {current} to {shown(redact(location))}: "
            "it is not a valid URL; fix the server",
        )
    if https_problem(target) or origin(target) != origin(current):
        return Refusal(
            RedirectError,
            f"refusing redirect from {current} to {shown(redact(target))}: only "
            "same-origin https redirects are followed",
        )
    return target


def expected_length(
    status: int, headers: Mapping[str, str], max_bytes: int
) -> int | Refusal | None:
    """The length the head of a final (not redirecting) answer declares, None
    if it declares none (read to the end), or why its body is not even read:
    a status other than 200, a compressed body, a bad or too large length.
    *headers* must look names up case-insensitively, as requests' do."""
    if status != 200:
        return status_refusal(status)
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return Refusal(
            DownloadError,
            f"served with Content-Encoding {shown(encoding, 40)}; the server must serve "
            "files uncompressed (they are never inflated)",
        )
    value = headers.get("Content-Length")
    # Under chunked framing Content-Length is ignored (RFC 9112, 6.3).
    if value is None or "Transfer-Encoding" in headers:
        return None
    return declared_length(value, max_bytes)


def declared_length(value: str, max_bytes: int) -> int | Refusal:
    """The length a Content-Length *value* declares, or its refusal: not a
    number (negative, several values), or over *max_bytes*.  Over-long digit
    strings are refused as too large without ``int()``, which refuses more
    than 4,300 digits with a ValueError."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        return Refusal(DownloadError, f"invalid Content-Length {shown(value, 40)}")
    digits = text.lstrip("0") or "0"
    limit = f"over the limit of {max_bytes} bytes"
    if len(digits) > _MAX_LENGTH_DIGITS:
        return Refusal(
            ResponseTooLargeError, f"it announces a {len(digits)}-digit number of bytes, {limit}"
        )
    length = int(digits)
    if length > max_bytes:
        return Refusal(ResponseTooLargeError, f"it announces {length} bytes, {limit}")
    return length


def body_refusal(received: int, declared: int | None, max_bytes: int) -> Refusal | None:
    """What is wrong with a body of *received* bytes, read to its end or to
    just past *max_bytes*, whose head declared *declared*; None if nothing."""
    if received > max_bytes:
        return Refusal(
            ResponseTooLargeError, f"its body is larger, over the limit of {max_bytes} bytes"
        )
    if declared is not None and received != declared:
        return Refusal(
            DownloadError,
            f"truncated: received {received} of {declared} bytes "
            "(the server closed the connection early)",
        )
    return None


def status_refusal(status: int) -> Refusal:
    """The refusal of an answer with *status* where a 200 (or a redirect
    with a Location) was needed."""
    return Refusal(HTTPStatusError, status_text(status), status)


def status_text(status: int) -> str:
    """``HTTP 404 Not Found; advice``: the standard phrase, never the server's own
    (attacker-chosen) reason text."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    return f"HTTP {status} {phrase}; {_ADVICE.get(status, 'the server must answer 200')}"


def last_modified_validator(last_modified: str | None, date: str | None) -> str | None:
    """The response's *last_modified* if it can revalidate the copy: only when
    the response's *date* is at least a second later (RFC 9110, 8.8.2.2).

    Last-Modified has one-second resolution: a manifest served in the second
    it was written may be replaced within that second, and the new one would
    then be "not modified since" forever after.  Such a value (or one
    without a Date, or either unparsable) is not kept; the next start then
    downloads the manifest once more and keeps that answer's."""
    if not last_modified or not date:
        return None
    # Here, not at the top: email.utils costs milliseconds to import, and this
    # runs only after a download (when http.client has loaded it anyway).
    from email.utils import parsedate_to_datetime

    try:
        modified = parsedate_to_datetime(last_modified)
        served = parsedate_to_datetime(date)
        if served - modified < timedelta(seconds=1):
            return None
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    return last_modified
