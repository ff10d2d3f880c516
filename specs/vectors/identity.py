#!/usr/bin/env python3
"""Generates identity.json, the test vectors of specs/identity.md, independently of the Rust code.

Run: pip install argon2-cffi pynacl blake3 && python3 specs/vectors/identity.py > specs/vectors/identity.json

Key files use cheap argon2id parameters (m=1024 KiB, t=1, p=1) so the tests stay fast. Real key
files must use at least m=19456 KiB and t=2, and readers refuse anything less.
"""
import hashlib
import json
import struct

import blake3
from argon2.low_level import Type, hash_secret_raw
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt
from nacl.signing import SigningKey


def peer_id(pk):
    return bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]) + pk


def keyfile(password, seed, root, salt, nonce, m, t, p):
    pk = bytes(SigningKey(seed).verify_key)
    header = (b"TINCANID" + bytes([1, 1]) + struct.pack(">III", m, t, p) + salt + bytes([1])
              + nonce + pk)
    assert len(header) == 95
    kek = hash_secret_raw(password.encode(), salt, time_cost=t, memory_cost=m, parallelism=p,
                          hash_len=32, type=Type.ID, version=19)
    ct = crypto_aead_xchacha20poly1305_ietf_encrypt(seed + root, header, nonce, kek)
    body = header + ct
    return body + blake3.blake3(body).digest(), kek


def fingerprint(pk):
    h = hashlib.sha512(b"\x00\x00" + pk + peer_id(pk) + pk).digest()
    for _ in range(1, 5200):
        h = hashlib.sha512(h + pk).digest()
    return "".join("%05d" % (int.from_bytes(h[i:i + 5], "big") % 100000) for i in range(0, 30, 5))


def safety_number(a, b):
    fa, fb = fingerprint(a), fingerprint(b)
    return min(fa, fb) + max(fa, fb)


alice_seed = bytes(range(32))
alice_root = bytes(range(32, 64))
bob_seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
alice_pk = bytes(SigningKey(alice_seed).verify_key)
bob_pk = bytes(SigningKey(bob_seed).verify_key)

keyfiles = []
for name, password, salt, nonce in [
    ("alice", "correct horse battery staple", bytes([0x11] * 16), bytes([0x22] * 24)),
    ("alice-unicode-password", "pässwörd 🥫", bytes(range(16)), bytes(range(100, 124))),
]:
    data, kek = keyfile(password, alice_seed, alice_root, salt, nonce, 1024, 1, 1)
    keyfiles.append({
        "name": name, "password": password, "file": data.hex(), "kek": kek.hex(),
        "seed": alice_seed.hex(), "store_root_key": alice_root.hex(), "public_key": alice_pk.hex(),
        "peer_id": peer_id(alice_pk).hex(),
        "m_kib": 1024, "t": 1, "p": 1,
    })

print(json.dumps({
    "spec": "specs/identity.md",
    "generator": "specs/vectors/identity.py (argon2-cffi, PyNaCl, blake3, hashlib)",
    "keyfiles": keyfiles,
    "fingerprints": [
        {"public_key": alice_pk.hex(), "fingerprint": fingerprint(alice_pk)},
        {"public_key": bob_pk.hex(), "fingerprint": fingerprint(bob_pk)},
    ],
    "safety_numbers": [
        {"a": alice_pk.hex(), "b": bob_pk.hex(), "safety_number": safety_number(alice_pk, bob_pk)},
    ],
}, indent=1, ensure_ascii=False))
