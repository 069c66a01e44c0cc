#!/usr/bin/env bash
# Whole-archive restore of a FOREIGN single-frame .tar.zst (made by GNU
# `tar --zstd`, no manifest, no datamig index) — issue 11, item 4:
# `datamig restore A --to OUT` against `bsdtar -xf A -C OUT && sync -f OUT`
# and `tar --zstd -xf A -C OUT && sync -f OUT`, all into /dev/shm. Runs are
# interleaved (one of each command per round, after one warm-up round) so
# machine noise hits all three alike; the summary quotes medians and ratios.
# Goal: datamig within 1.1x of bsdtar + sync.
# Run by hand, never in CI.
# Usage: benches/foreign_restore.sh [BENCH_DIR]
#   ROUNDS   counted rounds (default 7)
#   OUT      extraction directory (default /dev/shm/datamig-bench-foreign)
#   BEFORE   an earlier datamig binary to run interleaved too (before/after)
#   WORK     where the archive and the binary copy go (default BENCH_DIR/work/foreign)
# Needs: python3, GNU tar, bsdtar, zstd. Reuses BENCH_DIR/small (made by
# make_trees.sh when missing) read-only; the archive goes to
# BENCH_DIR/work/foreign/small-gnu.tar.zst and is kept for the next run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
bench_dir="${1:-${DATAMIG_BENCH_DIR:-/tmp/datamig-bench}}"
rounds="${ROUNDS:-7}"
out="${OUT:-/dev/shm/datamig-bench-foreign}"
work="${WORK:-$bench_dir/work/foreign}"
results="$here/results"
for tool in python3 tar bsdtar zstd; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done
mkdir -p "$work" "$results"

echo "== building the release binary"
(cd "$repo" && cargo build --release --quiet)
# Benchmark a private copy: others may rebuild target/release while we run.
bin="$work/datamig"
cp "$repo/target/release/datamig" "$bin.new" && mv "$bin.new" "$bin"
rev="$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z "$(cd "$repo" && git status --porcelain --untracked-files=no -- src Cargo.toml)" ]] || rev="$rev+dirty"

[[ -d "$bench_dir/small" ]] || "$here/make_trees.sh" "$bench_dir"
a="$work/small-gnu.tar.zst"
if [[ ! -f "$a" ]]; then
    echo "== writing $a with GNU tar --zstd"
    tar --zstd -C "$bench_dir" -cf "$a.partial" small
    mv "$a.partial" "$a"
fi
frames="$(zstd -lv "$a" 2>/dev/null | awk '/Zstandard Frames/ {print $NF}')"
tar_bytes="$(zstd -dc "$a" | wc -c)"
echo "   $a: $(stat -c %s "$a") bytes, $tar_bytes bytes of tar, $frames zstd frame(s)"
((tar_bytes >= 400000000)) || { echo "the tar stream must be >= 400 MB" >&2; exit 2; }

declare -A cmd
# datamig exits 1 on a foreign archive (every file "restored without a
# manifest to check against"); its report goes to /dev/null like tar's.
cmd[datamig]="'$bin' restore '$a' --to '$out' -q >/dev/null; ((\$? <= 1))"
cmd[bsdtar-sync]="bsdtar -xf '$a' -C '$out' && sync -f '$out'"
cmd[tar-zstd-sync]="tar --zstd -xf '$a' -C '$out' && sync -f '$out'"
order=(datamig bsdtar-sync tar-zstd-sync)
if [[ -n "${BEFORE:-}" ]]; then
    # An earlier build, interleaved too, for a before/after of one change.
    cp "$BEFORE" "$work/datamig-before.new" && mv "$work/datamig-before.new" "$work/datamig-before"
    cmd[datamig-before]="'$work/datamig-before' restore '$a' --to '$out' -q >/dev/null; ((\$? <= 1))"
    order+=(datamig-before)
fi

times="$work/times.tsv"
: >"$times"
for ((r = 0; r <= rounds; r++)); do
    echo "== round $r of $rounds$( ((r == 0)) && echo ' (warm-up, not counted)')"
    for name in "${order[@]}"; do
        rm -rf "$out" && mkdir "$out"
        t0=$(date +%s%N)
        bash -c "${cmd[$name]}" || { echo "$name failed" >&2; exit 2; }
        t1=$(date +%s%N)
        ((r == 0)) || printf '%s\t%s\n' "$name" "$(((t1 - t0) / 1000))" >>"$times"
    done
    # Every run restores the whole tree: check the file count once.
    ((r > 0)) || [[ "$(find "$out" -type f | wc -l)" == 50000 ]] || { echo "not 50,000 files" >&2; exit 2; }
done
rm -rf "$out"

python3 - "$times" "$results/foreign-restore-summary.json" "$rev" "$(nproc)" "$(cat /proc/loadavg)" <<'PY'
import json, statistics, sys, datetime
times, dest, rev, cores, load = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
runs = {}
for line in open(times):
    name, us = line.split("\t")
    runs.setdefault(name, []).append(int(us) / 1e6)
med = {k: statistics.median(v) for k, v in runs.items()}
n = len(runs["datamig"])
print(f"\nMedians of {n} interleaved rounds (s), foreign single-frame .tar.zst of the small tree, datamig {rev}, {cores} cores, load {load}")
for k in sorted(med):
    print(f"  {k:<14} {med[k]:7.3f}  (min {min(runs[k]):.3f}, max {max(runs[k]):.3f})")
r_bsd = med["datamig"] / med["bsdtar-sync"]
r_tar = med["datamig"] / med["tar-zstd-sync"]
print(f"  datamig/(bsdtar+sync) {r_bsd:.2f} (goal <= 1.10: {'ok' if r_bsd <= 1.10 else 'MISSED'})")
print(f"  datamig/(tar+sync)    {r_tar:.2f}")
if "datamig-before" in med:
    print(f"  datamig/datamig-before {med['datamig'] / med['datamig-before']:.2f}")
with open(dest, "w") as f:
    json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "datamig": rev,
               "cores": cores, "loadavg_end": load, "runs_s": runs, "median_s": med,
               "datamig/bsdtar-sync": r_bsd, "datamig/tar-zstd-sync": r_tar}, f, indent=2)
    f.write("\n")
PY
