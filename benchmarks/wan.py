"""The WAN run: the scaling suite over a link with 40 ms round trip and 50 Mbit/s.

The kernel has no ``netem``, so the link is made of two parts, both inside a
network namespace of the benchmark's own (``unshare -n``; the machine's loopback
is never touched):

- **rate**: ``tc qdisc add dev lo root tbf rate 50mbit burst 32kbit latency 400ms``
  on the namespace's loopback, whose MTU is set to 1500 first (tbf drops any
  packet larger than its burst, and loopback's 64 KiB packets always are);
- **latency**: :class:`DelayRelay`, a TCP relay that holds every chunk 20 ms in
  each direction (+40 ms round trip) and each new connection's first bytes one
  round trip more (the TCP handshake a real link would cost; the relay's own
  handshake is local). It forwards to nginx's unix socket, so the relay-to-nginx
  leg is neither shaped nor delayed.

The outer benchmark re-runs itself as ``unshare -n bench.py --wan-inner``;
:func:`inner` sets the namespace up, checks the link (:func:`measure_link`) and
runs the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import shutil
import ssl
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .common import BenchError, Workspace, log
from .scaling import Link, Results, Suite
from .scaling_trees import Trees
from .servers import logging_nginx

RTT = 0.040
RATE = "50mbit"
TBF = ("tbf", "rate", RATE, "burst", "32kbit", "latency", "400ms")
MTU = "1500"
CHUNK = 65536
PROBE_FILE = "probe-5mb.bin"
PROBE_BYTES = 5 * 1000 * 1000


def shaping_commands() -> list[list[str]]:
    return [
        ["ip", "link", "set", "lo", "mtu", MTU, "up"],
        ["tc", "qdisc", "add", "dev", "lo", "root", *TBF],
    ]


def unavailable() -> str | None:
    """Why the WAN run cannot run here (None: it can): tries the namespace and tbf."""
    missing = [tool for tool in ("unshare", "ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found"
    script = " && ".join(" ".join(command) for command in shaping_commands())
    try:
        result = subprocess.run(  # noqa: S603
            ["unshare", "-n", "sh", "-c", script],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -n failed: {exc}"
    if result.returncode != 0:
        return f"`unshare -n sh -c '{script}'` failed: {result.stderr.strip() or result.returncode}"
    return None


def shape_namespace() -> None:
    """Inside the namespace: loopback up, MTU 1500, tbf at 50 Mbit/s."""
    for command in shaping_commands():
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise BenchError(f"{' '.join(command)}: {result.stderr.strip()}")


# -- the delaying relay ---------------------------------------------------------------


class DelayRelay:
    """Accepts on 127.0.0.1, forwards to a unix socket, each way *delay* later."""

    def __init__(self, target: Path, delay: float = RTT / 2, connect_delay: float = RTT) -> None:
        self.target = target
        self.delay = delay
        self.connect_delay = connect_delay
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.port = 0

    def start(self) -> int:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self.loop)
        self.port = future.result(timeout=10)
        return self.port

    async def _listen(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(self.connect_delay)  # the handshake round trip
            server_r, server_w = await asyncio.open_unix_connection(str(self.target))
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (client_w, server_w):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy until EOF; each chunk is written *delay* after it was read, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=512)

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + self.delay, data))
                if not data:
                    break
            await delivering
        except BaseException:
            delivering.cancel()
            raise


# -- checking the link ----------------------------------------------------------------


@dataclass(frozen=True)
class LinkCheck:
    rtt_ms: float  # one small GET on an open connection
    connect_ms: float  # TCP connect + TLS handshake + the first small GET
    mbit_s: float  # a 5 MB download on an open connection (body bytes)

    def in_range(self) -> bool:
        """Close to the link asked for: 40 ms (+ a little processing) and 50 Mbit/s
        (TCP/IP headers take ~5 % of tbf's rate)."""
        return RTT * 1e3 <= self.rtt_ms <= RTT * 1e3 * 1.5 and 40.0 <= self.mbit_s <= 52.0

    def describe(self) -> str:
        verdict = "" if self.in_range() else " (NOT the link asked for: the numbers below are off)"
        return (
            f"link measured through the relay{verdict}: small GET on an open connection "
            f"{self.rtt_ms:.1f} ms (RTT), new connection + TLS + GET {self.connect_ms:.1f} ms, "
            f"5 MB download {self.mbit_s:.1f} Mbit/s"
        )


def measure_link(port: int, cafile: Path, probe_url_path: str, rounds: int = 5) -> LinkCheck:
    """Time requests through the relay at 127.0.0.1:*port* (medians of *rounds*)."""
    context = ssl.create_default_context(cafile=str(cafile))
    rtts, connects, rates = [], [], []
    for _ in range(rounds):
        started = time.perf_counter()
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=60)
        try:
            connection.request("GET", "/__bench_mark__/link")
            connection.getresponse().read()
            connects.append(time.perf_counter() - started)
            started = time.perf_counter()
            connection.request("GET", "/__bench_mark__/link")
            connection.getresponse().read()
            rtts.append(time.perf_counter() - started)
            started = time.perf_counter()
            connection.request("GET", probe_url_path)
            body = connection.getresponse().read()
            rates.append(len(body) * 8 / (time.perf_counter() - started) / 1e6)
        finally:
            connection.close()
    return LinkCheck(
        statistics.median(rtts) * 1e3, statistics.median(connects) * 1e3, statistics.median(rates)
    )


def write_probe(www: Path) -> str:
    probe = www / PROBE_FILE
    if not probe.exists() or probe.stat().st_size != PROBE_BYTES:
        probe.write_bytes(bytes(PROBE_BYTES))
    return "/" + PROBE_FILE


def check_own_namespace() -> None:
    """Refuse to shape a loopback that is not our own namespace's (never the machine's)."""
    try:  # the outer benchmark, whose namespace is the machine's (unshare exec'd us)
        ours = os.readlink("/proc/self/ns/net")
        others = {os.readlink(f"/proc/{os.getppid()}/ns/net")}
    except OSError as exc:
        raise BenchError(f"cannot tell which network namespace this is: {exc}") from exc
    with contextlib.suppress(OSError):  # init's, where readable
        others.add(os.readlink("/proc/1/ns/net"))
    if ours in others:
        raise BenchError("--wan-inner runs only in a network namespace of its own (unshare -n)")


def header_line(check: LinkCheck) -> str:
    return (
        f"WAN: {RATE} tbf + {RTT * 1e3:.0f} ms RTT relay in a network namespace; "
        + check.describe()
    )


def inner(ws: Workspace, trees: Trees, sizes: Sequence[int], repeat: int) -> tuple[str, Results]:
    """In the namespace: shape it, start nginx and the relay, check the link, run the suite."""
    check_own_namespace()
    shape_namespace()
    probe = write_probe(trees.www)
    socket_path = ws.root / "nginx.sock"
    with logging_nginx(
        ws.root / "nginx-wan",
        trees.www,
        certfile=ws.certfile,
        keyfile=ws.keyfile,
        cafile=ws.cafile,
        unix_socket=socket_path,
    ) as server:
        relay = DelayRelay(socket_path)
        port = relay.start()
        try:
            check = measure_link(port, ws.cafile, probe)
            log.info("wan: %s", check.describe())
            link = Link(f"https://127.0.0.1:{port}", header_line(check))
            results = Suite(ws, trees, server, link, sizes).run(repeat)
        finally:
            relay.stop()
    return f"{server.description}; {link.description}", results
