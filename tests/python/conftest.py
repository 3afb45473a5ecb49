"""Fixtures: a real `alknet serve` on an ephemeral loopback port."""

import asyncio
import os
import pathlib
import signal
import subprocess
import tempfile
import threading
import queue

import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.events import ConnectionTerminated


def _binary() -> str:
    path = os.environ.get("ALKNET_BIN")
    if not path:
        pytest.fail("ALKNET_BIN must point at the alknet binary (tests/run sets it)")
    return path


class Node:
    def __init__(self, config: str):
        self.dir = tempfile.TemporaryDirectory()
        data = pathlib.Path(self.dir.name)
        (data / "alknet.toml").write_text(config)
        self.proc = subprocess.Popen(
            [_binary(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: [self.stderr.append(l) for l in self.proc.stderr], daemon=True).start()
        self.port = None
        self.node_id = None
        self.admin_token = None
        self.banner: list[str] = []
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"alknet serve did not start: {self.stderr}")
            self.banner.append(line)
            if line.startswith("listening on "):
                self.port = int(line.split()[2].rsplit(":", 1)[1])
            if line.startswith("admin token: "):
                self.admin_token = line.split()[2]
            if line.startswith("alknet node "):
                self.node_id = line.split()[2]
            if line.startswith("serving:"):
                break

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.dir.cleanup()


@pytest.fixture
def echo_node():
    node = Node("[diagnostics]\necho = true\n")
    yield node
    node.stop()


class Recorder(QuicConnectionProtocol):
    """An aioquic client protocol that remembers how its connection was
    terminated (the error code the node closed it with)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.terminated: asyncio.Future = asyncio.get_event_loop().create_future()

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated) and not self.terminated.done():
            self.terminated.set_result(event)
        super().quic_event_received(event)
