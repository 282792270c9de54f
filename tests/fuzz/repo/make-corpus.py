#!/usr/bin/env python3
"""Regenerate the chunk-size-dependent seeds of tests/fuzz/repo/corpus.

Index files record the chunk size in their header and their entry count
follows from it; manifests record it in "chunk_size". A seed named ok-*
must be accepted and bad-* rejected for the reason its name gives, so when
VMS_CHUNK_SIZE changes, run this (from anywhere; it needs the zstd
command for the chunk seeds) and commit the result:

    tests/fuzz/repo/make-corpus.py

It reads VMS_CHUNK_SIZE from include/vmshadow/repo.h, rewrites every index
seed and chunk seed listed below (docs/repository-format.md "Indexes",
"Chunks") and the
"chunk_size" of every manifest seed except bad-chunk-size.json, which gets
a size this build refuses. Seeds found by fuzzing are left alone.
"""
import hashlib
import os
import re
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def chunk_size():
    text = open(os.path.join(TOP, "include", "vmshadow", "repo.h")).read()
    m = re.search(r"#define VMS_CHUNK_SIZE \((\d+)u << (\d+)\)", text)
    if not m:
        sys.exit("cannot find VMS_CHUNK_SIZE in include/vmshadow/repo.h")
    return int(m.group(1)) << int(m.group(2))


def digest(label):
    return hashlib.sha256(label.encode()).digest()


ZERO = bytes(32)


def index(cs, size, entries, version=1, count=None, magic=b"VMSINDEX",
          checksum=True):
    if count is None:
        count = (size + cs - 1) // cs
    body = struct.pack("<8sIIQQ", magic, version, cs, size, count)
    body += b"".join(entries)
    return body + (hashlib.sha256(body).digest() if checksum else b"")


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-1"], input=data,
                          stdout=subprocess.PIPE, check=True).stdout


def chunk(length, frame, magic=b"VMSC", version=1, compression=1,
          payload=None):
    if payload is None:
        payload = len(frame)
    return struct.pack("<4sBBHII", magic, version, compression, 0, length,
                       payload) + frame


def chunk_seeds(cs):
    content = b"a" * 4096 + bytes(range(256)) * 4 + b"z" * 1000
    f = zstd(content)
    n = len(content)
    ok = chunk(n, f)
    big = zstd(b"q" * cs)       # a whole chunk of one byte
    return {
        "ok-compressed.zst": ok,
        "ok-whole-chunk.zst": chunk(cs, big),
        "bad-empty.zst": b"",
        "bad-short-header.zst": ok[:10],
        "bad-header-only.zst": ok[:16],
        "bad-magic.zst": chunk(n, f, magic=b"VMSD"),
        "bad-version-2.zst": chunk(n, f, version=2),
        "bad-compression.zst": chunk(n, f, compression=2),
        "bad-length-zero.zst": chunk(0, f),
        "bad-length-over-chunk-size.zst": chunk(cs + 1, big),
        "bad-payload-not-smaller.zst": chunk(len(f), f),
        "bad-size-mismatch.zst": ok + b"x",
        "bad-truncated-frame.zst": chunk(n, f[:-3]),
        "bad-corrupt-frame.zst": chunk(n, f[:8] + bytes(b ^ 0x55 for b in f[8:])),
        "bad-frame-longer-than-length.zst": chunk(n - 1, f),
        "bad-frame-shorter-than-length.zst": chunk(n + 1, f),
    }


