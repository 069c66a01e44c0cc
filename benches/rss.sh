#!/usr/bin/env bash
# Peak RSS of inventory and archive on a 200,000-file tree and on a 4 GiB file
# (memory must grow with the number of entries, never with file sizes).
# Run by hand: bash benches/rss.sh [WORKDIR]   (needs /usr/bin/time: apt-get install time)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/datamig-rss}
cargo build --release -q
B=$PWD/target/release/datamig
if [ ! -d "$W/t200k" ]; then
  python3 - "$W/t200k/data" <<'PY'
import os, sys
base = sys.argv[1]
for d in range(400):
    p = f"{base}/d{d:03}"
    os.makedirs(p, exist_ok=True)
    for i in range(500):
        with open(f"{p}/f{i:03}.txt", "w") as f:
            f.write(f"{d}-{i}\n" * 3)
PY
fi
if [ ! -f "$W/big/data/zero4g" ]; then
  mkdir -p "$W/big/data" && head -c 4G /dev/zero > "$W/big/data/zero4g"
fi
for t in t200k big; do
  for cmd in "inventory -q -o $W/inv-$t.jsonl" "archive data --dest $W/out-$t --date 20251225 -q"; do
    rm -rf "$W/out-$t" "$W/inv-$t.jsonl"
    /usr/bin/time -v "$B" --root "$W/$t" $cmd >/dev/null 2>"$W/time.txt" || true
    echo "$t ${cmd%% *}: peak RSS $(awk -F': ' '/Maximum resident/{print $2}' "$W/time.txt") KiB," \
         "wall $(awk -F': ' '/Elapsed/{print $2}' "$W/time.txt")"
  done
done
