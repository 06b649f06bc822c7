"""Generate nanokube/api/protobuf_table.json from upstream Kubernetes API definitions.

kubectl's typed clients send protobuf bodies; nanokube keeps JSON dicts. To turn one into
the other, the decoder (`nanokube/api/protobuf.py`) needs, for every message, each field
number's JSON name, wire type and how Go's `encoding/json` would render it. The
`generated.proto` files give numbers and types, but not the JSON names (16 differ), not
which embedded structs are flattened (`json:",inline"`), nor pointer-ness and
`omitempty`, which decide presence. Those come from the Go struct tags, so this tool
reads both, joined by message name and field number (`protobuf:"bytes,N,..."`).

It reads two git mirrors at one tag (never a work tree) and writes a table:

    {"provenance": {...},
     "groups": {"apps": "k8s.io.api.apps.v1", ...}            # per apiVersion
     "lists": ["k8s.io.apimachinery.pkg.apis.meta.v1.Verbs", ...],  # `type X []T`
     "messages": {FQN: {"N": [json_name, type, flags], ...}}}

`type` is a proto scalar name, a message FQN, or `[key_type, value_type]` for a map;
`flags` holds r (repeated), o (omitempty), z (omitzero), p (Go pointer), i (inline).
Fields are listed in .proto order, which is Go struct order. A message with no Go struct
of its own (`type MatchCondition v1.MatchCondition`, `type List metav1.List`) keeps its
proto names and no flags; the tool warns, and for v0.33.1 that is exactly right.

Usage:
    python tools/gen_protobuf_table.py --api GITDIR --apimachinery GITDIR --tag v0.33.1

Regenerate rather than edit the output.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

APIMACHINERY_PACKAGES = (
    "pkg/apis/meta/v1",
    "pkg/apis/meta/v1beta1",
    "pkg/runtime",
    "pkg/util/intstr",
    "pkg/api/resource",
)

MESSAGE_RE = re.compile(r"^message (\w+) \{(.*?)^\}", re.M | re.S)
PROTO_FIELD_RE = re.compile(
    r"^\s*(?:(optional|repeated|required) ([\w.]+)|map<([\w.]+), ?([\w.]+)>) (\w+) = (\d+);", re.M
)
GO_STRUCT_RE = re.compile(r"^type (\w+) struct \{\n(.*?)^\}", re.M | re.S)
GO_LIST_RE = re.compile(r"^type (\w+) \[\]", re.M)
GO_FIELD_RE = re.compile(r"^\s*(?:(\w+)\s+)?(\*?[\w.\[\]*]+)\s+`([^`]*)`")
GROUP_RE = re.compile(r'GroupName\s*=\s*"([^"]*)"')


def git(gitdir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={gitdir}", *args], check=True, capture_output=True, text=True
    ).stdout


def tag_value(tags: str, key: str) -> str | None:
    m = re.search(rf'{key}:"([^"]*)"', tags)
    return m.group(1) if m else None


def parse_go(sources: list[str]) -> tuple[dict[str, dict[int, tuple[str, str, bool]]], set[str]]:
    """Struct name -> field number -> (json tag, Go type, embedded); and the `[]T` types."""
    structs: dict[str, dict[int, tuple[str, str, bool]]] = {}
    lists: set[str] = set()
    for src in sources:
        lists.update(GO_LIST_RE.findall(src))
        for name, body in GO_STRUCT_RE.findall(src):
            fields: dict[int, tuple[str, str, bool]] = {}
            for line in body.splitlines():
                m = GO_FIELD_RE.match(line)
                if not m:
                    continue
                field_name, go_type, tags = m.groups()
                proto = tag_value(tags, "protobuf")
                if proto is None or proto == "-":  # untagged, or custom-marshalled (Time)
                    continue
                number = int(proto.split(",")[1])
                json_tag = tag_value(tags, "json")
                if json_tag is None:  # untagged: Go uses the field name; embedded: inlined
                    json_tag = field_name if field_name else ",inline"
                fields[number] = (json_tag, go_type, field_name is None)
            structs[name] = fields
    return structs, lists


def parse_proto(text: str) -> tuple[str, dict[str, list[tuple[int, str, str | list[str], bool]]]]:
    """Proto package and message -> [(number, proto name, type, repeated)] in file order."""
    package = re.search(r"^package ([\w.]+);", text, re.M)
    assert package, "no package line"
    messages: dict[str, list[tuple[int, str, str | list[str], bool]]] = {}
    for name, body in MESSAGE_RE.findall(text):
        fields: list[tuple[int, str, str | list[str], bool]] = []
        for label, ftype, mkey, mval, fname, num in PROTO_FIELD_RE.findall(body):
            if mkey:
                fields.append((int(num), fname, [mkey, mval], False))
            else:
                fields.append((int(num), fname, ftype, label == "repeated"))
        messages[name] = fields
    return package.group(1), messages


SCALARS = {"string", "bool", "bytes", "int32", "int64", "uint32", "uint64", "double", "float"}


def qualify(ftype: str, package: str, local: set[str]) -> str:
    if ftype in SCALARS:
        return ftype
    if ftype.startswith("."):
        return ftype[1:]
    if ftype in local:
        return f"{package}.{ftype}"
    raise ValueError(f"unresolved proto type {ftype} in {package}")


def build_package(gitdir: Path, tag: str, pkgdir: str, out: dict, warnings: list[str]) -> None:
    files = git(gitdir, "ls-tree", "--name-only", f"{tag}:{pkgdir}").split()
    package, messages = parse_proto(git(gitdir, "show", f"{tag}:{pkgdir}/generated.proto"))
    sources = [
        git(gitdir, "show", f"{tag}:{pkgdir}/{f}")
        for f in files
        if f.endswith(".go")
        and not f.endswith("_test.go")
        and not f.startswith("zz_generated")
        and f != "generated.pb.go"
    ]
    structs, lists = parse_go(sources)
    group = next((m for s in sources if (m := GROUP_RE.search(s))), None)
    version = pkgdir.rsplit("/", 1)[1]
    if group:
        api_version = f"{group.group(1)}/{version}" if group.group(1) else version
        out["groups"][api_version] = package
    local = set(messages)
    for name, fields in messages.items():
        fqn = f"{package}.{name}"
        if name in lists:
            out["lists"].append(fqn)
        go_fields = structs.get(name, {})
        if name not in structs and name not in lists:
            warnings.append(f"{fqn}: no Go struct, using proto names")
        table: dict[str, list] = {}
        for number, proto_name, ftype, repeated in fields:
            if isinstance(ftype, list):
                rtype: str | list[str] = [qualify(t, package, local) for t in ftype]
            else:
                rtype = qualify(ftype, package, local)
            json_tag, go_type, embedded = go_fields.get(number, (proto_name, "", False))
            if number not in go_fields and name in structs:
                warnings.append(f"{fqn}.{proto_name}: no Go field with number {number}")
            json_name, *opts = json_tag.split(",")
            if json_name == "-":
                json_name = proto_name  # custom-marshalled types; the decoder handles them
            flags = "r" if repeated else ""
            flags += "o" if "omitempty" in opts else ""
            flags += "z" if "omitzero" in opts else ""
            flags += "p" if go_type.startswith("*") else ""
            if embedded and not json_name:
                flags += "i"
            table[str(number)] = [json_name, rtype, flags]
        out["messages"][fqn] = table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", type=Path, required=True, help="git dir of kubernetes/api")
    parser.add_argument("--apimachinery", type=Path, required=True, help="git dir")
    parser.add_argument("--tag", default="v0.33.1")
    parser.add_argument("--out", type=Path, default=Path("nanokube/api/protobuf_table.json"))
    args = parser.parse_args()

    out: dict = {
        "provenance": {
            "generator": "tools/gen_protobuf_table.py",
            "licence": "Apache-2.0, see protobuf_table.NOTICE",
            "sources": {
                "github.com/kubernetes/api": {
                    "tag": args.tag,
                    "commit": git(args.api, "rev-parse", f"{args.tag}^{{commit}}").strip(),
                },
                "github.com/kubernetes/apimachinery": {
                    "tag": args.tag,
                    "commit": git(args.apimachinery, "rev-parse", f"{args.tag}^{{commit}}").strip(),
                },
            },
        },
        "groups": {},
        "lists": [],
        "messages": {},
    }
    warnings: list[str] = []
    api_dirs = sorted(
        f.rsplit("/", 1)[0]
        for f in git(args.api, "ls-tree", "-r", "--name-only", args.tag).split()
        if f.endswith("/generated.proto")
    )
    for gitdir, dirs in ((args.api, api_dirs), (args.apimachinery, APIMACHINERY_PACKAGES)):
        for pkgdir in dirs:
            build_package(gitdir, args.tag, pkgdir, out, warnings)
    for w in warnings:
        print("warning:", w, file=sys.stderr)
    args.out.write_text(json.dumps(out, separators=(",", ":"), sort_keys=False) + "\n")
    fields = sum(len(m) for m in out["messages"].values())
    print(f"{len(out['messages'])} messages, {fields} fields -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
