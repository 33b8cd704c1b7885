"""SSE framing: decoding upstream streams line by line, encoding events for clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest

from onemcp.protocol.sse import Decoder, Event, decode, encode

pytestmark = pytest.mark.anyio


async def _lines(lines: Iterable[str]) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def decode_all(lines: Iterable[str]) -> list[Event]:
    return [ev async for ev in decode(_lines(lines))]


async def test_single_event() -> None:
    (ev,) = await decode_all(['data: {"a":1}', ""])
    assert ev == Event(event="message", data='{"a":1}', id=None, retry=None)


async def test_multi_line_data_is_joined_with_newlines() -> None:
    (ev,) = await decode_all(["data: first", "data: second", "data:third", ""])
    assert ev.data == "first\nsecond\nthird"


async def test_only_one_leading_space_is_removed() -> None:
    (ev,) = await decode_all(["data:  two spaces", ""])
    assert ev.data == " two spaces"


async def test_colon_in_value_is_kept() -> None:
    (ev,) = await decode_all(['data: {"url":"http://x"}', ""])
    assert ev.data == '{"url":"http://x"}'


async def test_comments_are_ignored() -> None:
    events = await decode_all([": keep-alive", "", ":another", "data: x", ": inside", ""])
    assert [e.data for e in events] == ["x"]


async def test_event_name_id_and_retry() -> None:
    (ev,) = await decode_all(["event: endpoint", "id: 42", "retry: 1500", "data: /messages?s=1", ""])
    assert ev == Event(event="endpoint", data="/messages?s=1", id="42", retry=1500)


async def test_empty_event_name_means_message() -> None:
    (ev,) = await decode_all(["event:", "data: x", ""])
    assert ev.event == "message"


async def test_non_numeric_retry_is_ignored() -> None:
    (ev,) = await decode_all(["retry: soon", "data: x", ""])
    assert ev.retry is None


async def test_unknown_fields_are_ignored() -> None:
    (ev,) = await decode_all(["foo: bar", "data: x", ""])
    assert ev == Event(data="x")


async def test_field_without_colon_has_empty_value() -> None:
    (ev,) = await decode_all(["data", "data", ""])
    assert ev.data == "\n"


async def test_crlf_line_endings_are_stripped() -> None:
    (ev,) = await decode_all(["data: x\r\n", "id: 1\r", "\r\n"])
    assert (ev.data, ev.id) == ("x", "1")


async def test_priming_event_with_id_and_empty_data_is_dispatched() -> None:
    (ev,) = await decode_all(["id: abc", "data:", ""])
    assert (ev.id, ev.data) == ("abc", "")


async def test_blank_lines_without_fields_dispatch_nothing() -> None:
    assert await decode_all(["", "", ""]) == []


async def test_several_events_do_not_leak_fields() -> None:
    events = await decode_all(["event: a", "id: 1", "data: one", "", "data: two", ""])
    assert events == [Event(event="a", data="one", id="1"), Event(event="message", data="two")]


async def test_trailing_event_without_blank_line_is_yielded() -> None:
    events = await decode_all(["data: done"])
    assert [e.data for e in events] == ["done"]


def test_encode_data_only() -> None:
    assert encode(b'{"a":1}') == b'data: {"a":1}\n\n'


def test_encode_with_event_and_id() -> None:
    assert encode(b"x", event="message", event_id="s-1") == b"id: s-1\nevent: message\ndata: x\n\n"


async def test_encode_then_decode_round_trips() -> None:
    wire = encode(b'{"jsonrpc":"2.0"}', event="message", event_id="7") + encode(b"/messages", event="endpoint")
    events = await decode_all(wire.decode().split("\n"))
    assert events == [
        Event(event="message", data='{"jsonrpc":"2.0"}', id="7"),
        Event(event="endpoint", data="/messages"),
    ]


@pytest.mark.parametrize("cut", range(38))
async def test_bytes_fed_in_any_two_pieces_frame_cr_crlf_and_lf_lines_alike_and_drop_a_bom(cut: int) -> None:
    """The SSE spec ends a line with CR LF, LF or CR alone, and ignores a leading byte order mark:
    a CR LF split between two reads is one line end, not two (which would end an event early)."""
    stream = b"\xef\xbb\xbfdata: a\r\ndata: b\rid: 7\r\r\ndata: c\n\n"
    decoder = Decoder()
    events = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
    assert [(e.data, e.id) for e in events] == [("a\nb", "7"), ("c", None)]


async def test_an_empty_read_between_cr_and_lf_does_not_end_a_line_twice() -> None:
    decoder = Decoder()
    events = [e for chunk in (b"data: a\r", b"", b"\ndata: b\r\n\r\n") for e in decoder.feed(chunk)]
    assert [e.data for e in events] == ["a\nb"]
