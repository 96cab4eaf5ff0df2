"""Running test programs in fresh interpreters: several devices or processes need XLA flags
or a `jax.distributed` job set up before JAX starts, which this process has already done."""

import socket
import subprocess
import sys


def free_port() -> int:
    """A free TCP port on loopback (for a `jax.distributed` coordinator)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_all(commands: list[list[str]], *, env=None, cwd=None, timeout: int = 600) -> None:
    """Start every command at once (the processes of one job wait for each other), wait for
    all, and fail with the tail of the log of any that did not exit 0."""
    procs = [subprocess.Popen(cmd, env=None if env is None else env[i], cwd=cwd, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i, cmd in enumerate(commands)]
    try:
        logs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-3000:]


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
