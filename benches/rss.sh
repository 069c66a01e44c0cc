#!/usr/bin/env bash
# Peak RSS of inventory and archive on a 200,000-file tree and on a 4 GiB file
# (memory must grow with the number of entries, never with file sizes).
# Per entry: (peak RSS at 200,000 files - peak RSS with one file) / entries
# (issue 15 goals: inventory <= 300 B, archive <= 400 B per entry).
# Run by hand: bash benches/rss.sh [WORKDIR]   (needs /usr/bin/time: apt-get install time)
#   BIN=path/to/datamig   measure that binary instead of this checkout's build
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/datamig-rss}
if [ -z "${BIN:-}" ]; then cargo build --release -q; fi
B=${BIN:-$PWD/target/release/datamig}
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
declare -A rss
for t in t200k big; do
  for verb in inventory archive; do
    case $verb in
      inventory) cmd="inventory -q -o $W/inv-$t.jsonl" ;;
      archive) cmd="archive data --dest $W/out-$t --date 20251225 -q" ;;
    esac
    rm -rf "$W/out-$t" "$W/inv-$t.jsonl"
    /usr/bin/time -v "$B" --root "$W/$t" $cmd >/dev/null 2>"$W/time.txt" || true
    rss[$t-$verb]=$(awk -F': ' '/Maximum resident/{print $2}' "$W/time.txt")
    echo "$t $verb: peak RSS ${rss[$t-$verb]} KiB, wall $(awk -F': ' '/Elapsed/{print $2}' "$W/time.txt")"
  done
done
rm -rf "$W/out-t200k" "$W/out-big"
# Entries of the 200,000-file tree (files, directories, data/ itself).
entries=$(find "$W/t200k/data" | wc -l)
for verb in inventory archive; do
  echo "$verb: $(( (rss[t200k-$verb] - rss[big-$verb]) * 1024 / (entries - 1) )) bytes per entry ($entries entries)"
done
