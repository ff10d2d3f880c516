#!/usr/bin/env python3
"""Generates wire.json, the test vectors of specs/wire.md, with an independent CBOR encoder.

Run: pip install cbor2 && python3 specs/vectors/wire.py > specs/vectors/wire.json

The vectors come from the Python `cbor2` library in canonical mode (RFC 8949 deterministic
encoding), not from tincan's Rust code, so the Rust tests that load them check the Rust codec
against a second implementation. Error vectors are written byte by byte.
"""
import json
import cbor2

# The RFC 8032 test 1 public key, as bob's ed25519 key; his PeerId is the identity multihash
# of the libp2p protobuf encoding of that key.
BOB_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
BOB = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]) + BOB_KEY
ID1 = bytes.fromhex("0192f1c4a3b2764e9a1d5b8e2f3c4d5e")
ID2 = bytes.fromhex("0192f1c4a3b2764e9a1d5b8e2f3c4d5f")
T = 1764180000000


def enc(value):
    return cbor2.dumps(value, canonical=True)


def message(mid, seq, text, sender="alice", to=BOB, sent_at=T):
    return {0: mid, 1: seq, 2: sent_at, 3: sender, 4: to, 5: text}


def decoded(mid, seq, text, sender="alice", to=BOB, sent_at=T):
    return {"id": mid.hex(), "seq": seq, "sent_at": sent_at, "from": sender, "to": to.hex(),
            "text": text}


vectors = []


def ok(name, kind, value, payload, note):
    vectors.append({"name": name, "type": kind, "note": note, "payload": payload.hex(),
                    "value": value})


def bad(name, kind, payload, error, note):
    vectors.append({"name": name, "type": kind, "note": note, "payload": payload.hex(),
                    "error": error})


one = [1, 1, [message(ID1, 1, "hello, bob")]]
ok("chat-one", "request", {"chat": [decoded(ID1, 1, "hello, bob")]}, enc(one),
   "one chat message from alice to bob")
two_text = "line one\n\tünïcødé 🥫"
ok("chat-two", "request",
   {"chat": [decoded(ID1, 41, "hello"), decoded(ID2, 42, two_text, sent_at=T + 1500)]},
   enc([1, 1, [message(ID1, 41, "hello"), message(ID2, 42, two_text, sent_at=T + 1500)]]),
   "a batch of two; text may hold newlines, tabs and any non-control character")
ok("notice-ended", "request", {"notice": 1}, enc([1, 3, 1]),
   "kind 3, a notice: the sender ended the conversation (it typed --DISCONNECT--)")
ok("notice-unknown-code", "request", {"notice": 77}, enc([1, 3, 77]),
   "a notice code this version does not name: decoded, and ignored by the recipient")
ok("acks-empty", "response", {"acks": []}, enc([1, 1, []]),
   "the answer to a notice: nothing to acknowledge")
ok("acks-stored", "response", {"acks": [[ID1.hex(), 0], [ID2.hex(), 0]]},
   enc([1, 1, [[ID1, 0], [ID2, 0]]]), "both messages stored")
ok("acks-mixed", "response", {"acks": [[ID1.hex(), 0], [ID2.hex(), 9]]},
   enc([1, 1, [[ID1, 0], [ID2, 9]]]), "first stored, second refused as out of order")
ok("refused-blocked", "response", {"refused": 6}, enc([1, 2, 6]),
   "the whole request refused: the sender is blocked")
ok("refused-unknown-code", "response", {"refused": 300}, enc([1, 2, 300]),
   "a refusal code this version does not name; kept as is and treated as temporary")

# Version 2 (§4.5): sealed envelopes are opaque byte strings here; specs/sealed.md §3 is
# their inside. This one is an envelope map with a stand-in body.
SEALED = enc({0: ID1, 1: 1, 2: BOB, 3: 0, 4: bytes([3]) + bytes(range(40))})
SEALED2 = enc({0: ID2, 1: 2, 2: BOB, 3: 1, 4: bytes([3]) + bytes(range(60))})
ok("sealed-two", "request", {"sealed": [SEALED.hex(), SEALED2.hex()]},
   enc([2, 4, [SEALED, SEALED2]]), "version 2, kind 4: two sealed envelopes")
ok("keys-request", "request", {"keys": True}, enc([2, 5, 1]),
   "version 2, kind 5: asks the peer for its signed Olm keys (record version 1)")
KEYS = bytes(range(200))
ok("keys-response", "response", {"keys": KEYS.hex()}, enc([2, 3, KEYS]),
   "version 2, response kind 3: a keys record, undecoded at this layer")
ok("refused-no-session", "response", {"refused": 11}, enc([1, 2, 11]),
   "refusals keep version 1, so that version-1 peers read them; 11: no session opens it")
ok("refused-unsupported-version", "response", {"refused": 3}, enc([1, 2, 3]),
   "what a version-1 peer answers a sealed request, and a version-2 peer a plaintext chat")

