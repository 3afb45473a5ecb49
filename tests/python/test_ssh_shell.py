"""An interactive shell through stock OpenSSH `ssh -tt`, on a real terminal.

The ssh client runs on a pseudo-terminal this test holds, as it does for a
person: typed commands run in the node's shell, a window change of the
local terminal reaches the remote PTY, and Ctrl-C interrupts the remote
foreground command without ending the session (issue #16).
"""

import base64
import fcntl
import os
import pathlib
import pty
import select
import signal
import struct
import subprocess
import tempfile
import termios
import time

import pytest

from conftest import Node, _binary


def _read_until(fd: int, wanted: bytes, seen: bytearray, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{wanted!r} not seen in {bytes(seen)!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                raise AssertionError(f"terminal closed before {wanted!r}: {bytes(seen)!r}")
            if not chunk:
                raise AssertionError(f"terminal closed before {wanted!r}: {bytes(seen)!r}")
            seen.extend(chunk)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.fixture
def ssh_node():
    node = Node('[ssh]\nlisten = "127.0.0.1:0"\n')
    yield node
    node.stop()


def _plain_port(node: Node) -> int:
    # The banner line: "ssh: alknet/ssh, plain SSH on 127.0.0.1:PORT; host key …"
    for line in node.banner:
        if "plain SSH on " in line:
            return int(line.split("plain SSH on ")[1].split(";")[0].rsplit(":", 1)[1])
    raise AssertionError(f"no plain SSH address in {node.banner}")


def test_a_typed_command_a_window_change_and_ctrl_c_reach_the_remote_shell(ssh_node):
    node = ssh_node
    data = pathlib.Path(node.dir.name)
    client = tempfile.TemporaryDirectory()
    key = pathlib.Path(client.name) / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    blob = base64.b64decode((key.with_suffix(".pub")).read_text().split()[1])
    fingerprint = "ed25519:" + blob[-32:].hex()
    subprocess.run(
        [_binary(), "peer", "add", fingerprint, "--id", "alice", "--scopes", "ssh:shell",
         "--data-dir", str(data)],
        check=True, capture_output=True,
    )
    host_key = (data / "ssh_host_ed25519_key.pub").read_text().strip()
    known = pathlib.Path(client.name) / "known_hosts"
    known.write_text(f"alknet-test {host_key}\n")

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("ssh", [
            "ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known}", "-o", "HostKeyAlias=alknet-test",
            "-o", "LogLevel=ERROR", "-p", str(_plain_port(node)), "-tt", "127.0.0.1",
            "env PS1='$ ' sh -i",
        ])
    seen = bytearray()
    try:
        _set_size(fd, 24, 80)
        os.write(fd, b"echo sum=$((6*7))\r")
        _read_until(fd, b"sum=42", seen)

        # The local terminal grows; ssh learns it from SIGWINCH and sends a
        # window change, which the remote PTY takes.
        _set_size(fd, 50, 132)
        os.kill(pid, signal.SIGWINCH)
        deadline = time.monotonic() + 20
        while True:
            seen.clear()
            os.write(fd, b"stty size\r")
            try:
                _read_until(fd, b"\n", seen, timeout=5)
                _read_until(fd, b"$ ", seen, timeout=5)
            except AssertionError:
                pass
            if b"50 132" in seen:
                break
            assert time.monotonic() < deadline, f"no window change: {bytes(seen)!r}"

        # Ctrl-C interrupts the remote foreground command, not the session.
        seen.clear()
        # The marker is computed so that the terminal's echo of the typed line
        # does not contain it: it appears once the command list runs.
        os.write(fd, b"echo st$((1+1))rted; sleep 30; echo not-$((0))interrupted\r")
        _read_until(fd, b"st2rted", seen)
        os.write(fd, b"\x03")
        os.write(fd, b"echo after=$((1+1))\r")
        _read_until(fd, b"after=2", seen, timeout=10)
        assert b"not-0interrupted" not in seen

        os.write(fd, b"exit 7\r")
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 7
        pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
        client.cleanup()
