"""The frame codec under MicroPython on vectors made by the CPython tests.

Reads one JSON line from standard input:
  {"encode": [[mtype, node, boot, seq, payload_hex], ...],
   "streams": [[chunk_hex, ...], ...]}
and prints one JSON line:
  {"encoded": [frame_hex, ...],
   "decoded": [[[mtype, node, boot, seq, payload_hex], ...], ...],  (one list per stream)
   "errors": [{reason: count}, ...],
   "crc_check": crc16(b"123456789")}
Each stream is fed to a fresh Decoder one chunk at a time.
"""

import json
import sys

import codec
import host


def main():
    job = json.loads(host.readline())
    encoded = []
    for mtype, node_id, boot, seq, payload in job["encode"]:
        frame = codec.encode(mtype, node_id, boot, seq, bytes.fromhex(payload))
        encoded.append(frame.hex())
    decoded = []
    errors = []
    for chunks in job["streams"]:
        decoder = codec.Decoder()
        frames = []
        for chunk in chunks:
            for f in decoder.feed(bytes.fromhex(chunk)):
                frames.append([f.mtype, f.node, f.boot, f.seq, bytes(f.payload).hex()])
        decoded.append(frames)
        errors.append(decoder.errors)
    result = {
        "encoded": encoded,
        "decoded": decoded,
        "errors": errors,
        "crc_check": codec.crc16(b"123456789"),
        "implementation": sys.implementation.name,
    }
    print(json.dumps(result))


main()
