"""What a server's answer means: pure decisions about URLs, redirects, lengths
and statuses, with no I/O (after httpx's ``_redirect_url``).

Everything here takes strings a hostile server chose and either returns a
value the transport can use or a short problem text, already escaped and cut
(:func:`~secure_urlimport.errors.shown`), for a DownloadError.  Nothing here
may raise anything else: a Location ``urljoin`` cannot parse or a
Content-Length of 5,000 digits (beyond Python's int-digit limit) must end in
a clear error, never a ValueError out of an ``import`` statement.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import urljoin, urlsplit

from .errors import redact, shown

__all__ = [
    "declared_length",
    "https_problem",
    "origin",
    "redirect_target",
    "root_cause",
    "status_text",
]

Origin = tuple[str, str, int]

#: More digits than any length a cap allows (caps are far below 10**18).
_MAX_LENGTH_DIGITS = 18

_ADVICE = {
    400: "the server refused the request; if it requires a client certificate "
    "(mutual TLS), pass client_cert= with one it accepts",
    404: "the file is listed but not on the server; re-publish the release",
    401: "check the credentials passed as headers= or auth=",
    403: "check the credentials passed as headers= or auth=",
}


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


def redirect_target(current: str, location: str) -> tuple[str | None, str]:
    """``(target, "")`` for a same-origin https redirect from *current* to
    *location*, else ``(None, problem)``: the problem text to report."""
    try:
        target = urljoin(current, location)
    except ValueError:  # e.g. "https://[" or "//[::1": an unclosed IPv6 bracket
        return None, (
            f"refusing redirect from {current} to {shown(redact(location))}: "
            "it is not a valid URL; fix the server"
        )
    if https_problem(target) or origin(target) != origin(current):
        return None, (
            f"refusing redirect from {current} to {shown(redact(target))}: only "
            "same-origin https redirects are followed"
        )
    return target, ""


def declared_length(value: str) -> tuple[int | None, str]:
    """``(length, "")`` for a Content-Length value, ``(None, problem)`` if it is
    not one.  Over-long digit strings are reported as too large without
    ``int()``, which refuses more than 4,300 digits with a ValueError."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        return None, f"invalid Content-Length {shown(value, 40)}"
    digits = text.lstrip("0") or "0"
    if len(digits) > _MAX_LENGTH_DIGITS:
        return None, f"it announces a {len(digits)}-digit number of bytes"
    return int(digits), ""


def status_text(status: int) -> str:
    """``HTTP 404 Not Found; advice``: the standard phrase, never the server's own
    (attacker-chosen) reason text."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    return f"HTTP {status} {phrase}; {_ADVICE.get(status, 'the server must answer 200')}"


def root_cause(exc: BaseException) -> str:
    """The innermost error requests/urllib3 wrapped, for a short, useful message.

    Its text may quote the server (a status line, a proxy's reason text), so
    it is escaped and cut.
    """
    for _ in range(10):
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            first = exc.args[0] if exc.args else None
            inner = first if isinstance(first, BaseException) else exc.__cause__
        if inner is None or inner is exc:
            break
        exc = inner
    text = shown(exc, 300)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
