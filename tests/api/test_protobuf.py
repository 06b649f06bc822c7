"""Tests for nanokube.api.protobuf: protobuf request bodies become the dicts JSON clients send.

Aspects:
- real kubectl 1.33 bodies (`protobuf_fixtures/*.pb`, recorded by `capture.py`) decode to
  exactly `kubectl ... --dry-run=client -o json` of the same command;
- upstream's own pairs (`protobuf_fixtures/upstream/`, kubernetes/api testdata) round-trip:
  every field filled, so JSON names, inlining and special types are all exercised;
- presence rules: pointer zeros survive, omitempty zeros go, absent lists are null;
- wire details: negative int32, packed and unpacked repeated ints, unknown fields, nested
  `k8s\\0` bodies;
- malformed bodies raise BadRequest;
- the table says where it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nanokube.api import protobuf
from nanokube.api.errors import BadRequest

FIXTURES = Path(__file__).parent / "protobuf_fixtures"
CASES: dict[str, Any] = json.loads((FIXTURES / "cases.json").read_text())
UPSTREAM = sorted(p.stem for p in (FIXTURES / "upstream").glob("*.pb"))


def load(name: str, folder: Path = FIXTURES) -> tuple[bytes, Any]:
    return (folder / f"{name}.pb").read_bytes(), json.loads((folder / f"{name}.json").read_text())


# A minimal protobuf writer, to build bodies kubectl would not send.
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(num: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    return protobuf.MAGIC + field(1, type_meta) + field(2, raw) + field(3, "") + field(4, "")


def nested_raw_extensions(depth: int) -> bytes:
    """WatchEvents whose object is a WatchEvent whose object is ... `depth` levels deep."""
    body = envelope("v1", "Namespace", b"")
    for _ in range(depth):
        body = envelope("meta.k8s.io/v1", "WatchEvent", field(2, field(1, body)))
    return body


# --- real kubectl bodies -----------------------------------------------------------------


def test_fixtures_come_from_kubectl_1_33() -> None:
    assert len(CASES) >= 30
    for case in CASES.values():
        assert case["userAgent"].startswith("kubectl/v1.33.")
        assert case["contentType"] == protobuf.CONTENT_TYPE


@pytest.mark.parametrize("name", sorted(CASES))
def test_kubectl_body_decodes_to_dry_run_json(name: str) -> None:
    body, expected = load(name)
    assert protobuf.decode(body) == expected


def test_zero_replicas_survive() -> None:
    """A pointer zero is on the wire and must stay, or the server would default it to 1."""
    body, _ = load("deployment-zero-replicas")
    assert protobuf.decode(body)["spec"]["replicas"] == 0


def test_int_or_string_keeps_its_type() -> None:
    assert protobuf.decode(load("pdb-percent")[0])["spec"]["minAvailable"] == "50%"
    assert protobuf.decode(load("pdb-int")[0])["spec"]["maxUnavailable"] == 0


def test_secret_bytes_are_base64() -> None:
    assert protobuf.decode(load("secret-generic")[0])["data"] == {"k": "dg=="}


def test_token_request_type_comes_from_the_envelope() -> None:
    """The POST goes to serviceaccounts/sa1/token, but the body is a TokenRequest."""
    obj = protobuf.decode(load("token-bound")[0])
    assert (obj["apiVersion"], obj["kind"]) == ("authentication.k8s.io/v1", "TokenRequest")
    assert obj["spec"]["boundObjectRef"]["uid"] == "42"  # proto name uID, JSON name uid
    assert obj["spec"]["expirationSeconds"] is None  # a nil pointer without omitempty


def test_certificate_approval_carries_the_whole_csr() -> None:
    """`certificate approve` PUTs the CSR it read, plus an Approved condition."""
    obj = protobuf.decode(load("certificate-approve")[0])
    assert obj["metadata"]["resourceVersion"] == "7"
    assert obj["spec"]["usages"] == ["client auth"]
    (condition,) = obj["status"]["conditions"]
    assert (condition["type"], condition["status"]) == ("Approved", "True")
    assert condition["lastTransitionTime"] is None  # zero Time, non-pointer: null


# --- upstream testdata round trip ----------------------------------------------------------


@pytest.mark.parametrize("name", UPSTREAM)
def test_upstream_testdata_round_trips(name: str) -> None:
    body, expected = load(name, FIXTURES / "upstream")
    assert protobuf.decode(body) == expected


def test_upstream_sample_is_broad() -> None:
    assert len(UPSTREAM) >= 80
    assert "core.v1.Pod" in UPSTREAM and "core.v1.DeleteOptions" in UPSTREAM


# --- presence rules and wire details --------------------------------------------------------


def test_absent_fields_render_like_go() -> None:
    """Absent: pointer+omitempty dropped, list without omitempty null, struct rendered."""
    spec = field(3, b"")  # selector absent, template present but empty
    obj = protobuf.decode(envelope("apps/v1", "Deployment", field(2, spec)))
    assert obj["metadata"] == {"creationTimestamp": None}
    assert "replicas" not in obj["spec"]
    assert obj["spec"]["selector"] is None
    assert obj["spec"]["template"]["spec"]["containers"] is None
    assert obj["spec"]["strategy"] == {}
    assert obj["status"] == {}


def test_negative_int32_and_omitempty_zero() -> None:
    """Negative int32s arrive as 10-byte varints; a non-pointer omitempty zero is dropped."""
    raw = field(1, field(1, "low")) + field(2, -5) + field(3, 0)
    obj = protobuf.decode(envelope("scheduling.k8s.io/v1", "PriorityClass", raw))
    assert obj["value"] == -5
    assert "globalDefault" not in obj


@pytest.mark.parametrize("packed", [False, True])
def test_repeated_ints_packed_or_not(packed: bool) -> None:
    ports = [80, 8080]
    if packed:
        raw = field(1, b"".join(varint(p) for p in ports))
    else:
        raw = b"".join(field(1, p) for p in ports)
    obj = protobuf.decode(envelope("v1", "PodPortForwardOptions", raw))
    assert obj["ports"] == ports


def test_unknown_fields_are_dropped() -> None:
    raw = field(1, field(1, "cm") + field(99, "x")) + field(42, 7) + field(2, field(1, "k"))
    obj = protobuf.decode(envelope("v1", "ConfigMap", raw))
    assert obj["metadata"]["name"] == "cm"
    assert obj["data"] == {"k": ""}  # a map entry without a value holds the zero value


def test_times() -> None:
    meta = field(1, "e") + field(8, field(1, 1_700_000_000) + field(2, 999))
    event_time = field(1, 1_700_000_000) + field(2, 123_456_789)
    obj = protobuf.decode(
        envelope("events.k8s.io/v1", "Event", field(1, meta) + field(2, event_time))
    )
    assert obj["metadata"]["creationTimestamp"] == "2023-11-14T22:13:20Z"  # whole seconds
    assert obj["eventTime"] == "2023-11-14T22:13:20.123456Z"


def test_nested_protobuf_in_raw_extension() -> None:
    """A RawExtension may hold a whole k8s\\0 body (an admission review's object)."""
    inner = envelope("v1", "Namespace", field(1, field(1, "ns")))
    request = field(1, "uid") + field(9, field(1, inner))
    obj = protobuf.decode(envelope("admission.k8s.io/v1", "AdmissionReview", field(1, request)))
    assert obj["request"]["object"]["kind"] == "Namespace"
    assert obj["request"]["object"]["metadata"]["name"] == "ns"


def test_delete_options_under_any_group() -> None:
    obj = protobuf.decode(envelope("v1", "DeleteOptions", field(4, "Background")))
    assert obj == {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}


# --- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"kind":"ConfigMap"}', id="json-not-protobuf"),
        pytest.param(protobuf.MAGIC, id="empty-envelope"),
        pytest.param(envelope("v1", "NoSuchKind", b""), id="unknown-kind"),
        pytest.param(envelope("example.com/v1", "Widget", b""), id="unknown-group"),
        pytest.param(envelope("v1", "ConfigMap", b"\x0a\x05ab"), id="length-past-end"),
        pytest.param(envelope("v1", "ConfigMap", b"\x0a"), id="truncated-varint"),
        pytest.param(envelope("v1", "ConfigMap", b"\x0b"), id="group-wire-type"),
        pytest.param(envelope("v1", "ConfigMap", field(1, 5)), id="varint-for-message"),
        pytest.param(envelope("v1", "ConfigMap", field(1, field(1, b"\xff"))), id="bad-utf8"),
        pytest.param(
            envelope("admission.k8s.io/v1", "AdmissionReview", field(1, field(9, field(1, "{")))),
            id="raw-not-json",
        ),
        pytest.param(protobuf.MAGIC + b"\x0a\x80\x80", id="truncated-envelope"),
        pytest.param(nested_raw_extensions(1000), id="nested-too-deeply"),
    ],
)
def test_malformed_body_is_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        protobuf.decode(body)


# --- public surface ----------------------------------------------------------------------------


def test_table_provenance() -> None:
    sources = protobuf.table_provenance()["sources"]
    for repo in ("github.com/kubernetes/api", "github.com/kubernetes/apimachinery"):
        assert sources[repo]["tag"] == "v0.33.1"
        assert len(sources[repo]["commit"]) == 40


def test_public_api() -> None:
    assert sorted(protobuf.__all__) == ["CONTENT_TYPE", "MAGIC", "decode", "table_provenance"]
