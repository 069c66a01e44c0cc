#!/usr/bin/env python3
"""Deterministic synthetic trees for the datamig benchmarks (see make_trees.sh).

    gen_trees.py small DIR   50,000 files of 0-16 KiB in 500 leaf directories
    gen_trees.py large DIR   4 files, 2 GiB in total (half random, half text-like)
    gen_trees.py root DIR    a data root of ~4,600 entries and ~300 MiB, two of
                             them 128 MiB files in one directory (issue 15's tree c)

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


def make_root(dest: str) -> None:
    """A data root shaped like LAYOUT.md: 60 instances and 40 projects of ~40
    small files each (0-20 KiB, text and JSON), roles and wake logs, and two
    128 MiB database dumps side by side in one project's documents/."""
    r = random.Random(SEED + 2)
    pool = text_pool(r)
    paths = []

    def put(rel: str, data: bytes) -> None:
        p = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        paths.append(p)

    def small(rel: str) -> None:
        put(rel, text_slice(r, pool, r.randint(0, 20 << 10)))

    for i in range(60):
        base = f"instances/inst-{i:03d}"
        for name in ["preferences.json", "diary.md", "personal_tasks.json", "lists.json",
                     "conversation.log", "inbox.jsonl", "goals.json"]:
            if name.endswith(".json"):
                data = b"{}"
            elif name.endswith(".jsonl"):
                data = b'{"from": "lead", "text": "hello"}\n' * r.randint(1, 50)
            else:
                data = text_slice(r, pool, 4096)
            put(f"{base}/{name}", data)
        for j in range(33):
            small(f"{base}/.claude/todos/t{j:02d}.md")
    for i in range(40):
        base = f"projects/proj-{i:03d}"
        put(f"{base}/project.json", b"{}")
        for j in range(39):
            small(f"{base}/documents/doc{j:02d}.md")
    for i in range(20):
        put(f"roles/role-{i:02d}/role.json", b"{}")
        for j in range(9):
            small(f"roles/role-{i:02d}/wisdom/w{j:02d}.md")
    for i in range(100):
        small(f"wake-logs/job-{i:04d}.log")
    for i in range(2):
        p = f"projects/proj-000/documents/dump-{i}.bin"
        os.makedirs(os.path.dirname(os.path.join(dest, p)), exist_ok=True)
        with open(os.path.join(dest, p), "wb") as f:
            for _ in range(8):
                f.write(r.randbytes(16 << 20))
        paths.append(os.path.join(dest, p))
    put("wisdom.md", b"# wisdom\n")
    dirs = set()
    for p in paths:
        os.utime(p, (MTIME, MTIME))
        d = os.path.dirname(p)
        while d.startswith(dest) and d not in dirs:
            dirs.add(d)
            d = os.path.dirname(d)
    for d in sorted(dirs, reverse=True):
        os.utime(d, (MTIME, MTIME))
    print(f"root: {len(paths)} files in {len(dirs)} directories")


if __name__ == "__main__":
    kind, dest = sys.argv[1], sys.argv[2]
    {"small": make_small, "large": make_large, "root": make_root}[kind](dest)
