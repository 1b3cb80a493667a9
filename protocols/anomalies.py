"""Systematic anomalies (the Defensics model): a deterministic list, per field of a frame, of the values
and cuts that break parsers, tried before any random example.

A `Layout` is one valid frame (the template) and where its fields lie. `anomalies` walks the fields
in order and, for each, the anomaly classes that fit it:

- integers: `0`, `1`, `min-1` (below the smallest legal value), `max` (the largest legal value, the
  field's width when the protocol sets no limit), `max+1`, each extra named limit and one past it,
  `ones` (every bit set), `sign` (the top bit alone: a signed reader sees the most negative value),
  `swapped` (the limit with its bytes swapped: an endianness slip);
- lengths and counts (a field that must agree with other bytes): `-1`, `+1` and `+large` against
  the template's true value;
- tags (message and chunk types): `0`, `ones` and the other tags the protocol knows;
- every frame: truncated at each field boundary (`trunc`: the frame cut just before that field),
  and any named variant the protocol's table builds (`extra`), e.g. a Modbus ADU padded to 261 bytes.

An anomaly is one frame with one field changed, so a finding is minimal already: nothing to shrink.
Its name (`mbap.length:max+1`) and its index in the list are stable for a given template; a value
that equals the template's own, or that an earlier class of the same field already produced, is
not tried twice. `fix` re-computes the lengths that enclose the mutated field (a PDU anomaly keeps
its MBAP length right), so exactly one thing is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Order = Literal["big", "little"]
LARGE_WIDE = 256  # `+large` for a field of two bytes or more
LARGE_NARROW = 64  # ... and for a one-byte field


@dataclass(frozen=True)
class Field:
    name: str
    offset: int  # from the start of the frame (after the layout's prefix)
    size: int  # bytes
    order: Order = "big"
    low: int = 0  # smallest legal value
    high: int | None = None  # largest legal value; None: the width's maximum
    limits: tuple[tuple[str, int], ...] = ()  # more named limits, each tried at and one past
    relative: bool = False  # a length or count that must agree with other bytes of the frame
    step: int = 1  # how far a relative field must move to disagree (8 coils share a byte)
    tags: tuple[bytes, ...] = ()  # a tag field (message type): the other values to put there
    values: tuple[tuple[str, int], ...] = ()  # further named values worth a try (unknown codes)

    @property
    def width_max(self) -> int:
        return (1 << (8 * self.size)) - 1

    @property
    def end(self) -> int:
        return self.offset + self.size

    def read(self, frame: bytes) -> int:
        return int.from_bytes(frame[self.offset : self.end], self.order)

    def write(self, frame: bytes, value: int) -> bytes:
        raw = (value & self.width_max).to_bytes(self.size, self.order)
        return frame[: self.offset] + raw + frame[self.end :]


Fix = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Extra:
    """A named variant of the frame the protocol's table builds itself (a size, a cross-field value)."""

    field: str
    kind: str
    frame: bytes
    label: str = ""  # shown after the class: `size` of 261 bytes is `adu:size=261`


@dataclass(frozen=True)
class Layout:
    name: str  # "mbap", "fc16", "hel", "record": the first part of every anomaly name
    frame: bytes  # a valid template
    fields: tuple[Field, ...]
    prefix: bytes = b""  # sent before the frame in the same write (a valid HEL before an OPN)
    fix: Fix | None = None  # re-computes the enclosing lengths after a change (not for their own fields)
    truncate: bool = True
    extras: tuple[Extra, ...] = ()
    allowed: Callable[[bytes], bool] | None = None  # a safety filter on the frame (reads only, ...)


@dataclass(frozen=True)
class Anomaly:
    index: int  # its place in the area's list (0-based)
    layout: str
    field: str
    kind: str  # the anomaly class: "max+1", "-1", "trunc", "size", ...
    value: int | None
    segments: tuple[bytes, ...]
    label: str = ""

    @property
    def name(self) -> str:
        shown = self.label or self.kind
        return f"{self.layout}.{self.field}:{shown}"

    @property
    def coverage_key(self) -> tuple[str, str]:
        """(field, class): what the report counts."""
        return f"{self.layout}.{self.field}", self.kind

    @property
    def wire(self) -> bytes:
        return b"".join(self.segments)


def _swap(value: int, size: int) -> int:
    return int.from_bytes(value.to_bytes(size, "big"), "little")


