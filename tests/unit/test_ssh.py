# SPDX-License-Identifier: MIT
"""harness.ssh.session against real SSH servers on 127.0.0.1: OpenSSH's sshd, and dropbear if
present.

No VM: the servers run on the host as root with their own host keys and config in tmp dirs,
and the run key as the only authorized key. Every server is killed (with anything it forked)
at teardown, and the teardown checks that nothing is left.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.ssh.session import (
    CommandFailed,
    CommandTimeoutError,
    HostKeyMismatchError,
    RunKey,
    SshAuthError,
    SshNoAnswerError,
    SshSession,
    SshUnreachableError,
    SshWaitAbortedError,
    connect,
    fingerprint,
    generate_run_key,
    load_run_key,
    parse_host_key,
    wait_for_ssh,
)

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
DROPBEAR = Path("/usr/sbin/dropbear")
KINDS = ["openssh", "dropbear"]
START_TIMEOUT = 5.0

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs sshd and logs in as root")


# --- servers -------------------------------------------------------------------------------


# SIGKILL the server if the pytest thread that started it dies: a killed run leaks no server.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    kind: str
    port: int
    host_key_line: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    children = _children() if children is None else children
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# What a loaded 2-core machine may add to a wait the test bounds (far below the deadlines the
# code under test must not wait for).
SLACK_S = 10.0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_until(done: Callable[[], bool], seconds: float) -> None:
    limit = time.monotonic() + seconds
    while not done() and time.monotonic() < limit:
        time.sleep(0.02)


def _gone_checker(pids: list[int]) -> Callable[[], bool]:
    """True once every pid has been reaped (not even a zombie left)."""
    return lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids)


def stop_server(server: Server) -> None:
    """Kill the server and whatever it forked, by pid; then prove none of it is left."""
    root = server.process.pid
    seen = set(_descendants(root))
    # Sessions whose client has closed end by themselves; then kill leaves first, so that
    # every parent is alive to reap its child and no zombie is left for init.
    _wait_until(lambda: not _descendants(root), 0.5)
    limit = time.monotonic() + 5
    while time.monotonic() < limit:
        children = _children()
        forked = _descendants(root, children)
        if not forked:
            break
        seen.update(forked)
        leaves = [pid for pid in forked if not children.get(pid)]
        for pid in leaves:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_until(_gone_checker(leaves), 1)
    server.process.kill()
    server.process.wait(timeout=5)
    pids = [root, *seen]
    _wait_until(lambda: not any(_alive(pid) for pid in pids), 5)
    assert not [pid for pid in pids if _alive(pid)], f"{server.kind} processes survived"
    leftover = subprocess.run(
        ["pgrep", "-f", str(server.directory)], capture_output=True, text=True, check=False
    )
    assert leftover.stdout == "", f"{server.kind} processes left: {leftover.stdout}"


def _openssh_command(directory: Path, port: int, key: RunKey) -> tuple[list[str], str]:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "host_key")],
        check=True,
    )
    (directory / "authorized_keys").write_text(key.public_line + "\n")
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPidFile none\n"
        f"Subsystem sftp {SFTP_SERVER}\n"
    )
    # sshd insists on its privilege-separation directory even when it is not used.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key = (directory / "host_key.pub").read_text()
    return [str(SSHD), "-D", "-e", "-f", str(config)], host_key


def _dropbear_command(directory: Path, port: int, key: RunKey) -> tuple[list[str], str]:
    host_key_path = directory / "host_key"
    subprocess.run(
        ["dropbearkey", "-t", "ed25519", "-f", str(host_key_path)],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        ["dropbearkey", "-y", "-f", str(host_key_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    host_key = next(line for line in public.splitlines() if line.startswith("ssh-"))
    # dropbear reads only ~/.ssh/authorized_keys: give it a private /root in its own mount
    # namespace, so the host's root account is never touched.
    home = directory / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "authorized_keys").write_text(key.public_line + "\n")
    home.chmod(0o700)
    dropbear = f"{DROPBEAR} -F -E -s -p 127.0.0.1:{port} -r {host_key_path} -P {directory / 'pid'}"
    return ["unshare", "-m", "sh", "-c", f"mount --bind {home} /root && exec {dropbear}"], host_key


@dataclass(frozen=True)
class PreparedServer:
    """Keys and config written, not started yet: the host key is known before it listens."""

    kind: str
    directory: Path
    port: int
    command: list[str]
    host_key_line: str


def prepare_server(
    kind: str, directory: Path, key: RunKey, port: int | None = None
) -> PreparedServer:
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    build = _openssh_command if kind == "openssh" else _dropbear_command
    command, host_key = build(directory, port, key)
    return PreparedServer(kind, directory, port, command, host_key.strip())


def launch(prepared: PreparedServer) -> Server:
    """Start the server on 127.0.0.1 and wait until it accepts TCP connections."""
    with (prepared.directory / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*DIE_WITH_PARENT, *prepared.command],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    server = Server(
        prepared.kind, prepared.port, prepared.host_key_line, prepared.directory, process
    )
    limit = time.monotonic() + START_TIMEOUT
    while time.monotonic() < limit:
        if process.poll() is not None:
            pytest.fail(f"{server.kind} exited with {process.returncode}:\n{server.log}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.01)
    stop_server(server)
    pytest.fail(f"{server.kind} did not listen within {START_TIMEOUT} s:\n{server.log}")


def _dropbear_unusable() -> str | None:
    """Why dropbear cannot run here, or None."""
    if not DROPBEAR.exists() or shutil.which("dropbearkey") is None:
        return "dropbear is not installed (apt-get install dropbear-bin)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"unshare -m fails here (needed to give dropbear its own /root): {probe.stderr!r}"
    return None


def require(kind: str) -> None:
    if kind == "openssh":
        if not SSHD.exists() or not SFTP_SERVER.exists():
            pytest.fail("sshd is required: apt-get install openssh-server", pytrace=False)
    elif reason := _dropbear_unusable():
        pytest.skip(reason)


@pytest.fixture(scope="module")
def run_key(tmp_path_factory: pytest.TempPathFactory) -> RunKey:
    return generate_run_key(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module", params=KINDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, run_key: RunKey
) -> Iterator[Server]:
    kind: str = request.param
    require(kind)
    started = launch(prepare_server(kind, tmp_path_factory.mktemp(kind), run_key))
    yield started
    stop_server(started)


@pytest.fixture(scope="module")
def session(server: Server, run_key: RunKey) -> Iterator[SshSession]:
    """One session per server, shared like a guest's (each test leaves it usable)."""
    with connect(
        "127.0.0.1", server.port, identity=run_key, host_key=server.host_key_line, timeout=5
    ) as opened:
        yield opened


