"""Container monitor: holds a container's stdio, writes its CRI log, records its exit.

Run as a standalone script (``python -I -S shim.py key=value ...``) by the OCI runtime
for every container. It imports only builtin modules on the way to a running container
(``json`` alone would add ~10 ms through ``re`` and ``enum``): arguments are
``key=value`` words and the few JSON documents it writes are formatted by hand.

1. it forks and the parent exits at once (the agent only waits for that), the child
   calls ``setsid`` and becomes a child subreaper, so it outlives the agent and the
   container's init is reparented to it when ``runc create`` exits;
2. it runs ``runc create`` with the container's stdout/stderr on pipes it keeps (or,
   for a tty, receives the pty master through ``--console-socket``);
3. it reports ``{"pid": N, "shim": M}`` or ``{"error": "..."}`` as one JSON line on its stdout
   (the agent's pipe) and closes it;
4. it copies the container's output into the log file in the CRI format the kubelet
   and ``kubectl logs`` read: ``2024-01-02T03:04:05.123456789Z stdout F text``
   (``P`` for a partial line: a chunk longer than 16 KiB without a newline);
5. when the output ends it reaps the container's init, reads the cgroup's OOM-kill
   counter, and writes ``exit.json`` atomically: exit code (128+signal when killed),
   finish time, whether the kernel OOM killer struck.

Attach (as conmon's attach socket): the shim serves ``attach_socket`` (a unix socket in
the bundle) while the container's output is open. Every message either way is a frame
``[kind: 1 byte][length: 4 bytes big-endian][payload]``. To an attacher it sends the
container's output, kind 1 stdout, 2 stderr (a tty's output is all stdout). From an
attacher it takes kind 0 stdin bytes, kind 1 a terminal resize (width, height: 2 bytes
each, applied with ``TIOCSWINSZ`` on the pty master) and kind 2 end of stdin. A
container gets a stdin pipe (a tty's stdin is its pty) only with ``stdin=1``; with
``stdin_once=1`` the pipe is closed when the first attacher that wrote stdin ends it,
otherwise stdin stays open for the next attacher, as upstream's ``stdinOnce`` says.
Output written while nobody is attached only reaches the log.

Why not Debian's conmon (2.1.6, tried here): it daemonizes and returns before
``runc create`` has finished, so a caller must speak its ``_OCI_SYNCPIPE`` protocol to
learn the pid or the error (a ``runc start`` issued on its return fails with "container
does not exist"; a first attempt at the sync pipe hung without a message); its cgroup v1
OOM reporting needs its own event loop; and this machine denies it the
``oom_score_adj`` write it attempts. It did record the exit code once driven correctly.
This shim is ~200 lines we control, writes ``Z`` timestamps, and costs one Python start
(~15 ms with builtin modules only) per container; the whole container create is
~50 ms median, of which ``runc create`` is ~30 ms. conmon was not benchmarked.
"""

import os
import select
import sys
import time

MAX_LINE = 16 * 1024


