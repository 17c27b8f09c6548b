"""Terminal escapes from the network never reach a message raw.

A server chooses its redirect ``Location``; a proxy chooses the reason text
of its CONNECT answer.  Quoted raw, ESC/BEL sequences would retitle the
operator's terminal, clear it, or rewrite what the error seems to say.  Each
attack is staged against a real HTTPS server or a real CONNECT proxy, through
``install()``/``import`` and through the CLI in a subprocess; every message
shows the bytes as visible escapes (``\\x1b``), cut to a bounded length.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from connect_proxy import running_proxy
from simulator import HostileHTTPSServer, assert_never_ran, child_env, hostile_servers, sign_release

from secure_urlimport import Config, DownloadError, RedirectError, install
from secure_urlimport._format.keys import PrivateKey
from secure_urlimport._format.paths import MANIFEST_NAME
from secure_urlimport.errors import shown

MODULE = "VALUE = 'signed'\n"
#: Sets the terminal title, clears the screen, rings the bell; then an 8-bit CSI.
ESCAPES = b"\x1b]0;owned\x07\x1b[2J\x1b[31mall good\x07\xc2\x9b31m"
RAW = ("\x1b", "\x07", "\x9b")


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture
def release(key):
    return sign_release({"mod.py": MODULE}, [key])


@pytest.fixture
def start(tls) -> Iterator[Callable[..., HostileHTTPSServer]]:
    yield from hostile_servers(tls)


def redirect_with_escapes(location: bytes):
    def route(h) -> None:
        h.wfile.write(
            b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
        )

    return route


def assert_escaped(text: str) -> None:
    assert not any(ch in text for ch in RAW), repr(text)
    assert "\\x1b]0;owned\\x07" in text


@pytest.mark.parametrize("location", [b"/mod2.py" + ESCAPES, b"https://evil.example/" + ESCAPES])
def test_escapes_in_a_redirect_location_are_shown_escaped_by_import(
    start, release, key, tls, marker, location
):
    server = start(release.everything())
    server.routes["mod.py"] = redirect_with_escapes(location)
    install(server.url, pubkey=key.public.raw, cafile=tls.cafile, config=Config(file_cache=False))
    with pytest.raises(RedirectError) as caught:
        importlib.import_module("mod")
    assert type(caught.value) is RedirectError
    assert_escaped(str(caught.value))
    assert_never_ran(marker, "mod")


def test_a_huge_redirect_location_is_cut_in_the_message(start, release, key, tls):
    server = start(release.everything())
    server.routes["mod.py"] = redirect_with_escapes(b"https://evil.example/" + b"A" * 60000)
    install(server.url, pubkey=key.public.raw, cafile=tls.cafile, config=Config(file_cache=False))
    with pytest.raises(RedirectError) as caught:
        importlib.import_module("mod")
    assert len(str(caught.value)) < 1000
    assert "chars)" in str(caught.value)


def test_escapes_in_a_proxy_connect_reason_are_shown_escaped_by_install(release, key, tls, start):
    server = start(release.everything())
    refusal = b"HTTP/1.1 403 " + ESCAPES + b"\r\nContent-Length: 0\r\n\r\n"
    with running_proxy(refusal=refusal) as proxy, pytest.raises(DownloadError) as caught:
        install(server.url, pubkey=key.public.raw, cafile=tls.cafile, proxy=proxy.url)
    assert type(caught.value) is DownloadError
    assert "proxy" in str(caught.value)
    assert_escaped(str(caught.value))


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secure_urlimport", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def pub(key, tmp_path) -> str:
    path = tmp_path / "publisher.pub"
    path.write_text(key.public.to_line(), encoding="ascii")
    return str(path)


@pytest.mark.parametrize("command", ["run", "verify"])
def test_escapes_in_a_redirect_location_are_shown_escaped_by_the_cli(
    start, release, tls, pub, tmp_path, marker, command
):
    server = start(release.everything())
    server.routes[MANIFEST_NAME] = redirect_with_escapes(b"/elsewhere" + ESCAPES)
    args = (
        [command, "--pubkey", pub, "--cafile", tls.cafile, server.url, "mod"]
        if command == "run"
        else [command, server.url, "--pubkey", pub, "--cafile", tls.cafile]
    )
    done = _cli(["-v", *args], child_env(tmp_path / "cache"))
    assert done.returncode == 1, done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert_escaped(output)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["run", "verify"])
def test_escapes_in_a_proxy_connect_reason_are_shown_escaped_by_the_cli(
    start, release, tls, pub, tmp_path, command
):
    server = start(release.everything())
    refusal = b"HTTP/1.1 407 " + ESCAPES + b"\r\nContent-Length: 0\r\n\r\n"
    args = (
        [command, "--pubkey", pub, "--cafile", tls.cafile, server.url, "mod"]
        if command == "run"
        else [command, server.url, "--pubkey", pub, "--cafile", tls.cafile]
    )
    with running_proxy(refusal=refusal) as proxy:
        env = {**child_env(tmp_path / "cache"), "HTTPS_PROXY": proxy.url}
        done = _cli(["-v", *args], env)
    assert done.returncode == 1, done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert_escaped(output)


def test_shown_escapes_every_unprintable_character_and_cuts() -> None:
    text = "a\x1b[2J\x07\u202e\u2028\x9b" + "z" * 500
    out = shown(text, 50)
    assert out.isprintable()
    assert out.startswith("a\\x1b[2J\\x07\\u202e\\u2028\\x9b")
    assert out.endswith(f"... ({len(text)} chars)")
    assert shown("plain https://host/x") == "plain https://host/x"
