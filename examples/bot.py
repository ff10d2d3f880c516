#!/usr/bin/env python3
"""A tincan bot in Python's standard library: answers every message in capitals.

Run it beside a running tincan of the bot's profile (`tincan --profile shouty daemon`):

    python3 examples/bot.py $XDG_RUNTIME_DIR/tincan/shouty.sock

The API is JSON-RPC 2.0, one object per line, on the profile's socket (specs/rpc.md).
"""
import collections
import json
import socket
import sys

sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
lines = sock.makefile("r", encoding="utf-8")
waiting = collections.deque()  # notifications that came while a call was answered
next_id = 0


def call(method, **params):
    """Makes a call and returns its result; raises on an error."""
    global next_id
    next_id += 1
    request = {"jsonrpc": "2.0", "id": next_id, "method": method, "params": params}
    sock.sendall((json.dumps(request) + "\n").encode())
    for line in lines:
        message = json.loads(line)
        if message.get("id") == next_id:
            if "error" in message:
                raise RuntimeError(message["error"]["message"])
            return message["result"]
        waiting.append(message)
    raise EOFError("the daemon went away")


def notifications():
    while True:
        while waiting:
            yield waiting.popleft()
        line = lines.readline()
        if not line:
            return
        yield json.loads(line)


call("subscribe")
print("bot ready", flush=True)
for note in notifications():
    if note.get("method") == "closing":
        break
    if note.get("method") != "message":
        continue
    who = note["params"]["contact"]
    try:
        if note["params"]["request"]:
            call("accept", who=who)
        call("send", to=who, text=note["params"]["entry"]["text"].upper())
    except RuntimeError as e:
        print("error:", e, file=sys.stderr, flush=True)
