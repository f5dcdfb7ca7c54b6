"""The milter wire protocol codec: packets however the reads are cut, and each packet's shape."""

from __future__ import annotations

import socket
import struct

import Milter
import milter as libmilter
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reputable.milter import protocol as p


def test_flags_and_stages_are_libmilters() -> None:
    """Our numbers are the ones pymilter compiled from libmilter's mfapi.h."""
    for name in [
        "P_NOCONNECT",
        "P_NOHELO",
        "P_NOMAIL",
        "P_NORCPT",
        "P_NOBODY",
        "P_NOHDRS",
        "P_NOEOH",
        "P_NR_HDR",
        "P_NOUNKNOWN",
        "P_NODATA",
        "P_SKIP",
        "P_RCPT_REJ",
        "P_NR_CONN",
        "P_NR_HELO",
        "P_NR_MAIL",
        "P_NR_RCPT",
        "P_NR_DATA",
        "P_NR_UNKN",
        "P_NR_EOH",
        "P_NR_BODY",
        "P_HDR_LEADSPC",
        "ADDHDRS",
        "QUARANTINE",
        "SETSYMLIST",
    ]:
        assert getattr(p, name) == getattr(libmilter, name), name
    stages = {
        Milter.M_CONNECT: p.CONNECT,
        Milter.M_HELO: p.HELO,
        Milter.M_ENVFROM: p.MAIL,
        Milter.M_ENVRCPT: p.RCPT,
        Milter.M_DATA: p.DATA,
        Milter.M_EOM: p.BODYEOB,
        Milter.M_EOH: p.EOH,
    }
    assert stages == p.STAGE_COMMANDS


def test_packets_come_out_whole_when_fed_one_byte_at_a_time() -> None:
    body = b"x" * (p.MAX_PACKET - 1)  # Postfix's largest body chunk: 65535 bytes
    header = b"To\0" + b" a@example.com," * 6800 + b"\0"  # up to its header_size_limit: 102400
    stream = p.packet(b"L", b"From\0 a@b\0") + p.packet(b"N") + p.packet(b"B", body)
    stream += p.packet(b"L", header)
    reader = p.PacketReader()
    got = []
    for i in range(len(stream)):
        reader.add(stream[i : i + 1])
        while (item := reader.next()) is not None:
            got.append(item)
    assert got == [
        (ord("L"), b"From\0 a@b\0"),
        (ord("N"), b""),
        (ord("B"), body),
        (ord("L"), header),
    ]
    assert reader.pending == 0


