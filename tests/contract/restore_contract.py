"""The backend contract for what the restore path of a reset needs (``envkit.restore``, with capability
EXPORT_FILESYSTEM): renaming a container, and a fixed address on a network. Part of ``BackendContract``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from envkit.backends.base import Backend, Capability, ContainerSpec, NetworkAttachment
from envkit.errors import Conflict

if TYPE_CHECKING:
    from collections.abc import Callable

    from .backend_contract import Harness

__all__ = ["RestoreContract"]


class RestoreContract:
    """Mixed into ``BackendContract`` (which provides ``container``, ``labels``, ``refused`` and the fixtures)."""

    container: Callable[..., str]
    refused: Callable[[Backend, Capability, Callable[[], object]], bool]
    labels: Callable[..., tuple[tuple[str, str], ...]]

    def test_rename_and_a_fixed_address(self, harness: Harness, run: str, net: str) -> None:
        b = harness.backend
        old = self.container(harness, run, net, "svc")
        if self.refused(b, Capability.EXPORT_FILESYSTEM, lambda: b.rename_container(old, f"envkit-{run}-other")):
            return
        address = b.inspect_container(old).addresses[net]
        name = f"envkit-{run}-svc"
        spec = ContainerSpec(f"{name}.next-1", harness.image, self.labels(run), (NetworkAttachment(net, ("svc",),
                                                                                                    address),),
                             command=harness.program(name))
        new = b.create_container(spec)  # while the old one still holds the name and the address
        with pytest.raises(Conflict):
            b.rename_container(new, name)  # taken
        b.remove_container(old, 0)
        b.rename_container(new, name)
        b.start_container(new)
        state = b.inspect_container(name)
        assert state.id == new and state.running and state.addresses[net] == address
