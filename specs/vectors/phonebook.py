#!/usr/bin/env python3
"""Generates phonebook.json, the test vectors of specs/phonebook.md, independently of the Rust
code. Ed25519 signatures are deterministic, so the vectors are fixed.

Run: pip install pynacl && python3 specs/vectors/phonebook.py > specs/vectors/phonebook.json
"""
import json
import struct

from nacl.signing import SigningKey

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58(data):
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def short(b):
    return bytes([len(b)]) + b


def record_payload(username, peer, addrs, seq, expires_at):
    out = b"tincan phonebook record v1\0" + short(username.encode()) + short(peer)
    out += struct.pack(">QQ", seq, expires_at) + bytes([len(addrs)])
    for a in addrs:
        out += struct.pack(">H", len(a.encode())) + a.encode()
    return out


def delete_payload(username, peer, seq, release):
    return b"tincan phonebook delete v1\0" + short(username.encode()) + short(peer) + struct.pack(">Q", seq) + bytes([release])


key = SigningKey(bytes(range(32)))
pk = bytes(key.verify_key)
peer = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]) + pk
addrs = ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"]
seq, expires = 1764180000000, 1764180300000
payload = record_payload("alice", peer, addrs, seq, expires)
record = {"username": "alice", "peer_id": b58(peer), "addrs": addrs, "seq": seq, "expires_at": expires,
          "signature": key.sign(payload).signature.hex()}
dpayload = delete_payload("alice", peer, seq + 1, 1)
deletion = {"username": "alice", "peer_id": b58(peer), "seq": seq + 1, "release": True,
            "signature": key.sign(dpayload).signature.hex()}


def cbor_bytes(b):
    # Deterministic CBOR byte string of 24..255 bytes (major type 2, one length byte).
    assert 24 <= len(b) <= 255
    return bytes([0x58, len(b)]) + b


def olm_keys_fields(identity, curve, fallback, serial, entries):
    # specs/sealed.md §2: a map of `entries` entries, keys 0..4 here (serial below 24).
    assert serial < 24
    return (bytes([0xA0 + entries, 0x00, 0x01, 0x01]) + cbor_bytes(identity) + b"\x02" + cbor_bytes(curve)
            + b"\x03" + cbor_bytes(fallback) + bytes([0x04, serial]))


# Record version 2 (specs/phonebook.md §2.5): the same record, carrying alice's signed Olm keys.
# The Curve25519 keys are fixed bytes: the phonebook checks the record's structure and signature.
curve, fallback, serial = bytes(range(0x20, 0x40)), bytes(range(0x40, 0x60)), 3
keys_signed = b"tincan-olm-keys-v1\x00" + olm_keys_fields(pk, curve, fallback, serial, 5)
olm_keys = olm_keys_fields(pk, curve, fallback, serial, 6) + b"\x05" + bytes([0x58, 64]) + key.sign(keys_signed).signature
record_v2 = dict(record, olm_keys=olm_keys.hex())
# As a server serves it (§4): the readable restatement of the addresses, then the keys.
endpoints = [{"multiaddr": addrs[0], "ip": "127.0.0.1", "port": 4001, "transport": "tcp", "relayed": False},
             {"multiaddr": addrs[1], "ip": "127.0.0.1", "port": 4001, "transport": "quic-v1", "relayed": False}]
view_v2 = {"online": True, "username": "alice", "peer_id": b58(peer), "record": record, "deletion": None,
           "endpoints": endpoints, "ip": "127.0.0.1", "port": 4001, "last_seen": seq, "olm_keys": olm_keys.hex()}

print(json.dumps({
    "spec": "specs/phonebook.md",
    "generator": "specs/vectors/phonebook.py (PyNaCl)",
    "ed25519_seed": bytes(range(32)).hex(),
    "record": record,
    "record_payload": payload.hex(),
    "deletion": deletion,
    "deletion_payload": dpayload.hex(),
    "record_v2": record_v2,
    "olm_keys_signed_bytes": keys_signed.hex(),
    "peer_view_v2": view_v2,
}, indent=1))
