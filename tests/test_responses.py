"""The pure decisions of a download, table by table, without a socket: where a
redirect may go, what a Content-Length declares, what each status means, how a
failed connection is reported, and how credentials are kept out of messages.

Each row pins the exact error class and message text the I/O loop
(``download.py``) raises after ``cannot download URL:``."""

from __future__ import annotations

import pytest
from requests.structures import CaseInsensitiveDict

from secure_urlimport._net.failures import (
    broke_off,
    is_outage,
    proxy_failed,
    root_cause,
    timed_out,
    tls_failed,
)
from secure_urlimport._net.responses import (
    Refusal,
    body_refusal,
    declared_length,
    expected_length,
    last_modified_validator,
    redirect,
    redirect_target,
    status_refusal,
    too_many_redirects,
)
from secure_urlimport._store.cache import Validators
from secure_urlimport.errors import (
    BadSignatureError,
    DownloadError,
    DownloadTimeoutError,
    ExpiredManifestError,
    HTTPStatusError,
    RedirectError,
    ResponseTooLargeError,
    TLSError,
    redact,
)

CURRENT = "https://code.example.com/tree/pkg/mod.py"
HOME = "https://code.example.com"
CAP = 100
SAME_ORIGIN_ONLY = "only same-origin https redirects are followed"
NOT_A_URL = "it is not a valid URL; fix the server"


def refused_redirect(target: str, why: str = SAME_ORIGIN_ONLY) -> Refusal:
    return Refusal(RedirectError, f"refusing redirect from {CURRENT} to {target}: {why}")


# -- redirect targets ---------------------------------------------------------

REDIRECT_TARGETS = {
    "relative-to-the-root": ("/v2/mod.py", f"{HOME}/v2/mod.py"),
    "relative-to-the-file": ("other.py", f"{HOME}/tree/pkg/other.py"),
    "relative-upwards": ("../v2/mod.py", f"{HOME}/tree/v2/mod.py"),
    "relative-with-query": ("?v=2", f"{CURRENT}?v=2"),
    "absolute-same-origin": (f"{HOME}/v2/mod.py", f"{HOME}/v2/mod.py"),
    "absolute-with-default-port": (
        "https://code.example.com:443/x",
        "https://code.example.com:443/x",
    ),
    "another-host": ("https://evil.example/x", refused_redirect("https://evil.example/x")),
    "another-port": (
        "https://code.example.com:8443/x",
        refused_redirect("https://code.example.com:8443/x"),
    ),
    "network-path-to-another-host": (
        "//evil.example/x",
        refused_redirect("https://evil.example/x"),
    ),
    "scheme-change-to-http": (
        "http://code.example.com/tree/pkg/mod.py",
        refused_redirect("http://code.example.com/tree/pkg/mod.py"),
    ),
    "scheme-change-to-javascript": ("javascript:alert(1)", refused_redirect("javascript:alert(1)")),
    "userinfo-same-host": (
        "https://admin:hunter2@code.example.com/x",
        refused_redirect("https://code.example.com/x"),
    ),
    "userinfo-another-host": (
        "https://admin:hunter2@evil.example/x",
        refused_redirect("https://evil.example/x"),
    ),
    "fragment": ("/x.py#frag", refused_redirect(f"{HOME}/x.py#frag")),
    "newlines-dropped-then-space-refused": (
        "/x.py\r\nSet-Cookie: a=b",
        refused_redirect(f"{HOME}/x.pySet-Cookie: a=b"),
    ),
    "bidi-override": ("/x\u202egp.py", refused_redirect(f"{HOME}/x\\u202egp.py")),
    "terminal-escape": ("/\x1b[2Jx", refused_redirect(f"{HOME}/\\x1b[2Jx")),
    "unparseable-unclosed-bracket": ("https://[", refused_redirect("https://[", NOT_A_URL)),
    "unparseable-network-path": ("//[::1", refused_redirect("//[::1", NOT_A_URL)),
    "unparseable-with-userinfo": (
        "https://admin:hunter2@[",
        refused_redirect("https://[", NOT_A_URL),
    ),
}


