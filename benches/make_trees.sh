#!/usr/bin/env bash
# Build the two synthetic benchmark trees, deterministically and idempotently:
#   OUTDIR/small  50,000 files of 0-16 KiB over 500 leaf directories (~400 MiB),
#                 half random bytes, half text-like
#   OUTDIR/root   a data root of ~4,600 entries and ~300 MiB, two of them 128 MiB
#                 files side by side (issue 15 tree c; only when TREES names it)
#   OUTDIR/large  4 files of 512 MiB (2 GiB): two random, two text-like with
#                 random bytes mixed in
# TREES (default "small large") picks which. A tree that already exists is left alone; a half-built one (OUTDIR/*.partial)
# is thrown away and rebuilt. Usage: benches/make_trees.sh [OUTDIR]
# (default: $DATAMIG_BENCH_DIR, else /tmp/datamig-bench).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-${DATAMIG_BENCH_DIR:-/tmp/datamig-bench}}"
mkdir -p "$out"

for kind in ${TREES:-small large}; do
    if [[ -d "$out/$kind" ]]; then
        echo "make_trees: $out/$kind exists, skipping"
        continue
    fi
    rm -rf "$out/$kind.partial"
    start=$SECONDS
    python3 "$here/gen_trees.py" "$kind" "$out/$kind.partial"
    mv "$out/$kind.partial" "$out/$kind"
    echo "make_trees: built $out/$kind in $((SECONDS - start)) s ($(du -sh "$out/$kind" | cut -f1))"
done
