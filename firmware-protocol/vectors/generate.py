#!/usr/bin/env python3
"""Generates crc.txt, frames.txt and messages.txt from PROTOCOL.md, independently of the Rust crate.

This is a second implementation of the framing and message encodings, written from the spec in plain
Python (no libraries), so that the golden vectors are not merely the Rust encoder's output played
back to itself: `tests/vectors.rs` checks the Rust code against what this script wrote. It also
serves firmware authors as a short, runnable reference.

Run from anywhere: `python3 firmware-protocol/vectors/generate.py` (rewrites the three files).
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------------
# CRC-32C, bit by bit from the parameters (no table, so it cannot share a table bug).


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # catalogue check value
assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
assert crc32c(b"\xff" * 32) == 0x62A8AB43  # RFC 3720 B.4
assert crc32c(bytes(range(32))) == 0x46DD794E  # RFC 3720 B.4
assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C  # RFC 3720 B.4

# ---------------------------------------------------------------------------------------------
# COBS


def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block = bytearray()
                last_full = True
                continue
        last_full = False
    # After a full block that ended the data, no empty block follows.
    if not (data and data[-1] != 0 and last_full):
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def frame(version, frame_type, flags, seq, payload: bytes) -> bytes:
    header = bytes([version, frame_type, flags, 0]) + seq.to_bytes(4, "little")
    body = header + payload
    return cobs_encode(body + crc32c(body).to_bytes(4, "little")) + b"\x00"


assert cobs_encode(b"") == b"\x01"
assert cobs_encode(b"\x00") == b"\x01\x01"
assert cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
assert cobs_encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255))
assert cobs_encode(bytes(range(1, 255)) + b"\x00") == b"\xff" + bytes(range(1, 255)) + b"\x01\x01"

# ---------------------------------------------------------------------------------------------
# Message primitives


def varint(v: int) -> bytes:
    assert v >= 0
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(v: int) -> int:
    return (v << 1) if v >= 0 else ((-v) << 1) - 1


def sint(v: int) -> bytes:
    return varint(zigzag(v))


def string(s: str) -> bytes:
    b = s.encode("utf-8")
    return varint(len(b)) + b


def boolean(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def option(v, enc) -> bytes:
    return b"\x00" if v is None else b"\x01" + enc(v)


def record(fields: bytes) -> bytes:
    return varint(len(fields)) + fields


def front_coded(prev: str, s: str) -> bytes:
    p, b = prev.encode("utf-8"), s.encode("utf-8")
    shared = 0
    while shared < min(len(p), len(b)) and p[shared] == b[shared]:
        shared += 1
    return varint(shared) + varint(len(b) - shared) + b[shared:]


U64 = 1 << 64

MESSAGE_TYPES = {
    "hello": 0x01, "welcome": 0x02, "clock_sync": 0x03, "error": 0x04, "bye": 0x05,
    "read_batch": 0x10, "read_ack": 0x11, "route_offer": 0x20, "route_accept": 0x21,
    "route_data": 0x22, "message_code_table": 0x23, "field_orders": 0x24,
}
UNITS = {"cf": 1, "hcf": 2, "gal": 3, "kgal": 4, "m3": 5}
ORDER_KINDS = {"reread": 1, "door_hanger": 2, "shut_off": 3, "turn_on": 4, "meter_change": 5}
READ_TYPES = {"regular": 1, "high_confirmed": 2, "low_confirmed": 3, "skipped": 4}
METHODS = {"keyed": 1, "probe": 2, "radio": 3}
BYE_REASONS = {"done": 1, "cancelled": 2, "shutting_down": 3, "error": 4}
REFUSAL_REASONS = {"seq_conflict": 1, "bad_time": 2, "off_route": 3, "bad_read": 4}
# Protocol 2 appended fields to these types (PROTOCOL.md 3.1); every other type is at version 1.
MESSAGE_VERSIONS = {"hello": 2, "welcome": 2, "read_ack": 2, "route_data": 2}


def code(table, v):
    """An enum value: a name from the table, or an int for an unknown code."""
    return v if isinstance(v, int) else table[v]


def order(o) -> bytes:
    return varint(o["order_id"]) + bytes([code(ORDER_KINDS, o["kind"])]) + string(o["instructions"])


def encode_read(r) -> bytes:
    out = varint(r["device_seq"]) + string(r["meter_id"]) + varint(r["reading"])
    out += sint(r["read_time"]) + bytes([code(READ_TYPES, r["read_type"]), code(METHODS, r["method"])])
    out += varint(len(r["message_codes"])) + b"".join(string(c) for c in r["message_codes"])
    out += option(r["skip_code"], string) + option(r["note"], string) + string(r["reader_id"])

    def completion(o):
        return varint(o["order_id"]) + option(o["new_meter_id"], string) + option(o["new_meter_initial"], varint)

    return out + option(r["order"], completion)


def encode_route(m) -> bytes:
    stops = m["stops"]
    out = string(m["route_id"]) + string(m["cycle_id"]) + varint(m["window_from"]) + varint(m["window_to"])
    out += varint(len(stops))
    prev = 0
    for s in stops:
        out += sint(s["sequence"] - prev)
        prev = s["sequence"]
    for field in ["account_id", "customer_name", "service_address", "meter_id", "location_note", "hazard_note"]:
        prev = ""
        for s in stops:
            out += front_coded(prev, s[field])
            prev = s[field]
    out += b"".join(bytes([s["dials"]]) for s in stops)
    out += b"".join(bytes([s["decimals"]]) for s in stops)
    out += b"".join(varint(s["multiplier"]) for s in stops)
    out += b"".join(bytes([code(UNITS, s["unit"])]) for s in stops)
    out += b"".join(varint(s["previous_reading"]) for s in stops)
    out += b"".join(sint(s["previous_read_date"] - m["window_from"]) for s in stops)

    def offset(limit, base):
        d = (limit - base) % U64  # wrapping, then read as two's complement
        return sint(d - U64 if d >= U64 // 2 else d)

    out += b"".join(offset(s["low_limit"], s["previous_reading"]) for s in stops)
    out += b"".join(offset(s["high_limit"], s["previous_reading"]) for s in stops)
    orders = [(i, o) for i, s in enumerate(stops) for o in s["field_orders"]]
    out += varint(len(orders))
    out += b"".join(record(varint(i) + order(o)) for i, o in orders)
    # Version 2: the limits for a read on the window's last day, after the orders.
    out += b"".join(offset(s["low_limit_last"], s["previous_reading"]) for s in stops)
    out += b"".join(offset(s["high_limit_last"], s["previous_reading"]) for s in stops)
    return out


def encode_message(m) -> bytes:
    t = m["type"]
    if t == "unknown":
        return bytes([m["message_type"]]) + bytes.fromhex(m["body"])
    body = b""
    if t == "hello":
        body = string(m["device_id"]) + string(m["firmware_version"])
        body += varint(len(m["protocol_versions"])) + bytes(m["protocol_versions"])
        body += varint(m["max_payload"]) + bytes([m["window"], m["compression"]]) + varint(m["pending_reads"])
        body += varint(m["state_id"])
    elif t == "welcome":
        body = bytes([m["protocol_version"]]) + varint(m["max_payload"]) + bytes([m["window"], m["compression"]])
        body += sint(m["server_time"]) + varint(len(m["assigned_routes"]))
        body += b"".join(string(r) for r in m["assigned_routes"])
        body += varint(m["held_seq"])
    elif t == "clock_sync":
        body = sint(m["server_time"])
    elif t == "route_offer":
        body = varint(m["transfer_id"]) + string(m["route_id"]) + string(m["cycle_id"])
        body += varint(m["stops"]) + varint(m["bytes"]) + boolean(m["compressed"])
    elif t == "route_accept":
        body = varint(m["transfer_id"]) + varint(m["resume_from"])
    elif t == "route_data":
        body = encode_route(m)
    elif t == "message_code_table":
        body = varint(len(m["codes"])) + b"".join(
            record(string(c["code"]) + string(c["category"]) + string(c["description"]) + boolean(c["requires_follow_up"]))
            for c in m["codes"])
    elif t == "field_orders":
        body = varint(len(m["orders"])) + b"".join(
            record(string(o["account_id"]) + string(o["meter_id"]) + order(o["order"])) for o in m["orders"])
    elif t == "read_batch":
        body = varint(len(m["reads"])) + b"".join(record(encode_read(r)) for r in m["reads"])
    elif t == "read_ack":
        body = varint(m["up_to_seq"]) + varint(len(m["refused"])) + b"".join(
            record(varint(r["device_seq"]) + bytes([code(REFUSAL_REASONS, r["reason"])])) for r in m["refused"])
    elif t == "error":
        body = varint(m["code"]) + string(m["text"])
    elif t == "bye":
        body = bytes([code(BYE_REASONS, m["reason"])])
    else:
        raise ValueError(t)
    return bytes([MESSAGE_TYPES[t], MESSAGE_VERSIONS.get(t, 1)]) + body


# ---------------------------------------------------------------------------------------------
# Text output: `key = value` lines, values as JSON-ish literals, enum codes by name or `unknown(N)`.


def literal(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        return "[" + ", ".join(str(x) for x in v) + "]"
    raise TypeError(v)


ENUM_FIELDS = {"unit": UNITS, "kind": ORDER_KINDS, "read_type": READ_TYPES, "method": METHODS, "reason": BYE_REASONS}


def flatten(prefix, v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            flatten(f"{prefix}.{k}" if prefix else k, x, out)
    elif isinstance(v, list) and v and not all(isinstance(x, int) for x in v):
        out.append((f"{prefix}.len", str(len(v))))
        for i, x in enumerate(v):
            if isinstance(x, (dict, list)):
                flatten(f"{prefix}[{i}]", x, out)
            else:
                out.append((f"{prefix}[{i}]", literal(x)))
    elif isinstance(v, list) and not v:
        out.append((f"{prefix}.len", "0"))
    else:
        leaf = prefix.rsplit(".", 1)[-1]
        if leaf in ENUM_FIELDS and isinstance(v, int):
            out.append((prefix, f"unknown({v})"))
        elif leaf in ENUM_FIELDS:
            out.append((prefix, v))
        else:
            out.append((prefix, literal(v)))


def write(name, header, cases):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        f.write(header.strip() + "\n")
        for case in cases:
            f.write("\n")
            for k, v in case:
                f.write(f"{k} = {v}\n")


# ---------------------------------------------------------------------------------------------
# CRC vectors

crc_inputs = [
    ("check_ascii_123456789", b"123456789"),
    ("empty", b""),
    ("rfc3720_32_zeros", bytes(32)),
    ("rfc3720_32_ones", b"\xff" * 32),
    ("rfc3720_incrementing", bytes(range(32))),
    ("rfc3720_decrementing", bytes(range(31, -1, -1))),
    ("ascii_quick_brown_fox", b"The quick brown fox jumps over the lazy dog"),
    ("ping_header_seq_7", bytes([1, 3, 0, 0, 7, 0, 0, 0])),
]
write(
    "crc.txt",
    """