@pytest.fixture
def fresh_servers() -> Iterator[list[Server]]:
    """Servers a test starts itself (from the main thread); stopped after the test."""
    started: list[Server] = []
    yield started
    for each in started:
        stop_server(each)


# --- a stand-in for QEMU's hostfwd ---------------------------------------------------------


@dataclass
class FakeHostfwd:
    """Accepts TCP on 127.0.0.1 like QEMU's hostfwd, and forwards to `backend_port` once that
    accepts. Until then a connection is held open in silence (the guest's network is not up)
    or closed at once (the guest answered with a reset), as `silent` says."""

    backend_port: int
    silent: bool
    accepted: int = 0
    _listener: socket.socket = field(init=False)
    _sockets: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.02)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            self.accepted += 1
            self._sockets.append(client)
            try:
                backend = socket.create_connection(("127.0.0.1", self.backend_port))
            except OSError:
                if not self.silent:
                    client.close()
                continue
            self._sockets.append(backend)
            for source, sink in ((client, backend), (backend, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def hostfwd_factory() -> Iterator[Callable[[int, bool], FakeHostfwd]]:
    made: list[FakeHostfwd] = []

    def make(backend_port: int, silent: bool) -> FakeHostfwd:
        made.append(FakeHostfwd(backend_port, silent))
        return made[-1]

    yield make
    for each in made:
        each.close()


# --- keys ----------------------------------------------------------------------------------


def test_run_key_is_private_and_public_line_is_openssh(tmp_path: Path) -> None:
    key = generate_run_key(tmp_path / "run")
    assert key.private_path.stat().st_mode & 0o777 == 0o600
    assert re.fullmatch(r"ssh-ed25519 AAAA[A-Za-z0-9+/=]+ vfio-harness-run", key.public_line)
    assert key.public_path.read_text() == key.public_line + "\n"
    assert parse_host_key(key.public_line) == key.pkey
    # ssh-keygen reads the private key and agrees on the fingerprint.
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key.private_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert key.fingerprint in listed.stdout
    assert load_run_key(key.private_path).public_line == key.public_line


def test_run_key_refuses_overwrite_and_loose_modes(tmp_path: Path) -> None:
    key = generate_run_key(tmp_path)
    with pytest.raises(FileExistsError, match="load_run_key"):
        generate_run_key(tmp_path)
    key.private_path.chmod(0o644)
    with pytest.raises(PermissionError, match=r"0644.*0600"):
        load_run_key(key.private_path)


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("ssh-ed25519", "want 'type base64'"),
        ("ssh-ed25519 !!!", "bad base64"),
        ("ssh-foo AAAAB3NzaC1yc2E=", "cannot read ssh-foo"),
    ],
)
def test_parse_host_key_rejects_garbage(line: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_host_key(line)


# --- commands ------------------------------------------------------------------------------


def test_run_returns_status_and_output(session: SshSession) -> None:
    result = session.run("echo out; echo err >&2")
    assert (result.exit_status, result.stdout, result.stderr) == (0, "out\n", "err\n")
    assert result.duration > 0
    assert session.run("exit 3", check=False).exit_status == 3


def test_run_quotes_lists_and_exports_env(session: SshSession) -> None:
    assert session.run(["printf", "%s\\n", "a b", "$HOME"]).stdout == "a b\n$HOME\n"
    value = "it's a $value"
    assert session.run('echo "$FOO"; sh -c \'echo "$FOO"\'', env={"FOO": value}).stdout == (
        f"{value}\n{value}\n"
    )
    with pytest.raises(ValueError, match="not a valid environment variable name"):
        session.run("true", env={"A-B": "x"})


def test_run_streams_output_in_order(session: SshSession) -> None:
    events: list[tuple[str, str, float]] = []
    result = session.run(
        "echo a; sleep 0.1; echo b >&2; sleep 0.1; echo c",
        on_output=lambda stream, text: events.append((stream, text, time.monotonic())),
    )
    finished = time.monotonic()
    assert [(stream, text) for stream, text, _ in events] == [
        ("stdout", "a\n"),
        ("stderr", "b\n"),
        ("stdout", "c\n"),
    ]
    assert finished - events[0][2] > 0.15, "the first chunk came only at the end"
    assert (result.stdout, result.stderr) == ("a\nc\n", "b\n")


def test_run_feeds_stdin(session: SshSession) -> None:
    assert session.run("cat", stdin="hello\n").stdout == "hello\n"
    assert session.run("cat").stdout == "", "without stdin the command must see EOF"
    # More than the SSH windows hold in each direction at once: sending and reading interleave.
    big = secrets.token_hex(600_000).encode()
    assert session.run("cat", stdin=big, timeout=30).stdout.encode() == big
    # A command that ignores its stdin ends the run; the unsent rest is dropped.
    assert session.run("true", stdin=big).exit_status == 0


def test_failing_output_callback_kills_the_command(session: SshSession) -> None:
    token = secrets.token_hex(8)

    def explode(stream: str, text: str) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        session.run("echo go; sleep 30", env={"TEST_MARK": token}, on_output=explode)
    _wait_until(lambda: not _pids_mentioning(token.encode()), SLACK_S)
    assert _pids_mentioning(token.encode()) == []
    assert session.run("echo still usable").stdout == "still usable\n"


def _pids_mentioning(token: bytes) -> list[int]:
    """Live processes with `token` in their command line or environment."""
    pids = set()
    # Not Path.glob: it stats each match, and raises when a process exits meanwhile.
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                if token in Path("/proc", name, part).read_bytes():
                    pids.add(int(name))
            except OSError:  # gone, or not ours to read
                continue
    return sorted(pid for pid in pids if _alive(pid))


def test_run_timeout_kills_the_command(session: SshSession) -> None:
    token = secrets.token_hex(8)
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            seen.update(_pids_mentioning(token.encode()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        # 3 s: the shell has printed and forked long before, however loaded the machine.
        with pytest.raises(CommandTimeoutError, match=r"timed out after 3 s: .*sleep 30") as err:
            # The shell itself must die too, or it would go on to the second sleep.
            session.run(
                "echo started; sleep 30; sleep 30; echo never",
                timeout=3.0,
                env={"TEST_MARK": token},
            )
    finally:
        done.set()
        watcher.join()
    assert time.monotonic() - started < 3.0 + SLACK_S
    assert err.value.stdout == "started\n"
    assert len(seen) >= 2, "the shell and its sleep were never seen running"
    _wait_until(lambda: not _pids_mentioning(token.encode()), SLACK_S)
    assert _pids_mentioning(token.encode()) == [], "the timed-out command is still running"
    assert session.run("echo still usable").stdout == "still usable\n"


def test_nonzero_exit_raises_command_failed_with_stderr_tail(session: SshSession) -> None:
    with pytest.raises(CommandFailed) as caught:
        session.run("for i in $(seq 1 50); do echo line$i >&2; done; exit 7")
    message = str(caught.value)
    assert caught.value.exit_status == 7
    assert "exited with status 7" in message
    assert "exit 7" in message, "the message names the command"
    assert "line50" in message
    assert "line1\n" not in message, "only the tail of stderr belongs in the message"
    assert caught.value.stderr.startswith("line1\n")


# --- SFTP ----------------------------------------------------------------------------------


def test_sftp_round_trip_with_mode(session: SshSession, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    remote = str(tmp_path / "remote.bin")  # the server is this host: remote paths are local
    session.put(local, remote, mode=0o751)
    assert Path(remote).stat().st_mode & 0o777 == 0o751
    session.get(remote, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == payload

    text_path = str(tmp_path / "note.txt")
    session.write_text(text_path, "grüße\n", mode=0o600)
    assert Path(text_path).stat().st_mode & 0o777 == 0o600
    assert session.read_text(text_path) == "grüße\n"


def test_sftp_errors_name_the_path(session: SshSession, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError) as caught:
        session.get(missing, tmp_path / "x")
    assert any(missing in note for note in caught.value.__notes__)


def test_context_manager_closes(server: Server, run_key: RunKey) -> None:
    with connect(
        "127.0.0.1", server.port, identity=run_key, host_key=server.host_key_line, keepalive=0.5
    ) as opened:
        assert opened.is_active
        assert opened.run("echo alive").stdout == "alive\n"
    assert not opened.is_active


# --- host key pin and authentication -------------------------------------------------------


def test_other_host_key_is_rejected_naming_both_fingerprints(
    server: Server, run_key: RunKey, tmp_path: Path
) -> None:
    wrong = generate_run_key(tmp_path).public_line
    with pytest.raises(HostKeyMismatchError) as caught:
        connect("127.0.0.1", server.port, identity=run_key, host_key=wrong, timeout=5)
    message = str(caught.value)
    assert fingerprint(parse_host_key(wrong)) in message
    # The server's fingerprint as OpenSSH prints it.
    (tmp_path / "server.pub").write_text(server.host_key_line + "\n")
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(tmp_path / "server.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    server_fingerprint = listed.split()[1]
    assert server_fingerprint.startswith("SHA256:")
    assert server_fingerprint in message


def test_unknown_client_key_is_refused(server: Server, tmp_path: Path) -> None:
    stranger = generate_run_key(tmp_path)
    with pytest.raises(SshAuthError, match="refused the run key"):
        connect("127.0.0.1", server.port, identity=stranger, host_key=server.host_key_line)


# --- waiting for a booting guest -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("silent", [True, False], ids=["silent", "reset"])
def test_wait_for_ssh_keeps_probing_until_the_server_starts(
    kind: str,
    silent: bool,
    run_key: RunKey,
    tmp_path: Path,
    fresh_servers: list[Server],
    hostfwd_factory: Callable[[int, bool], FakeHostfwd],
) -> None:
    require(kind)
    prepared = prepare_server(kind, tmp_path / kind, run_key)
    hostfwd = hostfwd_factory(prepared.port, silent)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            wait_for_ssh,
            "127.0.0.1",
            hostfwd.port,
            time.monotonic() + 10,
            identity=run_key,
            host_key=prepared.host_key_line,
            first_probe_timeout=0.1,
            max_probe_timeout=0.2,
            max_pause=0.1,
        )
        time.sleep(0.4)
        assert not waiting.done(), f"wait_for_ssh ended early: {waiting.exception()}"
        # Started from this (main) thread: its parent-death signal is tied to the thread.
        fresh_servers.append(launch(prepared))
        with waiting.result(timeout=15) as guest:
            assert guest.run("echo up").stdout == "up\n"
    assert hostfwd.accepted >= 2, "wait_for_ssh should have probed more than once"


def test_connect_to_a_silent_port_says_no_banner(
    run_key: RunKey, hostfwd_factory: Callable[[int, bool], FakeHostfwd]
) -> None:
    hostfwd = hostfwd_factory(free_port(), True)
    started = time.monotonic()
    with pytest.raises(SshNoAnswerError, match=r"no SSH banner within 0.3 s .*not up"):
        connect(
            "127.0.0.1", hostfwd.port, identity=run_key, host_key=run_key.public_line, timeout=0.3
        )
    assert time.monotonic() - started < 0.3 + SLACK_S


def test_wait_for_ssh_gives_up_at_the_deadline(
    run_key: RunKey, hostfwd_factory: Callable[[int, bool], FakeHostfwd]
) -> None:
    hostfwd = hostfwd_factory(free_port(), True)
    started = time.monotonic()
    with pytest.raises(SshUnreachableError, match=r"no SSH session after .* attempts") as caught:
        wait_for_ssh(
            "127.0.0.1",
            hostfwd.port,
            started + 0.6,
            identity=run_key,
            host_key=run_key.public_line,
            first_probe_timeout=0.1,
        )
    assert 0.6 <= time.monotonic() - started < 0.6 + SLACK_S
    assert "no SSH banner" in str(caught.value)
    assert hostfwd.accepted >= 2


def test_wait_for_ssh_stops_when_asked(
    run_key: RunKey, hostfwd_factory: Callable[[int, bool], FakeHostfwd]
) -> None:
    hostfwd = hostfwd_factory(free_port(), True)
    calls = 0

    def panicked() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 2

    started = time.monotonic()
    with pytest.raises(SshWaitAbortedError, match="should_abort"):
        wait_for_ssh(
            "127.0.0.1",
            hostfwd.port,
            started + 30,
            identity=run_key,
            host_key=run_key.public_line,
            should_abort=panicked,
            first_probe_timeout=0.1,
        )
    assert time.monotonic() - started < SLACK_S  # not the 30 s deadline


def test_wait_for_ssh_fails_fast_on_a_wrong_host_key(
    server: Server, run_key: RunKey, tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(HostKeyMismatchError):
        wait_for_ssh(
            "127.0.0.1",
            server.port,
            started + 30,
            identity=run_key,
            host_key=generate_run_key(tmp_path).public_line,
        )
    assert time.monotonic() - started < SLACK_S, "a wrong host key must not be retried"