@pytest.mark.parametrize(
    ("location", "expected"), REDIRECT_TARGETS.values(), ids=REDIRECT_TARGETS.keys()
)
def test_a_redirect_is_followed_only_to_the_same_origin_over_https(
    location: str, expected: str | Refusal
) -> None:
    assert redirect_target(CURRENT, location) == expected


REDIRECTS = {
    "200-is-no-redirect": (200, "/x", None),
    "300-is-no-redirect": (300, "/x", None),
    "304-is-no-redirect": (304, "/x", None),
    "404-is-no-redirect": (404, "/x", None),
    "301": (301, "/x", f"{HOME}/x"),
    "302": (302, "/x", f"{HOME}/x"),
    "303": (303, "/x", f"{HOME}/x"),
    "307": (307, "/x", f"{HOME}/x"),
    "308": (308, "/x", f"{HOME}/x"),
    "refused-target": (302, "https://evil.example/", refused_redirect("https://evil.example/")),
    "no-location": (
        302,
        None,
        Refusal(HTTPStatusError, "HTTP 302 Found; the server must answer 200", 302),
    ),
    "empty-location": (
        301,
        "",
        Refusal(HTTPStatusError, "HTTP 301 Moved Permanently; the server must answer 200", 301),
    ),
}


@pytest.mark.parametrize(
    ("status", "location", "expected"), REDIRECTS.values(), ids=REDIRECTS.keys()
)
def test_an_answer_is_a_redirect_only_with_a_redirect_status_and_a_location(
    status: int, location: str | None, expected: str | Refusal | None
) -> None:
    assert redirect(status, location, CURRENT) == expected


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_one_redirect_more_than_the_limit_is_a_redirect_error(limit: int) -> None:
    assert too_many_redirects(limit) == Refusal(
        RedirectError, f"more than {limit} redirects (a loop?); fix the server"
    )


# -- declared lengths ---------------------------------------------------------


def invalid(value: str) -> Refusal:
    return Refusal(DownloadError, f"invalid Content-Length {value}")


def too_large(announced: str) -> Refusal:
    return Refusal(
        ResponseTooLargeError, f"it announces {announced}, over the limit of {CAP} bytes"
    )


DECLARED_LENGTHS = {
    "zero": ("0", 0),
    "some": ("42", 42),
    "exactly-the-cap": ("100", 100),
    "padded": (" 42 ", 42),
    "leading-zeros": ("00042", 42),
    "many-leading-zeros": ("0" * 5000 + "7", 7),
    "only-zeros": ("0" * 5000, 0),
    "one-over-the-cap": ("101", too_large("101 bytes")),
    "eighteen-digits": ("9" * 18, too_large(f"{'9' * 18} bytes")),
    "nineteen-digits": ("1" + "0" * 18, too_large("a 19-digit number of bytes")),
    "beyond-int-digit-limit": ("9" * 5000, too_large("a 5000-digit number of bytes")),
    "negative": ("-1", invalid("-1")),
    "plus-sign": ("+5", invalid("+5")),
    "exponent": ("1e3", invalid("1e3")),
    "fraction": ("4.2", invalid("4.2")),
    "empty": ("", invalid("")),
    "several-values": ("42, 42", invalid("42, 42")),
    "non-ascii-digits": ("\u0664\u0662", invalid("\u0664\u0662")),
    "control-characters": ("4\x1b[2J", invalid("4\\x1b[2J")),
    "long-garbage-is-cut": ("x" * 100, invalid("x" * 40 + "... (100 chars)")),
}


@pytest.mark.parametrize(
    ("value", "expected"), DECLARED_LENGTHS.values(), ids=DECLARED_LENGTHS.keys()
)
def test_a_content_length_is_a_plain_number_within_the_cap(
    value: str, expected: int | Refusal
) -> None:
    assert declared_length(value, CAP) == expected