def integer_values(f: Field, template: int) -> list[tuple[str, int]]:
    """The (class, value) pairs of an integer field, in order, without repeats or the template's value."""
    top = f.width_max
    high = top if f.high is None else f.high
    pairs: list[tuple[str, int]] = [("0", 0), ("1", 1)]
    if f.low >= 2:
        pairs.append(("min-1", f.low - 1))
    pairs.append(("max", high))
    if high < top:
        pairs.append(("max+1", high + 1))
    for label, limit in f.limits:
        pairs += [(label, limit), (f"{label}+1", limit + 1)]
    pairs += [("ones", top), ("sign", 1 << (8 * f.size - 1))]
    if f.size >= 2:
        pairs.append(("swapped", _swap(high, f.size)))
    if f.relative:
        large = LARGE_WIDE if f.size >= 2 else LARGE_NARROW
        pairs += [("-1", template - f.step), ("+1", template + f.step), ("+large", template + large)]
    pairs += list(f.values)
    seen = {template}
    chosen: list[tuple[str, int]] = []
    for label, value in pairs:
        if 0 <= value <= top and value not in seen:
            seen.add(value)
            chosen.append((label, value))
    return chosen


def _tag_values(f: Field, frame: bytes) -> list[tuple[str, bytes]]:
    own = frame[f.offset : f.end]
    pairs = [("0", bytes(f.size)), ("ones", b"\xff" * f.size)]
    pairs += [(f"other={tag.decode('latin-1')}", tag) for tag in f.tags]
    if own.isalpha() and own.upper() == own:
        pairs.append(("lowercase", own.lower()))
    seen = {own}
    chosen: list[tuple[str, bytes]] = []
    for label, value in pairs:
        if value not in seen and len(value) == f.size:
            seen.add(value)
            chosen.append((label, value))
    return chosen


@dataclass
class _Builder:
    out: list[Anomaly] = field(default_factory=list)

    def add(
        self, layout: Layout, name: str, kind: str, value: int | None, frame: bytes, label: str = ""
    ) -> None:
        if layout.allowed is not None and not layout.allowed(frame):
            return
        wire = layout.prefix + frame
        if wire == layout.prefix + layout.frame:
            return
        segment = (wire,)
        self.out.append(Anomaly(len(self.out), layout.name, name, kind, value, segment, label))


def _fixed(layout: Layout, frame: bytes) -> bytes:
    return layout.fix(frame) if layout.fix is not None else frame


def _field_anomalies(builder: _Builder, layout: Layout, f: Field) -> None:
    frame = layout.frame
    if f.tags:
        for kind, raw in _tag_values(f, frame):
            changed = frame[: f.offset] + raw + frame[f.end :]
            builder.add(layout, f.name, kind.split("=")[0], None, _fixed(layout, changed), kind)
        return
    template = f.read(frame)
    named = set(f.values)
    for kind, value in integer_values(f, template):
        # Named values may share a class ("unknown"): the value tells them apart in the name.
        label = f"{kind}={value:#04x}" if (kind, value) in named else ""
        builder.add(layout, f.name, kind, value, _fixed(layout, f.write(frame, value)), label)


def boundaries(layout: Layout) -> list[tuple[str, int]]:
    """(field, offset) where a truncation cuts: just before each field that does not start the frame."""
    cuts: list[tuple[str, int]] = []
    for f in layout.fields:
        if 0 < f.offset < len(layout.frame) and all(at != f.offset for _, at in cuts):
            cuts.append((f.name, f.offset))
    last = max((f.end for f in layout.fields), default=0)
    if 0 < last < len(layout.frame) and all(at != last for _, at in cuts):
        cuts.append(("body", last))  # what follows the last field (a value list, a string's bytes)
    return cuts


def anomalies(layouts: Sequence[Layout]) -> tuple[Anomaly, ...]:
    """Every layout's anomalies, in order: each field's classes, then the truncations, then the extras."""
    builder = _Builder()
    for layout in layouts:
        for f in layout.fields:
            _field_anomalies(builder, layout, f)
        if layout.truncate:
            for name, at in boundaries(layout):
                builder.add(layout, name, "trunc", at, _fixed(layout, layout.frame[:at]))
        for extra in layout.extras:
            builder.add(layout, extra.field, extra.kind, len(extra.frame), extra.frame, extra.label)
    return tuple(builder.out)


def unique(items: Iterable[Anomaly]) -> tuple[Anomaly, ...]:
    """The list without repeated wires or names (two layouts may build the same bytes), re-indexed."""
    seen_wire: set[bytes] = set()
    seen_name: set[str] = set()
    kept: list[Anomaly] = []
    for a in items:
        if a.wire in seen_wire or a.name in seen_name:
            continue
        seen_wire.add(a.wire)
        seen_name.add(a.name)
        kept.append(Anomaly(len(kept), a.layout, a.field, a.kind, a.value, a.segments, a.label))
    return tuple(kept)