# CRC-32C (Castagnoli): poly 0x1EDC6F41 (reflected 0x82F63B78), init 0xFFFFFFFF, refin/refout true,
# xorout 0xFFFFFFFF. `input` is hex (`-` for none); `crc` is the value as a number (sent little-endian in frames).
# Generated by generate.py; the rfc3720_* values are from RFC 3720 appendix B.4.
""",
    [[("name", n), ("input", d.hex() or "-"), ("crc", f"0x{crc32c(d):08x}")] for n, d in crc_inputs],
)

# ---------------------------------------------------------------------------------------------
# Frame vectors

frame_cases = []


def ok_frame(name, version, ftype, flags, seq, payload, note=None, prefix=b""):
    header = bytes([version, ftype, flags, 0]) + seq.to_bytes(4, "little")
    raw = header + payload + crc32c(header + payload).to_bytes(4, "little")
    case = [("name", name)]
    if note:
        case.append(("note", literal(note)))
    case += [
        ("version", str(version)), ("frame_type", str(ftype)), ("flags", f"0x{flags:02x}"), ("seq", str(seq)),
        ("payload", payload.hex() or "-"), ("crc", f"0x{crc32c(header + payload):08x}"), ("unstuffed", raw.hex()),
        ("wire", (prefix + frame(version, ftype, flags, seq, payload)).hex()), ("expect", "frame"),
    ]
    frame_cases.append(case)


def bad_frame(name, wire: bytes, error, note):
    frame_cases.append([("name", name), ("note", literal(note)), ("wire", wire.hex()), ("expect", error)])


ok_frame("ping_seq_0", 1, 3, 0, 0, b"", "smallest frame: header and CRC only")
ok_frame("data_hello", 1, 1, 0, 1, b"hello")
ok_frame("ack_flags_and_zero_bytes", 1, 2, 0x01, 0x04030201, bytes([0, 0, 0, 5, 0, 0, 0, 0]),
         "zeros in the payload become COBS code bytes")
ok_frame("reset_max_seq", 1, 5, 0, 0xFFFFFFFF, bytes([0x42]))
ok_frame("unknown_type_42", 1, 42, 0, 9, b"", "decoders deliver unknown frame types; the transfer layer ignores them")
ok_frame("data_full_cobs_block", 1, 1, 0, 2, bytes((i % 255) + 1 for i in range(300)),
         "300 non-zero payload bytes: a 255 code (254 bytes, no implied zero) in the middle")
ok_frame("data_max_default_payload", 1, 1, 0x80, 1000, bytes((i * 7) & 0xFF for i in range(1024)),
         "1024 payload bytes, the default limit")
ok_frame("leading_delimiters_are_skipped", 1, 4, 0, 3, b"", "a sender may send 0x00 first to flush line noise",
         prefix=b"\x00\x00")

good = bytearray(frame(1, 1, 0, 1, b"hello"))
header = bytes([1, 1, 0, 0, 1, 0, 0, 0])
damaged = header + b"hellp"
stored = crc32c(header + b"hello")
bad_frame("reject_bad_crc", cobs_encode(damaged + stored.to_bytes(4, "little")) + b"\x00",
          f"bad_crc expected=0x{crc32c(damaged):08x} found=0x{stored:08x}",
          "data_hello with one payload bit flipped before stuffing: valid COBS, wrong CRC")
bad_frame("reject_too_short", bytes([0x04, 1, 2, 3, 0]), "too_short len=3", "three bytes cannot hold a header and CRC")
bad_frame("reject_bad_cobs", bytes([0x05, 1, 2, 0]), "bad_cobs at=3", "code 0x05 promises four bytes, the delimiter comes after two")
v2_header = bytes([2, 1, 0, 0, 1, 0, 0, 0])
bad_frame("reject_unsupported_version", frame(2, 1, 0, 1, b"v2"), "unsupported_version 2",
          "sound CRC, version byte 2")
bad_frame("reject_too_long", frame(1, 1, 0, 1, bytes(1025)), "too_long limit=1024",
          "1025 payload bytes against the default 1024 limit; skipped to the delimiter without buffering")

write(
    "frames.txt",
    """
