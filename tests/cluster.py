"""A RabbitMQ cluster of the test's own: three nodes of the installed RabbitMQ, on free ports,
with their data, logs and Erlang cookie in a temporary directory. Never the shared broker on
5672: a test may kill these nodes.

Node 1 starts alone; nodes 2 and 3 start once it answers and join it at boot (classic-config
peer discovery), which saves the stop_app / join_cluster / start_app round of three CLI calls
per node (each CLI call boots an Erlang VM: about a second of CPU here). Every node runs the
Erlang VM as the launched process itself (no shell in between) with the parent-death signal
set, so a test run killed half-way does not leave nodes behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hub.simulation import free_port
from hub.testing.waiting import TimedOut, wait_for

# The installed server's own scripts: on Debian /usr/sbin/rabbitmq-server is a wrapper that
# switches to the rabbitmq user and its home (the shared broker's cookie and config).
SCRIPTS = Path("/usr/lib/rabbitmq/bin")
PR_SET_PDEATHSIG = 1


def _script(name: str) -> str:
    own = SCRIPTS / name
    if own.exists():
        return str(own)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; the cluster tests need RabbitMQ's server")
    return found


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@dataclass
class Node:
    name: str  # Erlang node name, e.g. lt3f2a1c1@localhost
    port: int  # AMQP
    dist_port: int
    base: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        logs = sorted((self.base / "log").glob("*.log"))
        out = [f"== {self.name} {p.name}\n" + "\n".join(p.read_text(errors="replace")
                                                        .splitlines()[-lines:]) for p in logs]
        stdout = self.base / "stdout.txt"
        if stdout.exists():
            out.append(f"== {self.name} stdout\n" + stdout.read_text(errors="replace")[-3000:])
        return "\n".join(out)


@dataclass
class Cluster:
    directory: Path
    nodes: list[Node] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def env(self, node: Node) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("RABBITMQ_", "ERL_", "CONF_ENV_FILE"))}
        return {
            **keep,
            # The cookie is read from $HOME/.erlang.cookie: one for the cluster and its CLI.
            "HOME": str(self.directory),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_PORT": str(node.port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_PID_FILE": str(node.base / "node.pid"),
            "RABBITMQ_ALLOW_INPUT": "true",  # exec the VM in place of the script (see below)
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-noinput -noshell -kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, node: Node, *args: str, timeout: float = 60) -> str:
        env = self.env(node)
        # The CLI's own distribution port: any free one, not the range the shared broker's
        # CLI calls use (35672-35682), which other test runs need meanwhile.
        port = free_port()
        env["RABBITMQ_CTL_DIST_PORT_MIN"] = env["RABBITMQ_CTL_DIST_PORT_MAX"] = str(port)
        out = subprocess.run([_script("rabbitmqctl"), "-n", node.name, *args], env=env,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.name} failed: "
                               f"{out.stderr or out.stdout}")
        return out.stdout

    def start(self, node: Node, seed: Node | None) -> None:
        node.base.mkdir(parents=True, exist_ok=True)
        config = [f"listeners.tcp.1 = 127.0.0.1:{node.port}", "loopback_users = none",
                  # The shared machine may be short of disk; the default alarm stops publishers.
                  "disk_free_limit.absolute = 1MB"]
        if seed is not None:
            config += ["cluster_formation.peer_discovery_backend = classic_config",
                       f"cluster_formation.classic_config.nodes.1 = {seed.name}",
                       "cluster_formation.randomized_startup_delay_range.min = 0",
                       "cluster_formation.randomized_startup_delay_range.max = 1"]
        (node.base / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        with open(node.base / "stdout.txt", "wb") as out:
            node.process = subprocess.Popen(
                [_script("rabbitmq-server")], env=self.env(node), cwd=node.base,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent, start_new_session=True,
            )

    def wait_up(self, nodes: list[Node], timeout: float) -> None:
        def up() -> bool:
            for node in nodes:
                if not node.alive:
                    raise RuntimeError(f"node {node.name} exited while starting:\n"
                                       f"{node.log_tail()}")
            return all(_port_open(node.port) for node in nodes)

        try:
            wait_for(up, timeout, f"nodes {[n.name for n in nodes]} to open their AMQP port",
                     interval=0.1)
        except TimedOut as late:
            raise RuntimeError(f"{late}:\n" + "\n".join(n.log_tail() for n in nodes)) from None

    def running(self) -> list[str]:
        """Names of the running nodes, as the first live node sees the cluster."""
        node = next(n for n in self.nodes if n.alive)
        status = json.loads(self.ctl(node, "cluster_status", "--formatter", "json"))
        return sorted(status["running_nodes"])

    def kill(self, node: Node) -> None:
        """SIGKILL the node's VM, as a crashed machine would go: no goodbye to its clients."""
        if node.process is not None and node.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(10)

    def close(self) -> None:
        for node in self.nodes:
            self.kill(node)


@contextlib.contextmanager
def rabbitmq_cluster(directory: Path, size: int = 3, timeout: float = 90) -> Iterator[Cluster]:
    tag = "lt" + secrets.token_hex(3)
    cluster = Cluster(directory)
    (directory / ".erlang.cookie").write_text(secrets.token_hex(20))
    (directory / ".erlang.cookie").chmod(0o400)
    (directory / "rabbitmq-env.conf").write_text("")
    (directory / "enabled_plugins").write_text("[].\n")
    used: set[int] = set()

    def port() -> int:
        while (p := free_port()) in used:
            pass
        used.add(p)
        return p

    cluster.nodes = [Node(f"{tag}n{i}@localhost", port(), port(), directory / f"n{i}")
                     for i in range(1, size + 1)]
    try:
        first, *others = cluster.nodes
        cluster.start(first, None)
        cluster.wait_up([first], timeout)
        for node in others:
            cluster.start(node, first)
        cluster.wait_up(others, timeout)
        running = cluster.running()
        if running != sorted(n.name for n in cluster.nodes):
            raise RuntimeError(f"the nodes did not form one cluster: {first.name} sees "
                               f"{running}\n" + "\n".join(n.log_tail() for n in others))
        yield cluster
    finally:
        cluster.close()