valid = enc(one)
bad("future-version", "request", enc([3, 1, []]), "unsupported-version",
    "version 3: refused before the rest is read, whatever its shape")
bad("chat-as-version-2", "request", enc([2, 1, [message(ID1, 1, "hi")]]), "unknown-kind",
    "each kind belongs to one version: kind 1 is version 1's")
bad("sealed-as-version-1", "request", enc([1, 4, [SEALED]]), "unknown-kind",
    "kind 4 is version 2's")
bad("acks-as-version-2", "response", enc([2, 1, []]), "unknown-kind",
    "acks keep version 1")
bad("sealed-empty-batch", "request", enc([2, 4, []]), "invalid-value",
    "a sealed batch holds 1 to 64 envelopes")
bad("sealed-empty-envelope", "request", enc([2, 4, [b""]]), "invalid-value",
    "an envelope is 1 to 6,272 bytes")
bad("sealed-envelope-too-long", "request", enc([2, 4, [bytes(6273)]]), "too-long",
    "an envelope is 1 to 6,272 bytes")
bad("sealed-envelope-as-map", "request", enc([2, 4, [{0: ID1}]]), "unexpected-type",
    "envelopes travel as byte strings")
bad("keys-request-version-2", "request", enc([2, 5, 2]), "invalid-value",
    "only keys record version 1 exists")
bad("keys-response-too-long", "response", enc([2, 3, bytes(257)]), "too-long",
    "a keys record is at most 256 bytes")
bad("unknown-kind", "request", enc([1, 7, {0: b"file chunk"}]), "unknown-kind",
    "kind 7 is not defined in version 1 or 2")
bad("trailing-bytes", "request", valid + b"\x00", "trailing-bytes",
    "one byte after a complete request")
bad("truncated", "request", valid[:-3], "truncated", "the text stops 3 bytes early")
# seq written as 0x18 0x01 instead of 0x01.
at = valid.index(bytes([0x01, 0x01, 0x02]))
bad("non-shortest-seq", "request", valid[:at + 1] + b"\x18\x01" + valid[at + 2:],
    "non-canonical", "seq 1 encoded in two bytes; deterministic encoding needs one")
bad("indefinite-batch", "request", bytes([0x83, 0x01, 0x01, 0x9f]) + enc(one[2][0]) + b"\xff",
    "non-canonical", "an indefinite-length array")
bad("text-control", "request", enc([1, 1, [message(ID1, 1, "\x1b[2Jgotcha")]]),
    "invalid-value", "text with an escape character")
bad("from-uppercase", "request", enc([1, 1, [message(ID1, 1, "hi", sender="Alice")]]),
    "invalid-value", "usernames are sent case-folded")
bad("seq-zero", "request", enc([1, 1, [message(ID1, 0, "hi")]]), "invalid-value",
    "sequence numbers start at 1")
bad("empty-batch", "request", enc([1, 1, []]), "invalid-value", "a batch holds 1 to 64")
bad("batch-65", "request", enc([1, 1, [message(ID1, 1, "x")] * 65]), "too-long",
    "a batch holds at most 64 messages")
m = message(ID1, 1, "hi")
del m[4]
bad("missing-field", "request", enc([1, 1, [m]]), "wrong-arity", "the `to` field is missing")
m = message(ID1, 1, "hi")
m[6] = "extra"
bad("unknown-field", "request", enc([1, 1, [m]]), "wrong-arity",
    "a seventh field; version 1 messages have exactly six")
# Six entries, so the count passes; the keys read 0, 1, 2, 3, then 5 where 4 was expected.
m = message(ID1, 1, "hi")
del m[4]
m[6] = "extra"
bad("missing-to-six-entries", "request", enc([1, 1, [m]]), "missing-field",
    "six entries, but key 4 (`to`) is absent: key 5 comes where 4 was expected, and an unknown "
    "key 6 makes up the count")
bad("text-not-utf8", "request", enc([1, 1, [message(ID1, 1, "hé")]]).replace(b"h\xc3\xa9", b"h\xc3\x28"),
    "invalid-utf8", "text that is not UTF-8")
bad("text-too-long", "request", enc([1, 1, [message(ID1, 1, "x" * 4097)]]), "too-long",
    "4,097 bytes of text")
bad("id-15-bytes", "request", enc([1, 1, [message(ID1[:15], 1, "hi")]]), "invalid-value",
    "message ids are exactly 16 bytes")
bad("notice-zero", "request", enc([1, 3, 0]), "invalid-value", "0 is not a notice code")
bad("notice-text", "request", enc([1, 3, "bye"]), "unexpected-type",
    "a notice's body is an unsigned integer")
bad("response-refused-zero", "response", enc([1, 2, 0]), "invalid-value",
    "0 means stored and is not a refusal code")

print(json.dumps({"spec": "specs/wire.md", "generator": "specs/vectors/wire.py (cbor2, canonical)",
                  "vectors": vectors}, indent=1, ensure_ascii=False))
