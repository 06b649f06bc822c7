"""SPDY/3.1 framing, as moby/spdystream (and so kubectl) speaks it.

Only what port-forward needs: an incremental `FrameReader` that cuts a byte
stream (which may arrive in pieces of any size, e.g. one WebSocket message per
client `Write`) into frames, the encoders for the frames a server sends, and
the header-block codec. Header blocks are zlib-compressed with the SPDY/3
dictionary, and each direction of a connection is *one* zlib stream that
lives as long as the connection (every block is sync-flushed, never finished),
so a `HeaderCodec` belongs to one connection. There is no flow control: Go's
spdystream neither sends nor honours WINDOW_UPDATE for these streams.

Layouts (big-endian):

- control frame: ``1 | version(15)=3 | type(16) | flags(8) | length(24) | body``
- data frame: ``0 | stream id(31) | flags(8) | length(24) | payload``
- header block (before compression): ``count(32)`` then per header
  ``len(32) name len(32) value``; several values of one name are NUL-joined.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01

# RST_STREAM status codes (spdy/types.go).
RST_PROTOCOL_ERROR = 1
RST_REFUSED_STREAM = 3
RST_CANCEL = 5

# moby/spdystream spdy/dictionary.go (from Go's old net/spdy, BSD licence), at
# commit f0be51f30e2e861eaa06b3374fd0f3c2512038bc.
HEADER_DICTIONARY = bytes.fromhex(
    "000000076f7074696f6e73000000046865616400000004706f7374000000037075740000000664656c657465"
    "000000057472616365000000066163636570740000000e6163636570742d636861727365740000000f616363"
    "6570742d656e636f64696e670000000f6163636570742d6c616e67756167650000000d6163636570742d7261"
    "6e6765730000000361676500000005616c6c6f770000000d617574686f72697a6174696f6e0000000d636163"
    "68652d636f6e74726f6c0000000a636f6e6e656374696f6e0000000c636f6e74656e742d6261736500000010"
    "636f6e74656e742d656e636f64696e6700000010636f6e74656e742d6c616e67756167650000000e636f6e74"
    "656e742d6c656e67746800000010636f6e74656e742d6c6f636174696f6e0000000b636f6e74656e742d6d64"
    "350000000d636f6e74656e742d72616e67650000000c636f6e74656e742d7479706500000004646174650000"
    "0004657461670000000665787065637400000007657870697265730000000466726f6d00000004686f737400"
    "00000869662d6d617463680000001169662d6d6f6469666965642d73696e63650000000d69662d6e6f6e652d"
    "6d617463680000000869662d72616e67650000001369662d756e6d6f6469666965642d73696e63650000000d"
    "6c6173742d6d6f646966696564000000086c6f636174696f6e0000000c6d61782d666f727761726473000000"
    "06707261676d610000001270726f78792d61757468656e7469636174650000001370726f78792d617574686f"
    "72697a6174696f6e0000000572616e676500000007726566657265720000000b72657472792d616674657200"
    "00000673657276657200000002746500000007747261696c6572000000117472616e736665722d656e636f64"
    "696e6700000007757067726164650000000a757365722d6167656e7400000004766172790000000376696100"
    "0000077761726e696e67000000107777772d61757468656e746963617465000000066d6574686f6400000003"
    "6765740000000673746174757300000006323030204f4b0000000776657273696f6e00000008485454502f31"
    "2e310000000375726c000000067075626c69630000000a7365742d636f6f6b69650000000a6b6565702d616c"
    "697665000000066f726967696e31303031303132303132303232303532303633303033303233303333303433"
    "3035333036333037343032343035343036343037343038343039343130343131343132343133343134343135"
    "343136343137353032353034353035323033204e6f6e2d417574686f726974617469766520496e666f726d61"
    "74696f6e323034204e6f20436f6e74656e74333031204d6f766564205065726d616e656e746c793430302042"
    "6164205265717565737434303120556e617574686f72697a656434303320466f7262696464656e343034204e"
    "6f7420466f756e6435303020496e7465726e616c20536572766572204572726f72353031204e6f7420496d70"
    "6c656d656e746564353033205365727669636520556e617661696c61626c654a616e20466562204d61722041"
    "7072204d6179204a756e204a756c204175672053657074204f6374204e6f76204465632030303a30303a3030"
    "204d6f6e2c205475652c205765642c205468752c204672692c205361742c2053756e2c20474d546368756e6b"
    "65642c746578742f68746d6c2c696d6167652f706e672c696d6167652f6a70672c696d6167652f6769662c61"
    "70706c69636174696f6e2f786d6c2c6170706c69636174696f6e2f7868746d6c2b786d6c2c746578742f706c"
    "61696e2c746578742f6a6176617363726970742c7075626c6963707269766174656d61782d6167653d677a69"
    "702c6465666c6174652c73646368636861727365743d7574662d38636861727365743d69736f2d383835392d"
    "312c7574662d2c2a2c656e713d302e"
)
assert len(HEADER_DICTIONARY) == 1423

Headers = dict[str, str]


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3: the session cannot go on."""


