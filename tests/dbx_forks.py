"""A fork server for `dbx` in the tests: each run is a process of its own, without the start-up.

Most of a short `dbx` command's 0.3-0.4 s is the interpreter starting and importing aiohttp (whose
import builds a verified SSL context from the system's CA bundle: 70 ms alone), and the suite runs
the command some hundreds of times. This server, one per test process, imports the client once and
forks a child for every run: a real process with its own argv, environment, working directory and
standard streams (the caller's pipes, passed over a unix socket), whose exit status comes back as
the command's. What it does not exercise is the console script's two-line wrapper and the
interpreter's start-up; tests that send signals (`Dbx.start`) run the installed script itself, and
tests/test_client_units.py checks that both ways answer alike.

The server is single-threaded (forking a process with threads is unsafe), waits on its children
with pidfds, and exits when the test process that started it closes its stdin (or dies).
"""
from __future__ import annotations

import asyncio
import atexit
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

MESSAGE = 1 << 20  # an environment of some KiB fits many times over; SEQPACKET keeps messages whole


# -- the server ---------------------------------------------------------------------------------


def serve(path: str) -> None:
    import client.cli  # noqa: F401 - what every run would import again
    import client.api  # noqa: F401
    import aiohttp  # noqa: F401

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of pytest is for pytest; stdin's end stops us
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin, selectors.EVENT_READ, "parent")
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "parent":
                return  # our test process closed its end: it is done or gone
            if key.data == "accept":
                conn, _ = listener.accept()
                pid = fork_run(conn, listener)
                if pid:
                    selector.register(os.pidfd_open(pid), selectors.EVENT_READ, (pid, conn))
                continue
            pid, conn = key.data
            selector.unregister(key.fd)
            os.close(key.fd)
            _, status = os.waitpid(pid, 0)
            try:
                conn.send(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode())
            except OSError:
                pass  # the caller gave up on this run (it timed out and killed it)
            conn.close()


def fork_run(conn: socket.socket, listener: socket.socket) -> int | None:
    """Start one run; its pid goes back to the caller (who may signal it)."""
    message, fds, _, _ = socket.recv_fds(conn, MESSAGE, 3)
    request = json.loads(message)
    pid = os.fork()
    if pid == 0:
        listener.close()
        conn.close()
        run_child(request, fds)  # does not return
    for fd in fds:
        os.close(fd)
    try:
        conn.send(json.dumps({"pid": pid}).encode())
    except OSError:
        pass
    return pid


def run_child(request: dict, fds: list[int]) -> None:
    """The child: the caller's streams, environment and directory, then what the console script does."""
    code = 1
    try:
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
        os.closerange(3, 1024)  # the server's sockets, pidfds and selector are none of the command's
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["dbx", *request["args"]]
        import random

        random.seed()  # a fork shares its parent's state; a new interpreter would not
        code = exit_code(request["args"])
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def exit_code(args: list[str]) -> int:
    """What ``sys.exit(main())`` makes of main's result or exception, as the interpreter would."""
    from client.cli import main

    try:
        result: object = main(args)
    except SystemExit as exc:
        result = exc.code
    except BaseException:  # noqa: BLE001 - an uncaught exception: the interpreter prints it and exits 1
        traceback.print_exc()
        return 1
    if result is None:
        return 0
    if isinstance(result, int):
        return result & 0xFF
    print(result, file=sys.stderr)
    return 1


# -- the caller ---------------------------------------------------------------------------------


class Server:
    """The fork server of this test process, started on first use."""

    _path: str | None = None

    @classmethod
    def path(cls, env: dict[str, str]) -> str:
        if cls._path is None:
            directory = tempfile.mkdtemp(prefix="dbx-forks-")
            path = os.path.join(directory, "socket")
            process = subprocess.Popen(  # noqa: S603 - our own module, by the running interpreter
                [sys.executable, "-m", "tests.dbx_forks", path],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                cwd=str(Path(__file__).resolve().parent.parent),
            )
            assert process.stdout is not None and process.stdout.readline() == b"ready\n", "the dbx fork server did not start"
            atexit.register(process.wait, 10)
            atexit.register(process.stdin.close)  # type: ignore[union-attr]  # first (atexit runs in reverse)
            cls._path = path
        return cls._path


async def run(args: tuple[str, ...], env: dict[str, str], cwd: str, stdin: bytes | None,
              timeout: float) -> tuple[int, bytes, bytes]:
    """Run ``dbx ARGS`` in a forked child; its exit code, stdout and stderr."""
    loop = asyncio.get_running_loop()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(Server.path(env))
        request = {"args": list(args), "env": env, "cwd": cwd}
        socket.send_fds(sock, [json.dumps(request).encode()], [in_r, out_w, err_w])
    except BaseException:
        for fd in (in_w, out_r, err_r):  # our ends too: no run will use them
            os.close(fd)
        sock.close()
        raise
    finally:
        for fd in (in_r, out_w, err_w):  # the child's ends: it has its own copies now
            os.close(fd)
    sock.setblocking(False)
    pid = json.loads(await loop.sock_recv(sock, 4096))["pid"]
    out = asyncio.ensure_future(read_all(out_r))
    err = asyncio.ensure_future(read_all(err_r))
    await loop.run_in_executor(None, feed, in_w, stdin or b"")
    try:
        async with asyncio.timeout(timeout):
            answer = await loop.sock_recv(sock, 4096)
            stdout, stderr = await out, await err
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        answer = await loop.sock_recv(sock, 4096)
        stdout, stderr = await out, await err
        raise AssertionError(f"dbx {' '.join(args)} did not finish in {timeout}s:\n{stderr.decode()[-3000:]}") from None
    finally:
        sock.close()
    return json.loads(answer)["status"], stdout, stderr


def feed(fd: int, data: bytes) -> None:
    """Write the command's stdin and close it (a thread: a pipe's buffer holds only 64 KiB)."""
    try:
        with open(fd, "wb") as pipe:
            pipe.write(data)
    except BrokenPipeError:
        pass  # the command did not read it all


async def read_all(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), open(fd, "rb", 0))  # noqa: SIM115
    try:
        return await reader.read()
    finally:
        transport.close()


if __name__ == "__main__":
    serve(sys.argv[1])
