#!/usr/bin/env python3
"""Deterministic synthetic trees for the datamig benchmarks (see make_trees.sh).

    gen_trees.py small DIR   50,000 files of 0-16 KiB in 500 leaf directories
    gen_trees.py large DIR   4 files, 2 GiB in total (half random, half text-like)

Content comes from a seeded PRNG (random.Random), never from /dev/urandom, so
two runs produce byte-identical trees; mtimes are pinned too.
"""
import os
import random
import sys

SEED = 20251127
MTIME = 1_700_000_000  # 2023-11-14, fixed so tar streams are reproducible
POOL_BYTES = 32 << 20  # text pool; larger than zstd -3's 2 MiB window


def text_pool(r: random.Random) -> bytes:
    """~32 MiB of log/markdown-like text: a 4,000-word vocabulary, numbers, ids."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(r.choices(letters, k=r.randint(2, 10))) for _ in range(4000)]
    levels = ["INFO", "DEBUG", "WARN", "ERROR"]
    lines = []
    size = 0
    while size < POOL_BYTES:
        words = " ".join(r.choices(vocab, k=r.randint(4, 18)))
        line = (
            f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T"
            f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z "
            f"{r.choice(levels)} instance={r.choice(vocab)}-{r.randint(0, 999):03d} "
            f"id={r.getrandbits(48):012x} msg=\"{words}\"\n"
        )
        lines.append(line)
        size += len(line)
    return "".join(lines).encode()


def text_slice(r: random.Random, pool: bytes, n: int) -> bytes:
    off = r.randrange(0, len(pool) - n)
    return pool[off:off + n]


def make_small(dest: str) -> None:
    r = random.Random(SEED)
    pool = text_pool(r)
    n = 0
    dirs = []
    for top in range(20):
        for sub in range(25):
            d = os.path.join(dest, f"d{top:03d}", f"s{sub:02d}")
            os.makedirs(d)
            dirs.append(d)
            for _ in range(100):
                size = r.randint(0, 16 << 10)
                if r.random() < 0.5:
                    name, data = f"f{n:05d}.bin", r.randbytes(size)
                else:
                    name, data = f"f{n:05d}.txt", text_slice(r, pool, size)
                p = os.path.join(d, name)
                with open(p, "wb") as f:
                    f.write(data)
                os.utime(p, (MTIME, MTIME))
                n += 1
    for d in dirs + sorted({os.path.dirname(d) for d in dirs}):
        os.utime(d, (MTIME, MTIME))
    print(f"small: {n} files in {len(dirs)} leaf directories")


def make_large(dest: str) -> None:
    r = random.Random(SEED + 1)
    pool = text_pool(r)
    os.makedirs(dest, exist_ok=True)
    file_bytes = 512 << 20
    chunk = 16 << 20
    for name in ["random-0.bin", "random-1.bin", "text-0.log", "text-1.log"]:
        p = os.path.join(dest, name)
        with open(p, "wb") as f:
            for _ in range(file_bytes // chunk):
                if name.startswith("random"):
                    f.write(r.randbytes(chunk))
                else:
                    # 4 KiB pieces: 3,968 bytes of text from anywhere in the pool,
                    # then 128 random bytes (ids, hashes, binary noise).
                    pieces = []
                    for _ in range(chunk // 4096):
                        pieces.append(text_slice(r, pool, 3968))
                        pieces.append(r.randbytes(128))
                    f.write(b"".join(pieces))
        os.utime(p, (MTIME, MTIME))
    os.utime(dest, (MTIME, MTIME))
    print(f"large: 4 files, {4 * file_bytes} bytes")


if __name__ == "__main__":
    kind, dest = sys.argv[1], sys.argv[2]
    {"small": make_small, "large": make_large}[kind](dest)