HEADS = {
    "no-length": (200, {}, None),
    "length": (200, {"Content-Length": "42"}, 42),
    "lower-case-names": (200, {"content-length": "42"}, 42),
    "chunked-ignores-length": (
        200,
        {"Content-Length": "junk", "Transfer-Encoding": "chunked"},
        None,
    ),
    "identity": (200, {"Content-Encoding": " Identity ", "Content-Length": "1"}, 1),
    "empty-encoding": (200, {"Content-Encoding": ""}, None),
    "gzip": (
        200,
        {"Content-Encoding": "gzip"},
        Refusal(
            DownloadError,
            "served with Content-Encoding gzip; the server must serve files uncompressed "
            "(they are never inflated)",
        ),
    ),
    "encoding-escaped": (
        200,
        {"Content-Encoding": "\x1b]0;x\x07"},
        Refusal(
            DownloadError,
            "served with Content-Encoding \\x1b]0;x\\x07; the server must serve files "
            "uncompressed (they are never inflated)",
        ),
    ),
    "too-large": (200, {"Content-Length": "101"}, too_large("101 bytes")),
    "status-before-everything": (
        404,
        {"Content-Encoding": "gzip", "Content-Length": "junk"},
        Refusal(
            HTTPStatusError,
            "HTTP 404 Not Found; the file is listed but not on the server; re-publish the release",
            404,
        ),
    ),
}


@pytest.mark.parametrize(("status", "headers", "expected"), HEADS.values(), ids=HEADS.keys())
def test_a_head_is_read_only_for_a_200_uncompressed_within_the_cap(
    status: int, headers: dict[str, str], expected: int | Refusal | None
) -> None:
    assert expected_length(status, CaseInsensitiveDict(headers), CAP) == expected


BODIES = {
    "as-declared": (42, 42, None),
    "undeclared-within-the-cap": (100, None, None),
    "empty": (0, 0, None),
    "past-the-cap": (
        101,
        None,
        Refusal(ResponseTooLargeError, "its body is larger, over the limit of 100 bytes"),
    ),
    "past-the-cap-and-declared": (
        101,
        100,
        Refusal(ResponseTooLargeError, "its body is larger, over the limit of 100 bytes"),
    ),
    "truncated": (
        10,
        42,
        Refusal(
            DownloadError,
            "truncated: received 10 of 42 bytes (the server closed the connection early)",
        ),
    ),
}


@pytest.mark.parametrize(("received", "declared", "expected"), BODIES.values(), ids=BODIES.keys())
def test_a_body_is_whole_and_within_the_cap(
    received: int, declared: int | None, expected: Refusal | None
) -> None:
    assert body_refusal(received, declared, CAP) == expected


# -- status errors ------------------------------------------------------------

CREDENTIALS = "check the credentials passed as headers= or auth="
MUST_200 = "the server must answer 200"
STATUSES = {
    "informational": (100, f"HTTP 100 Continue; {MUST_200}"),
    "partial-content": (206, f"HTTP 206 Partial Content; {MUST_200}"),
    "no-content": (204, f"HTTP 204 No Content; {MUST_200}"),
    "redirect-without-location": (302, f"HTTP 302 Found; {MUST_200}"),
    "not-modified-unasked": (304, f"HTTP 304 Not Modified; {MUST_200}"),
    "bad-request": (
        400,
        "HTTP 400 Bad Request; the server refused the request; if it requires a client "
        "certificate (mutual TLS), pass client_cert= with one it accepts",
    ),
    "unauthorized": (401, f"HTTP 401 Unauthorized; {CREDENTIALS}"),
    "forbidden": (403, f"HTTP 403 Forbidden; {CREDENTIALS}"),
    "not-found": (
        404,
        "HTTP 404 Not Found; the file is listed but not on the server; re-publish the release",
    ),
    "proxy-authentication": (407, f"HTTP 407 Proxy Authentication Required; {MUST_200}"),
    "teapot": (418, f"HTTP 418 I'm a Teapot; {MUST_200}"),
    "server-error": (500, f"HTTP 500 Internal Server Error; {MUST_200}"),
    "unavailable": (503, f"HTTP 503 Service Unavailable; {MUST_200}"),
    "unknown": (599, f"HTTP 599 unknown status; {MUST_200}"),
    "out-of-range": (1000, f"HTTP 1000 unknown status; {MUST_200}"),
}