# Frame vectors. Each case: `wire` is the exact bytes on the line (COBS, then the 0x00 delimiter).
# `expect = frame`: decoding `wire` yields exactly one frame with these fields, and encoding them
# yields `wire` (after any leading 0x00 bytes). `unstuffed` is header ‖ payload ‖ CRC before COBS.
# `expect = <error> ...`: decoding `wire` with the default 1024-byte payload limit yields exactly
# this error and no frame. Hex is lowercase without separators; `payload = -` means empty.
# Generated by generate.py from PROTOCOL.md, independently of the Rust crate.
""",
    frame_cases,
)

# ---------------------------------------------------------------------------------------------
# Message vectors

stop_a = {
    "sequence": 10, "account_id": "0104217-01", "customer_name": "María Núñez",
    "service_address": "1412 W Orchard Ln", "meter_id": "S48213377", "location_note": "left of driveway",
    "hazard_note": "dog in yard", "dials": 6, "decimals": 0, "multiplier": 1, "unit": "hcf",
    "previous_reading": 4512, "previous_read_date": 20732, "low_limit": 4520, "high_limit": 4560,
    "low_limit_last": 4524, "high_limit_last": 4575,
    "field_orders": [{"order_id": 50021, "kind": "reread", "instructions": "customer disputes last bill"}],
}
stop_b = {
    "sequence": 20, "account_id": "0104219-01", "customer_name": "Robert Nguyen",
    "service_address": "1418 W Orchard Ln", "meter_id": "S48213378", "location_note": "left of driveway",
    "hazard_note": "", "dials": 4, "decimals": 0, "multiplier": 1, "unit": "hcf",
    "previous_reading": 9990, "previous_read_date": 20733, "low_limit": 9995, "high_limit": 30,
    "low_limit_last": 9998, "high_limit_last": 60,
    "field_orders": [],
}
stop_c = {
    "sequence": 15, "account_id": "0104225-02", "customer_name": "Sunset Self Storage LLC",
    "service_address": "1500 W Orchard Ln", "meter_id": "B77001234", "location_note": "meter in vault",
    "hazard_note": "locked gate, code at office", "dials": 6, "decimals": 1, "multiplier": 10, "unit": "gal",
    "previous_reading": 0, "previous_read_date": 20700, "low_limit": 0, "high_limit": 999999,
    "low_limit_last": 0, "high_limit_last": 999999,
    "field_orders": [
        {"order_id": 50030, "kind": "door_hanger", "instructions": "48-hour notice"},
        {"order_id": 50031, "kind": 9, "instructions": ""},
    ],
}

read_regular = {
    "device_seq": 1001, "meter_id": "S48213377", "reading": 4537, "read_time": 1795000000,
    "read_type": "regular", "method": "keyed", "message_codes": ["LK", "DG"], "skip_code": None,
    "note": "leak at hose bib", "reader_id": "JS", "order": {"order_id": 50021, "new_meter_id": None,
                                                             "new_meter_initial": None},
}
read_skipped = {
    "device_seq": 1002, "meter_id": "S48213378", "reading": 0, "read_time": 1795000300,
    "read_type": "skipped", "method": "keyed", "message_codes": [], "skip_code": "CG", "note": None,
    "reader_id": "JS", "order": None,
}
read_meter_change = {
    "device_seq": 1003, "meter_id": "B77001234", "reading": 812345, "read_time": -1,
    "read_type": "high_confirmed", "method": "probe", "message_codes": [], "skip_code": None, "note": None,
    "reader_id": "JS", "order": {"order_id": 50032, "new_meter_id": "S90000001", "new_meter_initial": 0},
}

messages = [
    ("hello", {"type": "hello", "device_id": "HH-0042", "firmware_version": "3.1.4", "protocol_versions": [2],
               "max_payload": 1024, "window": 8, "compression": 1, "pending_reads": 312,
               "state_id": 0x9E3779B97F4A7C15}),
    ("welcome", {"type": "welcome", "protocol_version": 2, "max_payload": 512, "window": 4, "compression": 1,
                 "server_time": 1795017600, "assigned_routes": ["R07", "R12"], "held_seq": 1000}),
    ("welcome_no_routes_before_1970", {"type": "welcome", "protocol_version": 2, "max_payload": 128, "window": 1,
                                       "compression": 0, "server_time": -86400, "assigned_routes": [],
                                       "held_seq": 0}),
    ("clock_sync", {"type": "clock_sync", "server_time": 1795017660}),
    ("route_offer", {"type": "route_offer", "transfer_id": 0x8A41F003, "route_id": "R07", "cycle_id": "2026-11",
                     "stops": 2000, "bytes": 45407, "compressed": True}),
    ("route_accept_resume", {"type": "route_accept", "transfer_id": 0x8A41F003, "resume_from": 16384}),
    ("route_data", {"type": "route_data", "route_id": "R07", "cycle_id": "2026-11", "window_from": 20758,
                    "window_to": 20777, "stops": [stop_a, stop_b, stop_c]}),
    ("route_data_empty", {"type": "route_data", "route_id": "R99", "cycle_id": "2026-11", "window_from": 0,
                          "window_to": 0, "stops": []}),
    ("message_code_table", {"type": "message_code_table", "codes": [
        {"code": "LK", "category": "trouble", "description": "Leak seen", "requires_follow_up": True},
        {"code": "DG", "category": "hazard", "description": "Dog", "requires_follow_up": False},
        {"code": "CG", "category": "skip", "description": "Can't get in: locked gate", "requires_follow_up": False},
    ]}),
    ("field_orders", {"type": "field_orders", "orders": [
        {"account_id": "0104219-01", "meter_id": "S48213378",
         "order": {"order_id": 50040, "kind": "shut_off", "instructions": "lock valve, tag meter"}},
        {"account_id": "0104225-02", "meter_id": "B77001234",
         "order": {"order_id": 50032, "kind": "meter_change", "instructions": "replace with 2 in. meter"}},
    ]}),
    ("read_batch", {"type": "read_batch", "reads": [read_regular, read_skipped, read_meter_change]}),
    ("read_ack", {"type": "read_ack", "up_to_seq": 1003, "refused": []}),
    ("read_ack_refused", {"type": "read_ack", "up_to_seq": 1003, "refused": [
        {"device_seq": 1001, "reason": "seq_conflict"}, {"device_seq": 1003, "reason": "bad_time"},
        {"device_seq": 1002, "reason": 77}]}),
    ("read_ack_max", {"type": "read_ack", "up_to_seq": 18446744073709551615, "refused": []}),
    ("error_busy", {"type": "error", "code": 4, "text": "serving another handheld"}),
    ("bye_done", {"type": "bye", "reason": "done"}),
    ("bye_unknown_reason", {"type": "bye", "reason": 200}),
    ("unknown_type", {"type": "unknown", "message_type": 0x7E, "body": "0102ff"}),
]

message_cases = []
for name, m in messages:
    fields = []
    for k, v in m.items():
        if k == "type":
            continue
        if k == "body":
            fields.append(("body", v))
            continue
        if k == "compression":
            fields.append((k, f"0x{v:02x}"))
            continue
        flatten(k, v, fields)
    message_cases.append([("name", name), ("type", m["type"])] + fields + [("hex", encode_message(m).hex())])

# Accepted but not canonical: decode only.
message_cases.append([
    ("name", "read_ack_newer_version_with_appended_field"),
    ("note", literal("version 3 appends a field; a version 2 decoder reads what it knows and ignores the rest")),
    ("type", "read_ack"), ("up_to_seq", "1003"), ("refused.len", "0"), ("decode_only", "true"),
    ("hex", (bytes([0x11, 3]) + varint(1003) + varint(0) + b"\x07").hex()),
])
message_cases.append([
    ("name", "read_ack_version_1"),
    ("note", literal("version 1 (protocol 1) has no refused list: it decodes as an empty one")),
    ("type", "read_ack"), ("up_to_seq", "1003"), ("refused.len", "0"), ("decode_only", "true"),
    ("hex", (bytes([0x11, 1]) + varint(1003)).hex()),
])
message_cases.append([
    ("name", "hello_version_1"),
    ("note", literal("a protocol-1 Hello: no state id (decodes as 0); a protocol-2 dock refuses it with Error 2")),
    ("type", "hello"), ("device_id", literal("HH-0042")), ("firmware_version", literal("3.1.4")),
    ("protocol_versions", "[1]"), ("max_payload", "1024"), ("window", "8"), ("compression", "0x01"),
    ("pending_reads", "312"), ("state_id", "0"), ("decode_only", "true"),
    ("hex", (bytes([0x01, 1]) + string("HH-0042") + string("3.1.4") + varint(1) + bytes([1]) + varint(1024)
             + bytes([8, 1]) + varint(312)).hex()),
])

rejects = [
    ("reject_empty", b"", "empty"),
    ("reject_version_zero", bytes([0x11, 0, 5]), "unsupported_version"),
    ("reject_truncated_string", bytes([0x04, 1, 0x04]) + string("busy")[:3], "truncated"),
    ("reject_non_canonical_varint", bytes([0x11, 1, 0x85, 0x00]), "non_canonical_varint"),
    ("reject_varint_over_64_bits", bytes([0x11, 1]) + b"\xff" * 9 + b"\x02", "varint_overflow"),
    ("reject_u16_out_of_range", bytes([0x04, 1]) + varint(70000) + string(""), "out_of_range"),
    ("reject_bool_2", bytes([0x20, 1, 3]) + string("R07") + string("2026-11") + varint(1) + varint(10) + b"\x02",
     "out_of_range"),
    ("reject_string_too_long", bytes([0x04, 1, 3]) + string("x" * 256), "string_too_long"),
    ("reject_bad_utf8", bytes([0x04, 1, 3, 2, 0xC3, 0x28]), "bad_utf8"),
    ("reject_too_many_reads", bytes([0x10, 1]) + varint(1 << 40), "too_many_items"),
    ("reject_count_beyond_message", bytes([0x10, 1]) + varint(500) + b"\x01\x00", "truncated"),
    ("reject_record_overrun", bytes([0x10, 1, 1, 0x7F, 0x01]), "record_overrun"),
    ("reject_trailing_bytes", bytes([0x11, 2]) + varint(1003) + varint(0) + b"\x07", "trailing_bytes"),
    ("reject_stop_index_out_of_range",
     bytes([0x22, 2]) + string("R") + string("C") + varint(0) + varint(0) + varint(0) + varint(1)
     + record(varint(0) + order({"order_id": 1, "kind": "reread", "instructions": ""})), "out_of_range"),
]
for name, raw, err in rejects:
    message_cases.append([("name", name), ("hex", raw.hex() or "-"), ("error", err)])

write(
    "messages.txt",
    """
