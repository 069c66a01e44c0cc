#!/usr/bin/env bash
# verify --tree --fast (size+mtime) against a full verify --tree (re-hash) on
# the 50,000-file tree. Run by hand: bash benches/verify_tree.sh [BENCH_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${1:-${BENCH_DIR:-/tmp/datamig-bench}}
bash benches/make_trees.sh "$BENCH_DIR"
cargo build --release -q
B=$PWD/target/release/datamig
M=$(mktemp --suffix=.jsonl)
"$B" --root "$BENCH_DIR/small" inventory -q -o "$M" >/dev/null
mkdir -p benches/results
hyperfine -N --warmup 1 --runs 5 --export-json benches/results/verify-tree-fast.json \
  "$B -q verify --tree $BENCH_DIR/small $M" \
  "$B -q verify --tree $BENCH_DIR/small $M --fast"
python3 - <<'PY'
import json
r = json.load(open("benches/results/verify-tree-fast.json"))["results"]
full, fast = r[0]["median"], r[1]["median"]
print(f"median full {full:.3f}s, --fast {fast:.3f}s, full/fast {full/fast:.2f}x")
PY
rm -f "$M"
