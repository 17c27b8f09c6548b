"""A real nginx on loopback for the tests: TLS, optional bearer/basic/mutual-TLS checks.

Not a test module: ``tests/conftest.py`` wraps :func:`start_nginx` in fixtures.
Everything nginx writes (config, pid, logs, temp dirs) lives in one scratch
directory, so it runs as any user.  Each server gets its own process group, so
stopping it can never leave a worker behind.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "REQUIRE_ENV",
    "Nginx",
    "NginxError",
    "find_nginx",
    "free_port",
    "htpasswd_line",
    "start_nginx",
]

#: Set to 1 (CI does) to make a missing nginx a test failure instead of a skip.
REQUIRE_ENV = "SECURE_URLIMPORT_REQUIRE_NGINX"

_CANDIDATES = (
    "/usr/sbin/nginx",
    "/usr/local/sbin/nginx",
    "/usr/local/nginx/sbin/nginx",
    "/opt/homebrew/bin/nginx",
    "/usr/local/bin/nginx",
)
_ATTEMPTS = 5
_READY_SECONDS = 20.0
_STOP_SECONDS = 10.0


class NginxError(RuntimeError):
    """nginx could not be started; the message carries its error log."""


def find_nginx() -> str | None:
    """The nginx binary: on PATH, else in the usual sbin directories (not on a user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in _CANDIDATES if os.path.isfile(p) and os.access(p, os.X_OK)), None)


def free_port() -> int:
    """A port that was free a moment ago (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def htpasswd_line(user: str, password: str) -> str:
    """An htpasswd entry nginx understands without crypt(3): ``user:{SHA}base64(sha1)``."""
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode("ascii")
    return f"{user}:{{SHA}}{digest}"


@dataclass
class Nginx:
    """A running nginx: its port, scratch directory and logs."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    config_text: str = field(repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.directory / "error.log"

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def requests_seen(self, at_least: int = 0) -> list[str]:
        """Access-log lines, one per request: request line, status, the
        Authorization and Proxy-Authorization headers received, client certificate.

        nginx logs a request just after sending the response, so a client can
        be done before the line is written: wait up to 5 s for *at_least* lines.
        """
        deadline = time.monotonic() + 5.0
        while True:
            text = self.access_log.read_text(errors="replace") if self.access_log.exists() else ""
            lines = text.splitlines()
            if len(lines) >= at_least or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def transfers(self) -> list[tuple[str, int, int, int]]:
        """``(request line, status, body bytes, bytes with headers)`` per request so far."""
        path = self.directory / "sizes.log"
        rows = []
        for line in path.read_text().splitlines() if path.exists() else []:
            request, _, rest = line[1:].rpartition('" ')
            status, body, total = rest.split()
            rows.append((request, int(status), int(body), int(total)))
        return rows

    def logs(self) -> str:
        """Both logs, for failure messages."""
        parts = []
        for path in (self.error_log, self.directory / "stderr.log", self.access_log):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown: the master waits for its workers); if
        that hangs, SIGKILL the whole process group (start_new_session made it
        ours, and the unreaped master keeps its id taken)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=_STOP_SECONDS)


def _user_line() -> str:
    # A root master switches its workers to 'nobody', who cannot read pytest's
    # 0700 temporary directories; not root, nginx ignores 'user' (with a warning).
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};"


def _server_block(
    port: int,
    root: Path,
    certfile: str,
    keyfile: str,
    directory: Path,
    *,
    bearer: str | None,
    basic: dict[str, str] | None,
    client_ca: str | None,
    extra: str,
) -> str:
    checks = []
    if bearer is not None:
        checks.append(f'if ($http_authorization != "Bearer {bearer}") {{ return 401; }}')
    if basic is not None:
        htpasswd = directory / "htpasswd"
        htpasswd.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in basic.items()))
        checks += ['auth_basic "secure_urlimport tests";', f"auth_basic_user_file {htpasswd};"]
    if client_ca is not None:
        checks += [f"ssl_client_certificate {client_ca};", "ssl_verify_client on;"]
    lines = "\n        ".join(checks)
    return f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name 127.0.0.1 localhost;
        ssl_certificate {certfile};
        ssl_certificate_key {keyfile};
        root {root};
        {lines}
        {extra}
        location / {{
            try_files $uri =404;
        }}
    }}
"""


def _config(directory: Path, server: str) -> str:
    temp = {
        kind: directory / f"{kind}_temp"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    }
    for path in temp.values():
        path.mkdir(exist_ok=True)
    return f"""
{_user_line()}
worker_processes 1;
daemon off;
master_process on;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{
    worker_connections 128;
}}
http {{
    log_format tests '$remote_addr "$request" $status auth="$http_authorization" '
                     'proxy_auth="$http_proxy_authorization" client="$ssl_client_s_dn"';
    access_log {directory}/access.log tests;
    log_format sizes '"$request" $status $body_bytes_sent $bytes_sent';
    access_log {directory}/sizes.log sizes;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    types {{
        text/plain py txt manifest;
        application/json json;
    }}
    default_type application/octet-stream;
    server_tokens off;
{server}
}}
"""


def _accepts_tls(port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock,
            context.wrap_socket(sock, server_hostname="127.0.0.1"),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def start_nginx(
    nginx: str,
    directory: Path,
    root: Path | None = None,
    *,
    certfile: str,
    keyfile: str,
    bearer: str | None = None,
    basic: dict[str, str] | None = None,
    client_ca: str | None = None,
    extra: str = "",
    server_template: str | None = None,
) -> Nginx:
    """Start nginx on 127.0.0.1 with a free port, serving *root* over TLS.

    - *bearer*: answer 401 unless ``Authorization: Bearer <bearer>`` is sent.
    - *basic*: ``{user: password}`` for HTTP basic authentication.
    - *client_ca*: PEM CA file; require a client certificate it signed (mutual TLS).
    - *extra*: more directives for the server block (e.g. a redirecting location).
    - *server_template*: a whole ``server { ... }`` block to use instead, with
      ``{port}`` replaced (``str.replace``, so nginx's own braces stay as they are).

    Returns once nginx completes TLS handshakes; raises :class:`NginxError`
    with nginx's logs if it does not start.
    """
    directory.mkdir(parents=True, exist_ok=True)
    failure = ""
    for _attempt in range(_ATTEMPTS):
        port = free_port()
        if server_template is not None:
            server = server_template.replace("{port}", str(port))
        else:
            assert root is not None
            server = _server_block(
                port,
                root,
                certfile,
                keyfile,
                directory,
                bearer=bearer,
                basic=basic,
                client_ca=client_ca,
                extra=extra,
            )
        text = _config(directory, server)
        config = directory / "nginx.conf"
        config.write_text(text)
        for log in ("error.log", "access.log", "stderr.log"):
            (directory / log).unlink(missing_ok=True)
        with open(directory / "stderr.log", "wb") as stderr:
            process = subprocess.Popen(
                [
                    nginx,
                    "-p",
                    str(directory),
                    "-c",
                    str(config),
                    "-e",
                    str(directory / "error.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        server_ = Nginx(process, port, directory, text)
        deadline = time.monotonic() + _READY_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if _accepts_tls(port):
                return server_
            time.sleep(0.05)
        server_.stop()
        failure = server_.logs()
        if "Address already in use" not in failure:
            break  # a real problem, not a lost race for the port
    raise NginxError(
        f"nginx did not start (exit code {process.returncode}); "
        f"config {directory / 'nginx.conf'}:\n{text}\n{failure}"
    )