def main() -> None:
    conf = dict(arg.split("=", 1) for arg in sys.argv[1:])
    if os.fork() != 0:
        os._exit(0)
    os.setsid()
    _set_subreaper()
    # the sockets are bound by names relative to the bundle (runc, too, runs there):
    # a unix socket path is limited to 108 bytes, which a deep state dir exceeds
    os.chdir(conf["bundle"])
    try:
        pid, streams, stdin = _create(conf)
        listener = _listen(os.path.relpath(conf["attach_socket"]))
    except Exception as e:  # any failure must reach the agent, not a lost stderr
        import json

        _report(json.dumps({"error": str(e)}))
        os._exit(1)
    _report(f'{{"pid": {pid}, "shim": {os.getpid()}}}')
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    _Copier(conf, streams, stdin, listener).run()
    try:
        os.unlink(conf["attach_socket"])
    except OSError:  # the bundle is already being removed
        pass
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        code, signal = 128 + os.WTERMSIG(status), os.WTERMSIG(status)
    else:
        code, signal = os.WEXITSTATUS(status), 0
    oom = "true" if _oom_kills(conf.get("oom_control", "")) > 0 else "false"
    record = (
        f'{{"exitCode": {code}, "signal": {signal}, "finishedAt": {time.time()!r}, '
        f'"oomKilled": {oom}}}'
    )
    tmp = conf["exit_file"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(record)
    os.rename(tmp, conf["exit_file"])


def _set_subreaper() -> None:
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _report(message: str) -> None:
    os.write(1, (message + "\n").encode())
    os.close(1)


def _create(conf: dict) -> tuple[int, dict[int, str], int]:
    """Run ``runc create``; return the container pid, its output fds by stream name and
    the fd its stdin is written to (-1 without stdin)."""
    argv = [
        conf["runc"],
        "--root",
        conf["runc_root"],
        "--log",
        conf["runc_log"],
        "--log-format",
        "json",
        "create",
        "--bundle",
        conf["bundle"],
        "--pid-file",
        conf["pid_file"],
    ]
    devnull = os.open(os.devnull, os.O_RDWR)
    streams: dict[int, str] = {}
    listener = None
    stdin = -1
    if conf["tty"] == "1":
        import socket

        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console = os.path.relpath(conf["console_socket"])
        listener.bind(console)
        listener.listen(1)
        argv += ["--console-socket", console]
        stdio = [devnull, devnull, devnull]
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        streams = {out_r: "stdout", err_r: "stderr"}
        stdio = [devnull, out_w, err_w]
        if conf.get("stdin") == "1":
            stdio[0], stdin = os.pipe()
    argv.append(conf["id"])
    actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)]
    runc = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    if listener is not None:
        master = _receive_console(listener, runc)
        streams = {master: "stdout"}
        if conf.get("stdin") == "1":
            stdin = master
    _, status = os.waitpid(runc, 0)
    for fd in set(stdio):
        os.close(fd)
    if status != 0:
        raise RuntimeError(_runc_error(conf["runc_log"]) or f"runc create: status {status}")
    with open(conf["pid_file"]) as f:
        return int(f.read().strip()), streams, stdin


def _listen(path: str):  # noqa: ANN202 (socket imported lazily)
    import socket

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    return listener


def _receive_console(listener, runc: int) -> int:  # noqa: ANN001 (socket imported lazily)
    """Accept runc's connection on the console socket and take the pty master fd."""
    import array
    import socket

    listener.settimeout(0.05)
    while True:
        try:
            conn, _ = listener.accept()
            break
        except TimeoutError:
            if os.waitpid(runc, os.WNOHANG)[0] != 0:
                raise RuntimeError("runc exited before sending the console") from None
    fds = array.array("i")
    _, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    conn.close()
    listener.close()
    if not fds:
        raise RuntimeError("no console fd received")
    return fds[0]