@given(
    st.lists(st.tuples(st.sampled_from(b"ABCDLMNOT"), st.binary(max_size=300)), max_size=20),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1),
)
def test_any_split_of_any_packets_is_reassembled(
    packets: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(p.packet(bytes([c]), d) for c, d in packets)
    reader = p.PacketReader()
    got = []
    offset = 0
    i = 0
    while offset < len(stream):
        size = cuts[i % len(cuts)]
        reader.add(stream[offset : offset + size])
        offset += size
        i += 1
        while (item := reader.next()) is not None:
            got.append(item)
    assert got == packets


@pytest.mark.parametrize(
    ("length", "command", "named"),
    [
        (0, b"B", "body"),
        (p.MAX_PACKET + 1, b"B", "body"),  # more than a body chunk: refused before its data
        (p.MAX_PACKET + 1, b"D", "macro"),
        (p.MAX_HEADER_PACKET + 1, b"L", "header"),
        (0xFFFFFFFF, b"", None),  # refused on its length alone
    ],
)
def test_an_impossible_length_is_a_protocol_error_as_soon_as_it_arrives(
    length: int, command: bytes, named: str | None
) -> None:
    reader = p.PacketReader()
    reader.add(struct.pack(">I", length) + command)
    with pytest.raises(p.ProtocolError, match="packet length") as refused:
        reader.next()
    assert refused.value.command == named


def test_a_header_may_be_longer_than_other_packets_and_waits_for_its_command() -> None:
    reader = p.PacketReader()
    reader.add(struct.pack(">I", p.MAX_HEADER_PACKET))
    assert reader.next() is None  # a header's length: the command decides
    reader.add(b"L")
    assert reader.next() is None
    assert reader.capacity == p.BUFFER  # nothing committed for what has not arrived


def test_memory_follows_the_bytes_that_arrived_not_the_length_claimed() -> None:
    reader = p.PacketReader()
    reader.add(struct.pack(">I", p.MAX_PACKET) + b"B" + b"x" * 10)
    assert reader.next() is None
    assert reader.capacity == p.BUFFER
    reader.add(b"x" * (p.MAX_PACKET - 11) + p.packet(b"N")[:3])  # the whole chunk, and a bit more
    assert reader.next() == (p.BODY, b"x" * (p.MAX_PACKET - 1))
    assert reader.capacity > p.MAX_PACKET
    reader.settle()  # what the connection does after each batch of packets
    assert reader.capacity == p.BUFFER and reader.pending == 3  # shrunk back, bytes kept
    reader.add(p.packet(b"N")[3:])
    assert reader.next() == (p.EOH, b"")


def test_a_growing_backlog_is_copied_a_logarithmic_number_of_times() -> None:
    """Packets left waiting (a lookup pending) never make each read copy them all again."""
    reader = p.PacketReader()
    chunk = p.packet(b"B", b"y" * 1000)
    sizes = {reader.capacity}
    for _ in range(4000):  # 4 MB in reads of 1 KB, nothing taken
        room = reader.space()
        room[: len(chunk)] = chunk
        reader.wrote(len(chunk))
        sizes.add(reader.capacity)
    assert reader.pending == 4000 * len(chunk)
    assert len(sizes) <= 8  # fourfold: 4 KiB .. 16 MiB (growing 16 KiB at a time: 250 sizes)
    taken = [reader.next() for _ in range(4000)]
    assert taken == [(p.BODY, b"y" * 1000)] * 4000


def test_connect_in_the_shapes_pymilter_gives() -> None:
    inet = p.parse_connect(b"client.example\x004" + struct.pack(">H", 40000) + b"192.0.2.1\0")
    assert (inet.hostname, inet.family, inet.hostaddr) == (
        "client.example",
        socket.AF_INET,
        ("192.0.2.1", 40000),
    )
    inet6 = p.parse_connect(b"v6\x006" + struct.pack(">H", 25) + b"IPv6:2001:db8::1\0")
    assert (inet6.family, inet6.hostaddr) == (socket.AF_INET6, ("2001:db8::1", 25, 0, 0))
    local = p.parse_connect(b"localhost\x004\x00\x00127.0.0.1\0")
    assert local.hostaddr == ("127.0.0.1", 0)  # Postfix's local submission (non_smtpd_milters)
    unix = p.parse_connect(b"sock\x00L\x00\x00/run/x.sock\0")
    assert (unix.family, unix.hostaddr) == (socket.AF_UNIX, "/run/x.sock")
    unknown = p.parse_connect(b"unknown\x00U")
    assert (unknown.family, unknown.hostaddr) == (socket.AF_UNSPEC, None)


@pytest.mark.parametrize(
    "data",
    [b"", b"name-only", b"host\x00", b"host\x004\x01", b"host\x00X\x00\x00addr\0"],
)
def test_a_malformed_connect_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_connect(data)


def test_macros_header_and_strings() -> None:
    stage, macros = p.parse_macros(b"M{auth_authen}\0alice\0i\0ABC123\0")
    assert (stage, macros) == (p.MAIL, b"{auth_authen}\0alice\0i\0ABC123\0")  # kept as sent
    assert p.macro_value(macros, (b"i", b"{i}")) == b"ABC123"
    assert p.macro_value(macros, (b"{auth_authen}",)) == b"alice"
    assert p.macro_value(b"i\0", (b"i",)) is None  # a name without its value is not defined
    with pytest.raises(p.ProtocolError):
        p.parse_macros(b"")
    assert p.parse_header(b"Subject\0 a\n\tfolded\xff\0") == ("Subject", b" a\n\tfolded\xff")
    with pytest.raises(p.ProtocolError):
        p.parse_header(b"Subject")
    assert p.strings(b"<a@b>\0SIZE=10\0") == [b"<a@b>", b"SIZE=10"]
    assert p.strings(b"<a@b>") == [b"<a@b>"]


def test_a_macro_packet_holds_at_most_max_macro_names() -> None:
    most = b"M" + b"".join(b"{m%d}\0v\0" % i for i in range(p.MAX_MACRO_NAMES))
    assert p.parse_macros(most)[0] == p.MAIL
    with pytest.raises(p.ProtocolError, match="65 macros in one packet") as refused:
        p.parse_macros(most + b"one\0more\0")
    assert refused.value.command == "macro"


@pytest.mark.parametrize(("command", "name"), [(p.MAIL, "mail"), (p.RCPT, "rcpt")])
def test_an_envelope_command_without_its_address_is_a_protocol_error(
    command: int, name: str
) -> None:
    assert p.parse_envelope(command, b"<>\0") == [b"<>"]
    assert p.parse_envelope(command, b"<a@b>\0SIZE=10\0") == [b"<a@b>", b"SIZE=10"]
    with pytest.raises(p.ProtocolError, match=f"{name} without an address") as refused:
        p.parse_envelope(command, b"")
    assert refused.value.command == name


def test_option_negotiation_round_trip() -> None:
    assert p.parse_optneg(struct.pack(">III", 6, 0x1FF, 0x1FFFFF)) == (6, 0x1FF, 0x1FFFFF)
    with pytest.raises(p.ProtocolError):
        p.parse_optneg(b"\0\0\0\6")
    reply = p.optneg_reply(6, p.ADDHDRS, p.P_NR_HDR, {2: b"{auth_authen}", 6: b"i"})
    reader = p.PacketReader()
    reader.add(reply)
    assert reader.next() == (
        ord("O"),
        struct.pack(">IIII", 6, p.ADDHDRS, p.P_NR_HDR, 2) + b"{auth_authen}\0" + b"\0\0\0\6i\0",
    )


def test_replies() -> None:
    assert p.reply_code("451", "4.3.0", ["try later"]) == p.packet(b"y", b"451 4.3.0 try later\0")
    assert p.reply_code("550", None, ["no"]) == p.packet(b"y", b"550 no\0")
    assert p.reply_code("550", "5.7.1", ["one", "two"]) == p.packet(
        b"y", b"550-5.7.1 one\r\n550 5.7.1 two\0"
    )
    # Line breaks in a text cannot split the reply into lines the MTA did not ask for.
    assert p.reply_code("550", "5.7.1", ["a\r\nb\nc"]) == p.packet(b"y", b"550 5.7.1 a b c\0")
    assert p.insert_header(0, "DKIM-Signature", " v=1") == p.packet(
        b"i", b"\0\0\0\0DKIM-Signature\0 v=1\0"
    )
    assert p.add_header("X-A", "b\0c") == p.packet(b"h", b"X-A\0b c\0")
    assert p.quarantine("held") == p.packet(b"q", b"held\0")


def test_reads_go_straight_into_the_buffer_while_the_loop_still_holds_a_view() -> None:
    """asyncio keeps the view of the last read alive while the packets are handled."""
    stream = b"".join(p.packet(b"B", bytes([i]) * 20000) for i in range(8))
    reader = p.PacketReader()
    held: list[memoryview] = []
    got = []
    offset = 0
    while offset < len(stream):
        room = reader.space()
        held.append(room)  # never released: the buffer must be replaced, not resized
        count = min(len(room), 5000, len(stream) - offset)
        room[:count] = stream[offset : offset + count]
        offset += count
        reader.wrote(count)
        while (item := reader.next()) is not None:
            got.append(item)
    assert got == [(ord("B"), bytes([i]) * 20000) for i in range(8)]
    assert len(reader.space()) >= p.MIN_READ
