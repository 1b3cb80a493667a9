"""asyncua's standard address space, filled before a fork (simulators/opcua/fork_server.py).

Filling its some 6000 nodes is about a second of CPU at every simulator start, and the defect
matrix starts a hundred OPC UA simulators. The fork server fills one copy and forks: each child
owns a copy-on-write duplicate of it, which its server adopts in place of filling its own.
"""

from __future__ import annotations

from asyncua.server.address_space import AddressSpace, NodeManagementService

_filled: AddressSpace | None = None


def fill() -> None:
    """Fill the standard address space now (the fork server, once, before any fork)."""
    from asyncua.server.standard_address_space import standard_address_space

    global _filled
    space = AddressSpace()
    standard_address_space.fill_address_space(NodeManagementService(space))  # type: ignore[no-untyped-call]
    _filled = space


def adopt_into(space: AddressSpace) -> bool:
    """Give `space` the filled nodes if this process has them (once): False means fill as usual."""
    global _filled
    if _filled is None:
        return False
    filled, _filled = _filled, None
    # The services of the server hold `space` itself, so it takes the filled state, not a new object.
    space.__dict__.update({k: v for k, v in vars(filled).items() if k != "logger"})
    return True