def _runc_error(log_path: str) -> str:
    """The last error runc logged (its --log file is JSON lines)."""
    import json

    message = ""
    try:
        with open(log_path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") in ("error", "fatal"):
                    message = entry.get("msg", "")
    except OSError:
        pass
    return message


class _Copier:
    """The poll loop: container output to the log and attachers, attachers to stdin."""

    def __init__(self, conf: dict, streams: dict[int, str], stdin: int, listener) -> None:  # noqa: ANN001
        self.log = os.open(conf["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self.streams = streams
        self.tty = conf["tty"] == "1"
        self.stdin_once = conf.get("stdin_once") == "1"
        self.stdin = stdin
        self.stdin_buf = b""
        self.close_stdin = False
        if stdin >= 0 and stdin not in streams:
            os.set_blocking(stdin, False)
        self.listener = listener
        self.clients: dict[int, list] = {}  # fd -> [socket, unparsed input, wrote stdin]
        self.poller = select.poll()
        self.poller.register(listener.fileno(), select.POLLIN)

    def run(self) -> None:
        pending = {fd: b"" for fd in self.streams}
        for fd in self.streams:
            self.poller.register(fd, select.POLLIN)
        while pending:
            timeout = 10 if self.stdin_buf else None
            for fd, _ in self.poller.poll(timeout):
                if fd == self.listener.fileno():
                    self._accept()
                elif fd in self.clients:
                    self._from_client(fd)
                elif fd in pending:
                    self._output(fd, pending)
            self._flush_stdin()
        for conn, _, _ in self.clients.values():
            conn.close()
        self.listener.close()
        os.close(self.log)

    def _output(self, fd: int, pending: dict[int, bytes]) -> None:
        stream = self.streams[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO from a pty master once the container side is gone
            data = b""
        if not data:
            if pending[fd]:
                _write(self.log, stream, b"F", pending[fd])
            del pending[fd]
            self.poller.unregister(fd)
            if fd == self.stdin:
                self.stdin = -1
            os.close(fd)
            return
        self._broadcast(1 if stream == "stdout" else 2, data)
        buf = pending[fd] + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            _write(self.log, stream, b"F", line.rstrip(b"\r"))
        while len(rest) > MAX_LINE:
            _write(self.log, stream, b"P", rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        pending[fd] = rest

    def _broadcast(self, kind: int, data: bytes) -> None:
        frame = bytes([kind]) + len(data).to_bytes(4, "big") + data
        for fd, (conn, _, _) in list(self.clients.items()):
            try:
                conn.sendall(frame)
            except OSError:  # gone, or too slow to keep up (send timeout): drop it
                self._drop(fd)

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(5.0)
        self.clients[conn.fileno()] = [conn, b"", False]
        self.poller.register(conn.fileno(), select.POLLIN)

    def _from_client(self, fd: int) -> None:
        client = self.clients[fd]
        try:
            data = client[0].recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        buf = client[1] + data
        while len(buf) >= 5:
            size = int.from_bytes(buf[1:5], "big")
            if len(buf) < 5 + size:
                break
            kind, payload, buf = buf[0], buf[5 : 5 + size], buf[5 + size :]
            if kind == 0 and self.stdin >= 0 and not self.close_stdin:
                self.stdin_buf += payload
                client[2] = True
            elif kind == 1 and self.tty and len(payload) == 4:
                self._resize(int.from_bytes(payload[:2], "big"), int.from_bytes(payload[2:], "big"))
            elif kind == 2:
                self._end_stdin()
        client[1] = buf

    def _drop(self, fd: int) -> None:
        conn, _, wrote_stdin = self.clients.pop(fd)
        self.poller.unregister(fd)
        conn.close()
        if wrote_stdin:
            self._end_stdin()

    def _end_stdin(self) -> None:
        # a tty's stdin is its pty: closing the master would hang the terminal up
        if self.stdin_once and not self.tty:
            self.close_stdin = True

    def _resize(self, width: int, height: int) -> None:
        import fcntl
        import termios

        master = next(iter(self.streams))
        size = height.to_bytes(2, sys.byteorder) + width.to_bytes(2, sys.byteorder) + bytes(4)
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        except OSError:  # the pty is gone with the container
            pass

    def _flush_stdin(self) -> None:
        if self.stdin < 0:
            return
        while self.stdin_buf:
            try:
                self.stdin_buf = self.stdin_buf[os.write(self.stdin, self.stdin_buf) :]
            except BlockingIOError:
                return
            except OSError:  # the container closed its end
                self.stdin_buf = b""
        if self.close_stdin and self.stdin not in self.streams:
            os.close(self.stdin)
            self.stdin = -1


def _write(log: int, stream: str, tag: bytes, text: bytes) -> None:
    ns = time.time_ns()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    prefix = f"{stamp}.{ns % 1_000_000_000:09d}Z {stream} ".encode()
    os.write(log, prefix + tag + b" " + text + b"\n")


def _oom_kills(oom_control: str) -> int:
    try:
        with open(oom_control) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


if __name__ == "__main__":
    main()
