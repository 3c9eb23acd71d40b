"""The Swarm backend's calls that go to the engine of the node where a task runs (exec, copies, logs).

``ENVKIT_SWARM_NODES`` says how this machine reaches each node's engine. A node whose engine stops
answering is asked about at the manager: once the manager sees it down, the call is a ``Conflict`` saying
the container was lost with its node (a probe then reports the service as lost, not as a puzzle).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from envkit.backends._swarm_nodes import NodeMap
from envkit.backends._swarm_place import NodeInfo, Nodes
from envkit.backends.base import Capability, ExecResult, ExecSession, LogLine
from envkit.backends.docker import DockerBackend
from envkit.errors import Conflict, EngineUnavailable

__all__ = ["NodeCalls"]


class NodeCalls(DockerBackend):
    """Exec, copies and logs on the task's node (mixed into ``SwarmBackend``, which finds the node)."""

    nodes: NodeMap
    _nodes: Nodes
    _node_backends: dict[str, DockerBackend]

    def _where(self, container_id: str, wait: float = 60) -> tuple[DockerBackend, str] | None:
        raise NotImplementedError

    def _started(self, container_id: str, what: str) -> tuple[DockerBackend, str]:
        raise NotImplementedError

    def _node(self, hostname: str) -> DockerBackend | None:
        where = self.nodes.engines.get(hostname)
        if where is None:
            return None
        if hostname not in self._node_backends:
            self._node_backends[hostname] = DockerBackend({"DOCKER_HOST": where})
        return self._node_backends[hostname]

    def _all_nodes(self) -> list[DockerBackend]:
        """The engines of the nodes that are up (a node the manager sees down cannot answer)."""
        down = self._nodes.down()
        return [b for b in (self._node(h) for h in sorted(set(self.nodes.engines) - down)) if b is not None]

    def _each_node(self, what: Callable[[DockerBackend], None]) -> None:
        """``what`` on every node that is up; one whose engine does not answer is skipped once the manager
        sees it down (its resources went with it), else its error stands."""
        for node in self._all_nodes():
            try:
                what(node)
            except EngineUnavailable:
                if self._gone(node) is None:
                    raise

    def _gone(self, node: DockerBackend, wait: float = 30) -> NodeInfo | None:
        """After ``node``'s engine did not answer: the node, once the manager sees it down within ``wait``
        seconds (its heartbeat decides: 5 s by default, 3 missed beats), else None."""
        hostname = next((h for h, where in self.nodes.engines.items() if where == node.where), "")
        deadline = time.monotonic() + wait
        while True:
            info = next((n for n in self._nodes.all(fresh=True).values() if n.hostname == hostname), None)
            if info is not None and not info.up:
                return info
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)

    @contextlib.contextmanager
    def _reaching(self, node: DockerBackend) -> Iterator[None]:
        try:
            yield
        except EngineUnavailable as exc:
            info = self._gone(node)
            if info is None:
                raise
            raise Conflict(f"the container {info.lost()}") from exc


    def exec(self, container_id: str, command: tuple[str, ...], user: str | None = None,
             timeout: float | None = None) -> ExecResult:
        node, cid = self._started(container_id, "exec")
        with self._reaching(node):
            return node.exec(cid, command, user, timeout)

    def exec_stream(self, container_id: str, command: tuple[str, ...], *, stdin: int | None, stdout: BinaryIO,
                    stderr: BinaryIO, tty: bool = False, user: str | None = None) -> ExecSession:
        self.require(Capability.INTERACTIVE_EXEC)
        node, cid = self._started(container_id, "exec")
        return node.exec_stream(cid, command, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty, user=user)

    def copy_into(self, container_id: str, directory: str, archive: bytes) -> None:
        self.require(Capability.COPY_FILES)
        node, cid = self._started(container_id, "copy files")
        with self._reaching(node):
            node.copy_into(cid, directory, archive)

    def copy_from(self, container_id: str, path: str) -> bytes:
        self.require(Capability.COPY_FILES)
        node, cid = self._started(container_id, "copy files")
        with self._reaching(node):
            return node.copy_from(cid, path)

    def logs(self, container_id: str, tail: int | None = None, since: float | None = None,
             until: float | None = None) -> str:
        where = self._where(container_id)
        if where is None:
            return ""
        with self._reaching(where[0]):
            return where[0].logs(where[1], tail, since, until)

    def follow_logs(self, container_id: str, tail: int | None = None) -> Iterator[str]:
        where = self._where(container_id)
        return where[0].follow_logs(where[1], tail) if where else iter(())

    def log_lines(self, container_id: str, tail: int | None = None, since: float | None = None,
                  until: float | None = None) -> list[LogLine]:
        where = self._where(container_id)
        if where is None:
            return []
        with self._reaching(where[0]):
            return where[0].log_lines(where[1], tail, since, until)

    def follow_log_lines(self, container_id: str, tail: int | None = None,
                         since: float | None = None) -> Iterator[LogLine]:
        where = self._where(container_id)
        return where[0].follow_log_lines(where[1], tail, since) if where else iter(())