def segment_seeds(cs):
    """Index segments of a version 2 repository: entries' plaintext
    lengths are bounded by the chunk size (docs/repository-format.md
    "The repository index")."""
    def entry(cid, pack, off, slen, plen, form, res=b"\0\0\0"):
        return cid + pack + struct.pack("<III", off, slen, plen) + bytes([form]) + res

    def seg(entries, magic=b"VMSIDX2S", version=1, count=None):
        n = len(entries) if count is None else count
        body = magic + struct.pack("<II", version, n) + b"".join(entries)
        return body + hashlib.sha256(body).digest()

    lo, hi = sorted([digest("a"), digest("b")])
    p = bytes(range(16))
    seeds = {
        "ok-empty.seg": seg([]),
        "ok-two.seg": seg([entry(lo, p, 16, cs, cs, 0),
                           entry(hi, p, 4096 + cs, 1000, cs, 1)]),
        "ok-same-id-twice.seg": seg([entry(lo, p, 16, 5, 5, 0),
                                     entry(lo, p, 32, 5, 5, 0)]),
        "bad-magic.seg": seg([], magic=b"VMSIDX2X"),
        "bad-version.seg": seg([], version=2),
        "bad-count.seg": seg([entry(lo, p, 16, 5, 5, 0)], count=2),
        "bad-order.seg": seg([entry(hi, p, 16, 5, 5, 0), entry(lo, p, 32, 5, 5, 0)]),
        "bad-form.seg": seg([entry(lo, p, 16, 5, 5, 2)]),
        "bad-raw-lengths.seg": seg([entry(lo, p, 16, 4, 5, 0)]),
        "bad-zstd-not-smaller.seg": seg([entry(lo, p, 16, 5, 5, 1)]),
        "bad-too-long.seg": seg([entry(lo, p, 16, cs + 1, cs + 1, 0)]),
        "bad-offset-in-header.seg": seg([entry(lo, p, 8, 5, 5, 0)]),
        "bad-reserved.seg": seg([entry(lo, p, 16, 5, 5, 0, b"\0\1\0")]),
        "bad-truncated.seg": seg([entry(lo, p, 16, 5, 5, 0)])[:-1],
        "bad-short.seg": b"VMSIDX2S",
    }
    cks = bytearray(seg([entry(lo, p, 16, 5, 5, 0)]))
    cks[-1] ^= 1
    seeds["bad-checksum.seg"] = bytes(cks)
    sdir = os.path.join(HERE, "corpus", "segment")
    os.makedirs(sdir, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(sdir, name), "wb") as f:
            f.write(data)


def main():
    cs = chunk_size()
    cdir = os.path.join(HERE, "corpus", "chunk")
    os.makedirs(cdir, exist_ok=True)
    for name, data in chunk_seeds(cs).items():
        with open(os.path.join(cdir, name), "wb") as f:
            f.write(data)
    other = cs // 2 if cs > 4096 else cs * 2
    d = [digest("chunk %d" % i) for i in range(4)]
    # 3 chunks and 1 byte: data, zero, data, data (the last one 1 byte).
    good = index(cs, 3 * cs + 1, [d[0], ZERO, d[1], d[2]])
    seeds = {
        "ok-empty-file.idx": index(cs, 0, []),
        "ok-one-byte.idx": index(cs, 1, [d[0]]),
        "ok-one-chunk.idx": index(cs, cs, [d[0]]),
        "ok-all-zero.idx": index(cs, 2 * cs, [ZERO, ZERO]),
        "ok-non-multiple-with-zero-chunk.idx": good,
        "bad-empty.idx": b"",
        "bad-header-only.idx": good[:32],
        "bad-truncated.idx": good[:182],
        "bad-trailing-garbage.idx": good + b"abc",
        "bad-checksum.idx": good[:-1] + bytes([good[-1] ^ 1]),
        "bad-magic.idx": index(cs, 1, [d[0]], magic=b"VMSINDEY"),
        "bad-version-2.idx": index(cs, 1, [d[0]], version=2),
        "bad-chunk-size.idx": index(other, 1, [d[0]]),
        "bad-count-mismatch.idx": index(cs, cs + 1, [d[0]], count=1),
        "bad-count-huge.idx": index(cs, cs + 1, [d[0]], count=1 << 63),
        "bad-size-huge.idx": index(cs, 1 << 60, [], count=0),
    }
    idir = os.path.join(HERE, "corpus", "index")
    for name, data in seeds.items():
        with open(os.path.join(idir, name), "wb") as f:
            f.write(data)

    mdir = os.path.join(HERE, "corpus", "manifest")
    for name in sorted(os.listdir(mdir)):
        path = os.path.join(mdir, name)
        text = open(path, encoding="utf-8", errors="surrogateescape").read()
        size = other if name == "bad-chunk-size.json" else cs
        new = re.sub(r'"chunk_size": \d+', '"chunk_size": %d' % size, text)
        if new != text:
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(new)
    segment_seeds(cs)
    print("corpus seeds written for %d-byte chunks" % cs)


if __name__ == "__main__":
    main()