# Message vectors (the bytes a transfer carries). Each case: `type` and the fields, flattened:
# `a.b` is field b of record a, `a[i]` item i of list a, `a.len` the list's length; strings are JSON
# string literals (UTF-8), `none` an absent option, enum codes by name or `unknown(N)`.
# `hex` is the exact encoding: encoding the fields yields it and decoding it yields the fields
# (`decode_only = true`: decoding only, the bytes are valid but not what an encoder writes).
# `error = <kind>`: decoding `hex` must fail with that kind of error. `hex = -` is zero bytes.
# Generated by generate.py from PROTOCOL.md, independently of the Rust crate.
""",
    message_cases,
)
# ---------------------------------------------------------------------------------------------
# Day limits (PROTOCOL.md 3.6, "Limits for each read day"): the limits for a read day from a stop's
# first-day and last-day limits. Python's // is floor division, as the spec's ⌊ ⌋.


def day_limits(dials, prev, first, last, window, day):
    m = 10 ** dials
    prev %= m

    def ends(pair):
        low, high = pair[0] % m, pair[1] % m
        span = (high - low) % m
        if span == m - 1:
            return None
        o_low = (low - prev) % m
        if o_low > m // 2:
            o_low -= m
        return o_low, o_low + span

    a, b = ends(first), ends(last)
    if a is None or b is None:
        return None
    frm, to = window
    n = max(to - frm, 0)
    k = min(max(day, frm), max(to, frm)) - frm
    if n == 0:
        lo, hi = a
    else:
        lo = a[0] + (b[0] - a[0]) * k // n
        hi = a[1] - (a[1] - b[1]) * k // n
    return (prev + lo) % m, (prev + max(hi, lo)) % m


limit_cases = []
for name, dials, prev, first, last, window, day in [
    ("first_day", 6, 4512, (4520, 4560), (4524, 4575), (20758, 20777), 20758),
    ("last_day", 6, 4512, (4520, 4560), (4524, 4575), (20758, 20777), 20777),
    ("day_7_rounds_low_down_high_up", 6, 4512, (4520, 4560), (4524, 4575), (20758, 20777), 20765),
    ("before_the_window_takes_the_first_day", 6, 4512, (4520, 4560), (4524, 4575), (20758, 20777), 20700),
    ("after_the_window_takes_the_last_day", 6, 4512, (4520, 4560), (4524, 4575), (20758, 20777), 20800),
    ("one_day_window", 6, 4512, (4520, 4560), (4524, 4575), (20758, 20758), 20758),
    ("wraps_by_the_last_day", 4, 9950, (9960, 9990), (9980, 30), (0, 20), 10),
    ("wraps_on_both_days", 4, 9990, (9995, 30), (9998, 60), (0, 30), 15),
    ("inactive_account_no_movement", 5, 123, (123, 123), (123, 123), (0, 30), 15),
    ("no_limits_full_dial", 5, 123, (0, 99999), (0, 99999), (0, 30), 15),
    ("no_limits_at_one_end", 5, 123, (130, 160), (0, 99999), (0, 30), 15),
    ("low_below_the_previous_reading", 6, 1000, (995, 1040), (990, 1080), (0, 30), 20),
]:
    got = day_limits(dials, prev, first, last, window, day)
    case = [("name", name), ("dials", str(dials)), ("previous_reading", str(prev)),
            ("low_first", str(first[0])), ("high_first", str(first[1])),
            ("low_last", str(last[0])), ("high_last", str(last[1])),
            ("window_from", str(window[0])), ("window_to", str(window[1])), ("day", str(day))]
    if got is None:
        case.append(("limits", "any"))
    else:
        case += [("low", str(got[0])), ("high", str(got[1]))]
    limit_cases.append(case)

write(
    "limits.txt",
    """
# Day-limit vectors (PROTOCOL.md 3.6): a stop's limits for a read on `day`, from its limits on the
# window's first day (`low_first`, `high_first`) and last day (`low_last`, `high_last`), as register
# readings of a `dials`-digit register. `limits = any`: the stop has no limits that day.
# Generated by generate.py from PROTOCOL.md, independently of the Rust crate.
""",
    limit_cases,
)

print("wrote crc.txt, frames.txt, messages.txt, limits.txt")
