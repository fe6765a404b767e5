"""Pushes to a collector's Loki push API exactly as Loki's documented
formats say, and checks each answer's status:

- protobuf: logproto.PushRequest built with the real protobuf library (the
  message types declared at run time from Loki's push.proto field list,
  Timestamp from google.protobuf), snappy block format (cramjam), as
  Promtail and Alloy send it;
- JSON, plain and gzip (Content-Encoding: gzip), as Fluent Bit sends it;
- bad bodies: garbage protobuf, garbage snappy, bad labels, a snappy bomb,
  a gzip bomb, an unsupported content type.

usage: loki_push.py URL        (prints OK; exits non-zero naming a mismatch)
"""
import gzip
import json
import sys
import urllib.error
import urllib.request

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2  # noqa: F401

F = descriptor_pb2.FieldDescriptorProto


def push_request_class():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="pkg/push/push.proto", package="logproto", syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"])

    def message(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("LabelPairAdapter", [("name", 1, F.TYPE_STRING, opt, None), ("value", 2, F.TYPE_STRING, opt, None)])
    message("EntryAdapter", [
        ("timestamp", 1, F.TYPE_MESSAGE, opt, ".google.protobuf.Timestamp"),
        ("line", 2, F.TYPE_STRING, opt, None),
        ("structuredMetadata", 3, F.TYPE_MESSAGE, rep, ".logproto.LabelPairAdapter"),
    ])
    message("StreamAdapter", [
        ("labels", 1, F.TYPE_STRING, opt, None),
        ("entries", 2, F.TYPE_MESSAGE, rep, ".logproto.EntryAdapter"),
        ("hash", 3, F.TYPE_UINT64, opt, None),
    ])
    message("PushRequest", [("streams", 1, F.TYPE_MESSAGE, rep, ".logproto.StreamAdapter")])
    pool = descriptor_pool.Default()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


PushRequest = push_request_class()


def proto_body(streams):
    req = PushRequest()
    for labels, entries in streams:
        s = req.streams.add(labels=labels)
        for ns, line, metadata in entries:
            e = s.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(ns, 1_000_000_000)
            for k, v in metadata.items():
                e.structuredMetadata.add(name=k, value=v)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def post(url, body, content_type, encoding=None, tenant=None):
    headers = {"Content-Type": content_type} if content_type else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    req = urllib.request.Request(url + "/loki/api/v1/push", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def expect(what, got, status, needle=""):
    if got[0] != status or needle not in got[1]:
        sys.exit(f"{what}: expected {status} containing {needle!r}, got {got}")


def main():
    url = sys.argv[1]
    good = proto_body([
        ('{app="web", env="prod"}', [
            (1700000000123456789, "proto line 1", {"trace_id": "abc"}),
            (1700000001000000000, "proto line 2 ünïcode", {}),
        ]),
        ('{app="db"}', [(1700000002000000001, "db line", {})]),
    ])
    expect("protobuf push", post(url, good, "application/x-protobuf"), 204)
    plain = json.dumps({"streams": [{"stream": {"job": "fluent-bit"}, "values": [
        ["1700000003000000000", "json line 1"],
        ["1700000003000000500", "json line 2", {"k": "v"}],
    ]}]}).encode()
    expect("json push", post(url, plain, "application/json"), 204)
    zipped = gzip.compress(json.dumps({"streams": [{"stream": {"job": "gz"}, "values": [
        ["1700000004000001000", "gzip line"]]}]}).encode())
    expect("gzip json push", post(url, zipped, "application/json", encoding="gzip"), 204)
    tenant = json.dumps({"streams": [{"stream": {"job": "t"}, "values": [["1700000005000000000", "tenant line"]]}]})
    expect("tenant push", post(url, tenant.encode(), "application/json", tenant="team-a"), 204)

    garbage_proto = bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff\xff\x0f garbage"))
    expect("garbage protobuf", post(url, garbage_proto, "application/x-protobuf"), 400, "protobuf")
    # States 32 bytes, then a copy from before the start.
    expect("garbage snappy", post(url, b"\x20\xff\xff\xff\xff\xff", "application/x-protobuf"), 400, "snappy")
    bad_labels = proto_body([('{app=web}', [(1, "x", {})])])
    expect("bad labels", post(url, bad_labels, "application/x-protobuf"), 400, "labels")
    bomb = bytes(cramjam.snappy.compress_raw(b"\x00" * (8 << 20)))
    expect("snappy bomb", post(url, bomb, "application/x-protobuf"), 413, "max_decompressed_bytes")
    gz_bomb = gzip.compress(b" " * (8 << 20))
    expect("gzip bomb", post(url, gz_bomb, "application/json", encoding="gzip"), 413, "max_decompressed_bytes")
    expect("text body", post(url, b"hello", "text/plain"), 415, "content type")
    expect("bad json", post(url, b'{"streams": [}', "application/json"), 400, "JSON")
    spoof = json.dumps({"streams": [{"stream": {"app": "spoof"}, "values": [
        ["1700000007000000000", "spoofed line", {"logpost.ts_ns": "1"}]]}]}).encode()
    expect("reserved metadata", post(url, spoof, "application/json"), 400, r'name \"logpost.ts_ns\" is reserved')
    # Still serving after all that.
    expect("push after bad ones", post(url, proto_body([('{app="late"}', [(1700000006000000000, "late line", {})])]),
                                       "application/x-protobuf"), 204)
    print("OK")


if __name__ == "__main__":
    main()
