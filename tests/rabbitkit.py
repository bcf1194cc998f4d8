"""RabbitMQ for the tests: a private vhost on the machine's node, or a node of the test's own.

`private_vhost()` adds a vhost `aml-test-<random>` to the RabbitMQ already answering on
127.0.0.1:5672 (with `rabbitmqctl add_vhost` and `set_permissions` for guest) and deletes it,
with everything in it, at the end; `rabbit_unavailable()` says why that cannot work here, for a
skip. `RabbitNode` starts a `rabbitmq-server` node of its own (its own node name, AMQP and
distribution ports, mnesia, log and config files and Erlang cookie, all under a temp dir) so a
test may stop and restart it; it stops only that node. Nothing here restarts, reconfigures or
stops the machine's node, and production code never imports this module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import free_port

HOST, PORT = "127.0.0.1", 5672
# Debian ships the real scripts here; /usr/sbin/rabbitmq-server is a wrapper that switches to
# the rabbitmq user and writes the machine node's startup log, which a test must not touch.
LIBEXEC = Path("/usr/lib/rabbitmq/bin")


def _tool(name: str) -> str | None:
    path = LIBEXEC / name
    return str(path) if path.exists() else shutil.which(name)


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def rabbitmqctl(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run `rabbitmqctl` (the machine's wrapper unless `env` says otherwise); its stdout."""
    exe = shutil.which("rabbitmqctl") if env is None else _tool("rabbitmqctl")
    if exe is None:
        raise RuntimeError("rabbitmqctl not found: install Debian's rabbitmq-server")
    done = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


def rabbit_unavailable() -> str | None:
    """Why a private vhost cannot be made here (None when it can)."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl not found (Debian's rabbitmq-server; .ci/run installs it)"
    if not _answers(HOST, PORT):
        return f"no RabbitMQ answers on {HOST}:{PORT} (.ci/run starts one)"
    return None


@contextlib.contextmanager
def private_vhost() -> Iterator[str]:
    """A vhost of this test's own on the machine's RabbitMQ; yields its amqp:// URL and
    deletes the vhost (queues, messages, exchanges) when the block ends."""
    name = f"aml-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{HOST}:{PORT}/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)


class RabbitNode:
    """A `rabbitmq-server` node of this test's own, on free ports, restartable with its data."""

    def __init__(self) -> None:
        server = _tool("rabbitmq-server")
        if server is None:
            raise RuntimeError("rabbitmq-server not found: install Debian's rabbitmq-server")
        self.server = server
        self.dir = Path(tempfile.mkdtemp(prefix="aml-rabbit-"))
        self.port = free_port()
        self.name = f"aml-test-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@{HOST}:{self.port}//"
        (self.dir / "home").mkdir()
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = {HOST}:{self.port}\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")  # not the machine's NODENAME
        self.env = {
            **os.environ,
            "HOME": str(self.dir / "home"),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),  # not NODE_PORT + 20000, which may be taken
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "node.pid"),
        }
        self.proc: subprocess.Popen | None = None
        self.started_in: list[float] = []  # seconds per start, for the report

    def start(self, timeout: float = 90) -> RabbitNode:
        """Start the node (same data as before) and wait until it takes AMQP connections."""
        began = time.monotonic()
        with open(self.dir / "node.log", "ab") as out:
            self.proc = subprocess.Popen(
                [self.server], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True,
            )  # fmt: skip
        while not _answers(HOST, self.port):
            if self.proc.poll() is not None or time.monotonic() - began > timeout:
                self.stop()
                raise RuntimeError(f"rabbitmq node did not start: {self.log_tail()}")
            time.sleep(0.2)
        self.started_in.append(time.monotonic() - began)
        return self

    def stop(self) -> None:
        """Stop this node only (`rabbitmqctl -n NODE stop`, then its pid if it lingers)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                rabbitmqctl("-n", self.name, "stop", env=self.env, timeout=60)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:  # its own session: the script and beam.smp
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
        self.proc = None

    def log_tail(self, n: int = 3000) -> str:
        path = self.dir / "node.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"

    def cleanup(self) -> None:
        """Stop the node and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
