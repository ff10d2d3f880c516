#!/usr/bin/env python3
"""Generates store.json, the test vectors of specs/store.md, independently of the Rust code.

Run: pip install blake3 pynacl cbor2 && python3 specs/vectors/store.py > specs/vectors/store.json
"""
import json

import blake3
import cbor2
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

ROOT = bytes(range(32))
TABLES = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"]
BUCKETS = [64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192]


def derive(context):
    return blake3.blake3(ROOT, derive_key_context=context).digest()


def value_key(t):
    return derive("tincan store v1 table %s values" % TABLES[t])


def key_hash_key(t):
    return derive("tincan store v1 table %s keys" % TABLES[t])


def padded_len(n):
    need = n + 1
    for b in BUCKETS:
        if b >= need:
            return b
    return -(-need // 8192) * 8192


def seal(t, key, nonce, plaintext):
    padded = plaintext + b"\x80" + b"\x00" * (padded_len(len(plaintext)) - len(plaintext) - 1)
    aad = b"tincan-store/v1" + bytes([t]) + key
    return b"\x01" + nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(padded, aad, nonce, value_key(t))


conv = bytes([0xAA] * 16)
log_key = conv + (0).to_bytes(8, "big")
# A log entry as another implementation would write it: a CBOR map with the field names of
# specs/store.md, in any order.
entry = {
    "position": 0,
    "direction": "outgoing",
    "id": bytes.fromhex("0192f1c4a3b2764e9a1d5b8e2f3c4d5e"),
    "seq": 1,
    "sent_at": 1764180000000,
    "stored_at": 1764180000000,
    "status": {"state": "queued"},
    "text": "hello, bob",
    "claimed_from": None,
    "missing_before": 0,
    "late": False,
}
sealed = [
    {"name": "short", "table": 4, "key": log_key.hex(), "nonce": bytes(range(1, 25)).hex(),
     "plaintext": b"hello".hex()},
    {"name": "log-entry", "table": 4, "key": log_key.hex(), "nonce": bytes([7] * 24).hex(),
     "plaintext": cbor2.dumps(entry).hex()},
    {"name": "exactly-a-bucket-minus-one", "table": 6, "key": (conv + (1).to_bytes(8, "big")).hex(),
     "nonce": bytes([9] * 24).hex(), "plaintext": (b"x" * 95).hex()},
]
for v in sealed:
    v["sealed"] = seal(v["table"], bytes.fromhex(v["key"]), bytes.fromhex(v["nonce"]),
                       bytes.fromhex(v["plaintext"])).hex()

print(json.dumps({
    "spec": "specs/store.md",
    "generator": "specs/vectors/store.py (blake3, PyNaCl, cbor2)",
    "root_key": ROOT.hex(),
    "table_keys": [{"table": t, "name": TABLES[t],
                    "value_key_context": "tincan store v1 table %s values" % TABLES[t],
                    "value_key": value_key(t).hex(),
                    "key_hash_key_context": "tincan store v1 table %s keys" % TABLES[t],
                    "key_hash_key": key_hash_key(t).hex()} for t in range(len(TABLES))],
    "keyed_hashes": [
        {"table": 2, "input": b"alice".hex(), "hash": blake3.blake3(b"alice", key=key_hash_key(2)).digest().hex(),
         "note": "Names: the username"},
        {"table": 5, "input": (conv + bytes.fromhex("0192f1c4a3b2764e9a1d5b8e2f3c4d5e")).hex(),
         "hash": blake3.blake3(conv + bytes.fromhex("0192f1c4a3b2764e9a1d5b8e2f3c4d5e"), key=key_hash_key(5)).digest().hex(),
         "note": "Ids: conversation id then message id"},
    ],
    "sealed": sealed,
    "log_entry": {"cbor": cbor2.dumps(entry).hex(), "text": "hello, bob", "seq": 1, "position": 0},
}, indent=1))