@dataclass
class Frame:
    """One decoded frame. `kind` is a control type, or 0 for a data frame."""

    kind: int
    flags: int = 0
    stream_id: int = 0
    headers: Headers = field(default_factory=dict)
    data: bytes = b""
    """Data payload; for PING the 4-byte id; for RST_STREAM/GOAWAY the raw body."""

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class HeaderCodec:
    """The two zlib streams of one connection: what we send, what we receive."""

    def __init__(self) -> None:
        self._out = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zdict=HEADER_DICTIONARY)
        self._in = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def encode(self, headers: Headers) -> bytes:
        block = [struct.pack(">I", len(headers))]
        for name, value in headers.items():
            n, v = name.lower().encode(), value.encode()
            block.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
        return self._out.compress(b"".join(block)) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, compressed: bytes) -> Headers:
        try:
            raw = self._in.decompress(compressed)
        except zlib.error as e:
            raise ProtocolError(f"bad header block: {e}") from None
        try:
            (count,) = struct.unpack_from(">I", raw, 0)
            pos = 4
            headers: Headers = {}
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4 : pos + 4 + n].decode()
                pos += 4 + n
                (v,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4 : pos + 4 + v].decode()
                pos += 4 + v
                headers[name] = value
        except (struct.error, UnicodeDecodeError) as e:
            raise ProtocolError(f"bad header block: {e}") from None
        return headers


class FrameReader:
    """Cuts the incoming byte stream into frames, whatever the pieces it arrives in."""

    def __init__(self, codec: HeaderCodec) -> None:
        self._codec = codec
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head = bytes(self._buf[:8])
            body = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            frames.append(self._decode(head, body))
        return frames

    def _decode(self, head: bytes, body: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            stream_id = int.from_bytes(head[:4], "big") & 0x7FFFFFFF
            return Frame(0, flags, stream_id, data=body)
        version = int.from_bytes(head[:2], "big") & 0x7FFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        kind = int.from_bytes(head[2:4], "big")
        if kind == SYN_STREAM:
            if len(body) < 10:
                raise ProtocolError("short SYN_STREAM")
            stream_id = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
            return Frame(kind, flags, stream_id, self._codec.decode(body[10:]))
        if kind in (SYN_REPLY, HEADERS):
            stream_id = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
            return Frame(kind, flags, stream_id, self._codec.decode(body[4:]))
        if kind in (RST_STREAM, WINDOW_UPDATE):
            stream_id = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
            return Frame(kind, flags, stream_id, data=body)
        return Frame(kind, flags, data=body)


def _control(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body


def data_frame(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    return struct.pack(">II", stream_id, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def syn_stream(
    codec: HeaderCodec, stream_id: int, headers: Headers, fin: bool = False, priority: int = 0
) -> bytes:
    body = struct.pack(">IIBB", stream_id, 0, priority << 5, 0) + codec.encode(headers)
    return _control(SYN_STREAM, FLAG_FIN if fin else 0, body)


def syn_reply(codec: HeaderCodec, stream_id: int, headers: Headers, fin: bool = False) -> bytes:
    body = struct.pack(">I", stream_id) + codec.encode(headers)
    return _control(SYN_REPLY, FLAG_FIN if fin else 0, body)


def rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def ping(data: bytes) -> bytes:
    """A PING frame carrying `data` (the 4-byte id): the answer to a PING is its echo."""
    return _control(PING, 0, data)


def goaway(last_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))