@pytest.mark.parametrize(("status", "text"), STATUSES.values(), ids=STATUSES.keys())
def test_every_status_but_200_is_an_http_status_error_with_the_standard_phrase_and_advice(
    status: int, text: str
) -> None:
    assert status_refusal(status) == Refusal(HTTPStatusError, text, status)


# -- failed connections -------------------------------------------------------

ADVICE_TLS = (
    "pass cafile= with the CA that signed the server certificate, or check the hostname "
    "(or client_cert=, if the server requires one)"
)
ADVICE_PROXY = "check that it runs and accepts the credentials, or set NO_PROXY for this host"
FAILURES = {
    "timeout": (
        timed_out(5, budgeted=False),
        DownloadTimeoutError,
        "did not finish within 5 s; raise timeout= or check the server",
    ),
    "timeout-of-a-shared-budget": (
        timed_out(0.25, budgeted=True),
        DownloadTimeoutError,
        "did not finish within 0.25 s (timeout= bounds all downloads from one source for "
        "one import); raise timeout= or check the server",
    ),
    "broke-off": (
        broke_off(10, "ConnectionResetError: reset"),
        DownloadError,
        "broke off after 10 bytes: ConnectionResetError: reset",
    ),
    "proxy-option": (
        proxy_failed("http://user:secret@proxy:3128", from_option=True, cause="E: x"),
        DownloadError,
        f"the proxy http://proxy:3128 (from proxy=) failed: E: x; {ADVICE_PROXY}",
    ),
    "proxy-environment-without-scheme": (
        proxy_failed("user:secret@proxy:3128", from_option=False, cause="E: x"),
        DownloadError,
        f"the proxy proxy:3128 (from HTTPS_PROXY) failed: E: x; {ADVICE_PROXY}",
    ),
    "tls": (
        tls_failed("code.example.com", "SSLCertVerificationError: x"),
        TLSError,
        f"TLS check failed for code.example.com: SSLCertVerificationError: x; {ADVICE_TLS}",
    ),
}


