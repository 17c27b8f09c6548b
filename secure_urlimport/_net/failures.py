"""What a failed download says: the refusal for a timeout, a body broken off,
a proxy or a TLS check that failed -- pure, like ``responses.py``.

``download.py`` decides which one applies (from requests/urllib3's exception
classes, imported on first use) and adds the URL; the texts, and the advice
in them, live here.  Proxy credentials never reach a message: the proxy URL
is redacted.
"""

from __future__ import annotations

from ..errors import (
    DownloadError,
    DownloadTimeoutError,
    HTTPStatusError,
    RedirectError,
    ResponseTooLargeError,
    TLSError,
    redact,
    shown,
)
from .responses import Refusal

__all__ = [
    "OUTAGE_STATUSES",
    "broke_off",
    "is_outage",
    "proxy_failed",
    "root_cause",
    "timed_out",
    "tls_failed",
]

#: The statuses below 500 that say "not now" rather than "no": Request
#: Timeout and Too Many Requests.  Every 5xx is an outage too.
OUTAGE_STATUSES = frozenset({408, 429})


def timed_out(seconds: float, *, budgeted: bool) -> Refusal:
    """The download did not finish within *seconds*; *budgeted*: the seconds
    were one import step's budget (deadline.import_step), shared by the
    downloads before this one -- say so, or "within 5 s" after 0.3 s misleads."""
    spent = " (timeout= bounds all downloads from one source for one import)"
    return Refusal(
        DownloadTimeoutError,
        f"did not finish within {seconds:g} s{spent if budgeted else ''}; "
        "raise timeout= or check the server",
    )


def broke_off(received: int, cause: str) -> Refusal:
    """The connection failed after *received* bytes of the body."""
    return Refusal(DownloadError, f"broke off after {received} bytes: {cause}")


def proxy_failed(proxy: str, *, from_option: bool, cause: str) -> Refusal:
    """The proxy (``proxy=`` if *from_option*, else HTTPS_PROXY) failed."""
    source = "proxy=" if from_option else "HTTPS_PROXY"
    return Refusal(
        DownloadError,
        f"the proxy {redact(proxy)} (from {source}) failed: {cause}; check that "
        "it runs and accepts the credentials, or set NO_PROXY for this host",
    )


def tls_failed(host: str | None, cause: str) -> Refusal:
    """The certificate (or the client certificate) check for *host* failed."""
    return Refusal(
        TLSError,
        f"TLS check failed for {host}: {cause}; pass "
        "cafile= with the CA that signed the server certificate, or check the "
        "hostname (or client_cert=, if the server requires one)",
    )


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


def is_outage(exc: BaseException) -> bool:
    """Did a download fail because the network or the server is down (so a
    verified cached copy may stand in: ``Config(offline_fallback=...)``)?

    Yes: a connection refused, reset or broken off, DNS, a proxy failure, a
    timeout, TLS (an expired server certificate; an interceptor can as well
    drop the packets), and the statuses 5xx, 408 and 429.  No: every other
    status (401, 403, 404, 410: the server answered, on purpose; credentials
    revoked or a tree withdrawn must not be papered over), a body over the
    limit or a refused redirect (the server's answer, not an outage), and
    anything that is not a DownloadError -- above all a verification failure.
    """
    if not isinstance(exc, DownloadError):
        return False
    if isinstance(exc, HTTPStatusError):
        return exc.status >= 500 or exc.status in OUTAGE_STATUSES
    return not isinstance(exc, ResponseTooLargeError | RedirectError)
