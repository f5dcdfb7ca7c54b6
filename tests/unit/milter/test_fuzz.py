"""Property-based fuzzing of the packet reader and the protocol state machine (hypothesis).

10,000 examples per property with the default profile; `fuzzing` names the
1,000,000-example one and how to run it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given

from reputable.milter import protocol as p
from reputable.milter.connection import MilterConnection
from tests.unit.milter.fuzzing import (
    OPTIONS,
    Recipe,
    Recorder,
    feed,
    fuzz,
    open_connection,
    recipes,
    recorded,
    signing_holder,
)

LENGTHS = [0, 1, 5, p.MAX_PACKET, p.MAX_PACKET + 1, p.MAX_HEADER_PACKET, p.MAX_HEADER_PACKET + 1]
SIZES = [0, 1, p.BUFFER - 6, p.BUFFER, p.MAX_PACKET - 2, p.MAX_PACKET - 1, p.MAX_PACKET, 70_000]


def stream_of(recipe: Recipe) -> bytes:
    """Bytes near the framing: whole packets, lengths at the limits, large packets, noise."""
    parts = []
    while recipe.left:
        kind = recipe.byte() % 8
        if kind < 3:
            parts.append(recipe.packet(recipe.pick(sorted(p.COMMAND_NAMES))))
        elif kind < 5:
            length = recipe.pick(LENGTHS) if recipe.byte() % 2 else recipe.number()
            parts.append(length.to_bytes(4, "big") + bytes([recipe.byte()]))
        elif kind == 5:
            parts.append(p.packet(bytes([recipe.pick(list(b"BLD"))]), b"x" * recipe.pick(SIZES)))
        else:
            parts.append(recipe.text(20))
    return b"".join(parts)


@fuzz
@given(recipes)
def test_any_bytes_cut_anywhere_give_their_packets_or_a_protocol_error(data: bytes) -> None:
    recipe = Recipe(data)
    splits = recipe.read_sizes()
    stream = stream_of(recipe)
    reader = p.PacketReader()
    got: list[tuple[int, bytes]] = []
    offset = 0
    i = 0
    try:
        while offset < len(stream):
            room = reader.space()
            count = min(len(room), splits[i % len(splits)], len(stream) - offset)
            room[:count] = stream[offset : offset + count]
            reader.wrote(count)
            offset += count
            i += 1
            while (item := reader.next()) is not None:
                got.append(item)
            reader.settle()
            # Memory follows the bytes held, whatever length they claim.
            assert reader.capacity <= 4 * reader.pending + 2 * p.BUFFER
    except p.ProtocolError:
        return
    framed = b"".join(p.packet(bytes([c]), d) for c, d in got)
    assert framed == stream[: len(stream) - reader.pending]


@fuzz
@given(recipes)
def test_valid_packets_in_any_order_never_make_an_internal_error(
    keys_dir: Path, loop: asyncio.AbstractEventLoop, data: bytes
) -> None:
    """Well-formed packets, in any order or in one the state table allows.

    In any order, one out of order closes the connection with a protocol error,
    nothing worse; in an order the table allows, none is refused (but options the
    milter cannot work with) and the connection stays open.
    """
    holder = signing_holder(keys_dir)
    connection, transport = open_connection(holder, loop)
    recipe = Recipe(data)
    mode = recipe.byte() % 4
    with recorded() as log:
        if mode == 0:
            walk(connection, recipe)
        else:
            splits = recipe.read_sizes()
            packets = [OPTIONS] * (mode != 1) + recipe.packets()
            feed(connection, b"".join(packets), splits)
        still_open = not connection.closed
        connection.connection_lost(None)
    assert log.faults() == []
    assert set(log.events()) <= {"protocol_error"}
    refused = "protocol_error" in log.events()
    assert transport.closed == refused and still_open != refused
    if mode == 0:
        assert refused_options_at_most(log)
    assert holder.sessions == 0


def walk(connection: MilterConnection, recipe: Recipe) -> None:
    """Send one allowed command after another, as the connection's table says."""
    while recipe.left and not connection.closed:
        row = connection.table[connection.state]
        packet = recipe.packet(recipe.pick(sorted(c for c in row if c != p.QUIT)))
        feed(connection, packet, [1 + recipe.byte() % len(packet)])


def refused_options_at_most(log: Recorder) -> bool:
    return all(line.get("command") == "optneg" for line in log.lines)