@pytest.mark.parametrize(("refusal", "error", "text"), FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_connection_is_reported_with_its_error_class_and_advice(
    refusal: Refusal, error: type[DownloadError], text: str
) -> None:
    assert refusal == Refusal(error, text)


class _Wrapper(Exception):
    def __init__(self, message: str, reason: BaseException | None = None) -> None:
        super().__init__(message)
        self.reason = reason


def _caused(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


ROOT_CAUSES = {
    "plain": (ConnectionResetError("reset by peer"), "ConnectionResetError: reset by peer"),
    "reason": (_Wrapper("outer", OSError("inner")), "OSError: inner"),
    "first-argument": (ValueError(KeyError("k")), "KeyError: 'k'"),
    "cause": (_caused(RuntimeError("outer"), TimeoutError("slow")), "TimeoutError: slow"),
    "nested": (_Wrapper("a", _Wrapper("b", EOFError("c"))), "EOFError: c"),
    "empty-text": (ConnectionAbortedError(), "ConnectionAbortedError"),
    "escaped": (OSError("proxy said \x1b[2J"), "OSError: proxy said \\x1b[2J"),
    "cut": (OSError("x" * 400), f"OSError: {'x' * 300}... (400 chars)"),
}


@pytest.mark.parametrize(("exc", "text"), ROOT_CAUSES.values(), ids=ROOT_CAUSES.keys())
def test_the_innermost_wrapped_error_is_named_escaped_and_cut(
    exc: BaseException, text: str
) -> None:
    assert root_cause(exc) == text


def test_an_error_that_wraps_itself_ends_the_search() -> None:
    loop = _Wrapper("loop")
    loop.reason = loop
    assert root_cause(loop) == "_Wrapper: loop"


# -- redaction ----------------------------------------------------------------

REDACTIONS = {
    "no-userinfo": ("https://example.org/x.py", "https://example.org/x.py"),
    "user-and-password": ("https://alice:hunter2@example.org/x.py", "https://example.org/x.py"),
    "user-only": ("https://alice@example.org:8443/", "https://example.org:8443/"),
    "no-path": ("http://u:p@proxy.example:3128", "http://proxy.example:3128"),
    "at-in-password": ("https://a:b@c@example.org/x", "https://example.org/x"),
    "at-in-path-kept": ("https://example.org/@scope/x.py", "https://example.org/@scope/x.py"),
    "at-in-path-after-userinfo": ("https://u:p@example.org/a@b", "https://example.org/a@b"),
    "network-path": ("//u:p@example.org/x", "//example.org/x"),
    "schemeless-proxy": ("u:p@proxy:3128", "proxy:3128"),
    "relative-path-kept": ("../a@b", "../a@b"),
    "unparseable": ("https://u:p@[", "https://["),
    "empty": ("", ""),
}


@pytest.mark.parametrize(("url", "expected"), REDACTIONS.values(), ids=REDACTIONS.keys())
def test_redaction_drops_the_userinfo_and_keeps_the_rest(url: str, expected: str) -> None:
    assert redact(url) == expected


# -- validators: what a server chose, kept only if fit to send back ------------------

LM = "Wed, 02 Dec 2026 03:00:00 GMT"
LAST_MODIFIED = {
    "a-second-before-the-date": (LM, "Wed, 02 Dec 2026 03:00:01 GMT", LM),
    "long-before-the-date": (LM, "Thu, 03 Dec 2026 03:00:00 GMT", LM),
    "in-the-second-of-the-date": (LM, LM, None),
    "after-the-date": (LM, "Wed, 02 Dec 2026 02:59:59 GMT", None),
    "no-date": (LM, None, None),
    "no-last-modified": (None, LM, None),
    "unparsable": ("yesterday", LM, None),
    "impossible-date": ("Mon, 99 Foo 99999 99:99:99 GMT", LM, None),
    "naive-against-aware": (
        "Wed, 02 Dec 2026 03:00:00 -0000",
        "Thu, 03 Dec 2026 03:00:00 GMT",
        None,
    ),
}


@pytest.mark.parametrize(
    ("last_modified", "date", "kept"), LAST_MODIFIED.values(), ids=LAST_MODIFIED.keys()
)
def test_last_modified_is_kept_only_when_a_second_older_than_the_response(
    last_modified: str | None, date: str | None, kept: str | None
) -> None:
    assert last_modified_validator(last_modified, date) == kept


@pytest.mark.parametrize(
    "value", ["", "x" * 201, "caf\u00e9", "a\r\nSet-Cookie: x", "\x1b[2J", 42, None]
)
def test_validators_drop_an_etag_or_last_modified_unfit_to_send_back(value: object) -> None:
    validators = Validators(value, value)  # type: ignore[arg-type]
    assert validators == Validators() and not validators


def test_validators_keep_short_printable_ascii() -> None:
    validators = Validators('W/"5e-1a"', LM)
    assert (validators.etag, validators.last_modified) == ('W/"5e-1a"', LM) and validators
    assert Validators(None, "x" * 65).last_modified is None  # capped at 64


# -- which download failures let a verified cached manifest stand in (offline start) --


def _status(status: int) -> HTTPStatusError:
    error = HTTPStatusError("cannot download")
    error.status = status
    return error


OUTAGES = {
    "connection-refused": (DownloadError("refused"), True),
    "timeout": (DownloadTimeoutError("slow"), True),
    "tls": (TLSError("certificate expired"), True),
    "500": (_status(500), True),
    "503": (_status(503), True),
    "599": (_status(599), True),
    "408": (_status(408), True),
    "429": (_status(429), True),
    "401": (_status(401), False),
    "403": (_status(403), False),
    "404": (_status(404), False),
    "410": (_status(410), False),
    "204": (_status(204), False),
    "too-large": (ResponseTooLargeError("big"), False),
    "cross-origin-redirect": (RedirectError("elsewhere"), False),
    "verification": (BadSignatureError("forged"), False),
    "expired": (ExpiredManifestError("old"), False),
    "not-an-import-error": (ValueError("x"), False),
}


@pytest.mark.parametrize(("error", "outage"), OUTAGES.values(), ids=OUTAGES.keys())
def test_only_the_network_and_server_failures_count_as_an_outage(
    error: BaseException, outage: bool
) -> None:
    assert is_outage(error) is outage
