"""SPDY/3.1 framing: frame layouts, reassembly from arbitrary pieces, and the
connection-long zlib header streams with the SPDY dictionary."""

from __future__ import annotations

import struct
import zlib

import pytest

from nanokube.kubelet.streaming import spdy


def test_dictionary_is_spdystreams() -> None:
    # zlib names a preset dictionary by its Adler-32 in the stream header; Go's
    # reader refuses blocks compressed with any other dictionary.
    assert zlib.adler32(spdy.HEADER_DICTIONARY) == 3821447106
    assert spdy.HEADER_DICTIONARY.endswith(b"enq=0.")


def test_control_frame_layout() -> None:
    frame = spdy.rst_stream(5, spdy.RST_CANCEL)
    assert frame == bytes.fromhex("80030003 00000008 00000005 00000005")
    assert spdy.ping(b"\x00\x00\x00\x07") == bytes.fromhex("80030006 00000004 00000007")
    assert spdy.goaway(9) == bytes.fromhex("80030007 00000008 00000009 00000000")


def test_data_frame_layout() -> None:
    assert spdy.data_frame(3, b"ab", fin=True) == bytes.fromhex("00000003 01000002 6162")
    assert spdy.data_frame(1, b"") == bytes.fromhex("00000001 00000000")


def test_header_blocks_share_one_zlib_stream_per_direction() -> None:
    sender, receiver = spdy.HeaderCodec(), spdy.HeaderCodec()
    reader = spdy.FrameReader(receiver)
    first = spdy.syn_stream(sender, 1, {"streamtype": "error", "port": "80", "requestid": "0"})
    second = spdy.syn_stream(sender, 3, {"streamtype": "data", "port": "80", "requestid": "0"})
    # The second block refers back into the first one's window: decoding it alone fails.
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameReader(spdy.HeaderCodec()).feed(second)
    frames = reader.feed(first + second)
    assert [(f.kind, f.stream_id, f.headers["streamtype"]) for f in frames] == [
        (spdy.SYN_STREAM, 1, "error"),
        (spdy.SYN_STREAM, 3, "data"),
    ]


def test_header_block_format_uncompressed() -> None:
    codec = spdy.HeaderCodec()
    raw = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY).decompress(codec.encode({"Port": "80"}))
    assert (
        raw == struct.pack(">I", 1) + struct.pack(">I", 4) + b"port" + struct.pack(">I", 2) + b"80"
    )


def test_reader_reassembles_byte_by_byte() -> None:
    sender = spdy.HeaderCodec()
    stream = (
        spdy.syn_stream(sender, 1, {"streamtype": "error"})
        + spdy.data_frame(1, b"", fin=True)
        + spdy.ping(b"\x00\x00\x00\x01")
        + spdy.data_frame(3, b"hello")
    )
    reader = spdy.FrameReader(spdy.HeaderCodec())
    frames = [f for byte in stream for f in reader.feed(bytes([byte]))]
    assert [f.kind for f in frames] == [spdy.SYN_STREAM, 0, spdy.PING, 0]
    assert frames[1].fin and frames[1].stream_id == 1
    assert frames[2].data == b"\x00\x00\x00\x01"
    assert frames[3].data == b"hello" and not frames[3].fin


def test_syn_reply_decodes() -> None:
    sender = spdy.HeaderCodec()
    frame = spdy.FrameReader(spdy.HeaderCodec()).feed(spdy.syn_reply(sender, 7, {}))[0]
    assert (frame.kind, frame.stream_id, frame.headers) == (spdy.SYN_REPLY, 7, {})


def test_other_versions_are_refused() -> None:
    frame = struct.pack(">HHI", 0x8002, spdy.PING, 4) + b"\x00\x00\x00\x01"
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameReader(spdy.HeaderCodec()).feed(frame)
