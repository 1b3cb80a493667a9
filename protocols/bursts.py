"""What one fuzz example sends on one connection: a burst of frames, and how it is cut into writes.

Every framing area (Modbus/TCP, OPC UA binary, TLS records) fuzzes the same way: a few
frames, each mostly valid with one named piece pushed to its edge, sent on one fresh
connection either one write per frame, all coalesced into one write (pipelining), or cut
at an arbitrary byte (a frame split across TCP segments). The strategies shrink toward
one frame, one write per frame, so a minimal reproducer reads like the bug.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

MAX_FRAMES_PER_BURST = 4
CUT_MODES = st.sampled_from(("per-frame", "coalesced", "split"))
SPLIT_OFFSETS = st.integers(0, 255)


@dataclass(frozen=True)
class Frame:
    """One frame and the name of the piece that was pushed to its edge ("valid" if none)."""

    data: bytes
    mutation: str


@dataclass(frozen=True)
class Burst:
    """The writes of one example, in order, on one connection."""

    segments: tuple[bytes, ...]
    description: str  # the named pieces, for a finding's report

    @property
    def wire(self) -> bytes:
        return b"".join(self.segments)

    def __len__(self) -> int:
        return len(self.wire)


def describe(frames: Sequence[Frame], cut: str) -> str:
    parts = [f"{f.mutation}[{len(f.data)}]" for f in frames]
    return f"{' + '.join(parts)} ({cut})"


def cut_into_segments(frames: Sequence[Frame], mode: str, offset: int) -> tuple[bytes, ...]:
    """`per-frame`: one write each; `coalesced`: one write; `split`: per-frame, one cut at `offset`."""
    if mode == "coalesced":
        return (b"".join(f.data for f in frames),)
    segments = [f.data for f in frames if f.data]
    if mode == "split" and segments:
        first = segments[0]
        at = offset % max(len(first), 1)
        if 0 < at < len(first):
            segments[0:1] = [first[:at], first[at:]]
    return tuple(segments) or (b"",)


@st.composite
def bursts(
    draw: st.DrawFn, frames: st.SearchStrategy[Frame], max_frames: int = MAX_FRAMES_PER_BURST
) -> Burst:
    """1..max_frames frames from `frames`, cut into writes; shrinks to one frame, one write."""
    chosen = draw(frame_lists(frames, max_frames))
    mode = draw(CUT_MODES)
    offset = draw(SPLIT_OFFSETS) if mode == "split" else 0
    cut = f"split at {offset}" if mode == "split" else mode
    return Burst(cut_into_segments(chosen, mode, offset), describe(chosen, cut))


# Strategies are built once and drawn from many times: Hypothesis validates and labels each
# new strategy object, which costs more than the draw itself (fuzz throughput, bench/).


@functools.lru_cache(maxsize=256)
def frame_lists(frames: st.SearchStrategy[Frame], max_frames: int) -> st.SearchStrategy[list[Frame]]:
    return st.lists(frames, min_size=1, max_size=max_frames)


@functools.lru_cache(maxsize=1024)
def integers(low: int, high: int) -> st.SearchStrategy[int]:
    """`st.integers(low, high)`, the same object for the same bounds."""
    return st.integers(low, high)


def edge_or_any(edges: Sequence[int], low: int, high: int) -> st.SearchStrategy[int]:
    """Mostly the named edges (two draws in three; the first edge is where shrinking goes), else any value."""
    return _edge_or_any(tuple(edges), low, high)


@functools.lru_cache(maxsize=1024)
def _edge_or_any(edges: tuple[int, ...], low: int, high: int) -> st.SearchStrategy[int]:
    named = st.sampled_from(edges)
    return st.one_of(named, named, st.integers(low, high))
