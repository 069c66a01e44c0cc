#!/usr/bin/env python3
"""A TCP proxy that counts the bytes the server sends (HTTP headers
included) and keeps the running total in a file, rewritten as each
connection closes. Used by benches/remote.sh to measure what a restore
fetched from the S3 server, for datamig and restic alike.

Usage: count_proxy.py LISTEN_PORT UPSTREAM_PORT COUNT_FILE
"""
import asyncio
import os
import sys

listen, upstream, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
total = 0


def save():
    with open(out + ".new", "w") as f:
        f.write(str(total))
    os.replace(out + ".new", out)


async def pipe(r, w, count):
    global total
    try:
        while True:
            b = await r.read(1 << 16)
            if not b:
                break
            if count:
                total += len(b)
            w.write(b)
            await w.drain()
    finally:
        w.close()


async def handle(cr, cw):
    ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
    await asyncio.gather(pipe(cr, uw, False), pipe(ur, cw, True), return_exceptions=True)
    save()


async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", listen)
    save()
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
