#!/usr/bin/env bash
# Encryption benchmark (issue 14): `datamig archive` with and without
# `--encrypt-to`, and the plain archive then encrypted by `age -r` (the
# two-pass way the one-pass writer replaces), each with --no-verify and with
# the default read-back verify. Runs are interleaved (one of each command per
# round, after one warm-up round) so machine noise hits all of them alike;
# the summary quotes medians. Goal: encryption adds at most 10% wall time.
# Usage: benches/encrypt.sh [BENCH_DIR]
#   ROUNDS   rounds of interleaved runs (default 5; one extra warm-up round)
#   TREES    small (50,000 files) and/or large (2 GiB); default both
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for tool in age age-keygen; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done
rounds="${ROUNDS:-5}"
work="$bench_dir/work/encrypt"
mkdir -p "$work"
date=20250101
key="$work/key.txt"
rm -f "$key"
age-keygen -o "$key" 2>/dev/null
pub="$(age-keygen -y "$key")"
age_version="$(age --version 2>/dev/null || echo unknown)"

times="$work/times.tsv"
: >"$times"
for tree in $trees; do
    d="$work/$tree-d"
    dm="'$bin' --root '$bench_dir' archive $tree --dest '$d' --date $date -q"
    plain="$d/$tree-$date.tar.zst"
    declare -A cmd=(
        [plain]="rm -rf '$d' && $dm --no-verify"
        [encrypted]="rm -rf '$d' && $dm --no-verify --encrypt-to $pub"
        [plain-then-age]="rm -rf '$d' && $dm --no-verify && age -r $pub -o '$plain.age' '$plain' && sync '$plain.age'"
        [plain-verify]="rm -rf '$d' && $dm"
        [encrypted-verify]="rm -rf '$d' && $dm --encrypt-to $pub"
    )
    order=(plain encrypted plain-then-age plain-verify encrypted-verify)
    for ((r = 0; r <= rounds; r++)); do
        echo "== $tree: round $r of $rounds$( ((r == 0)) && echo ' (warm-up, not counted)')"
        for name in "${order[@]}"; do
            t0=$(date +%s%N)
            bash -c "${cmd[$name]}" >/dev/null || (($? == 1)) || { echo "$name failed" >&2; exit 2; }
            t1=$(date +%s%N)
            ((r == 0)) || printf '%s\t%s\t%s\n' "$tree" "$name" "$(((t1 - t0) / 1000))" >>"$times"
        done
    done
    # Sizes of the last round's outputs.
    rm -rf "$d"
    bash -c "$dm --no-verify --encrypt-to $pub" >/dev/null
    enc_size="$(stat -c %s "$d/$tree-$date.tar.zst.age")"
    rm -rf "$d"
    bash -c "$dm --no-verify" >/dev/null
    printf '%s\tsize-plain\t%s\n%s\tsize-encrypted\t%s\n' "$tree" "$(stat -c %s "$plain")" "$tree" "$enc_size" >>"$times"
    rm -rf "$d"
    unset cmd
done
rm -f "$key"

python3 - "$times" "$results/encrypt-summary.json" "$build_rev" "$jobs" "$age_version" "$(cat /proc/loadavg)" <<'PY'
import json, statistics, sys, datetime
times, dest, rev, jobs, age_v, load = sys.argv[1:7]
runs, sizes = {}, {}
for line in open(times):
    tree, name, v = line.rstrip("\n").split("\t")
    if name.startswith("size-"):
        sizes.setdefault(tree, {})[name[5:]] = int(v)
    else:
        runs.setdefault(tree, {}).setdefault(name, []).append(int(v) / 1e6)
print(f"\nMedians of interleaved rounds (s), datamig {rev}, {jobs} cores, {age_v}, load {load}")
print(f"{'tree':<6} {'plain':>7} {'enc':>7} {'plain+age':>9} {'plain+vfy':>9} {'enc+vfy':>8}"
      f" | {'enc/plain':>9} {'(plain+age)/plain':>17} {'enc/(plain+age)':>15} {'enc+v/plain+v':>13}")
summary = {}
goal = lambda ok: "ok" if ok else "MISSED"
for tree, r in runs.items():
    m = {k: statistics.median(v) for k, v in r.items()}
    row = {"median_s": m, "rounds": len(r["plain"]), "bytes": sizes.get(tree, {}),
           "encrypted/plain": m["encrypted"] / m["plain"],
           "plain-then-age/plain": m["plain-then-age"] / m["plain"],
           "encrypted/plain-then-age": m["encrypted"] / m["plain-then-age"],
           "encrypted-verify/plain-verify": m["encrypted-verify"] / m["plain-verify"]}
    summary[tree] = row
    print(f"{tree:<6} {m['plain']:7.3f} {m['encrypted']:7.3f} {m['plain-then-age']:9.3f} {m['plain-verify']:9.3f}"
          f" {m['encrypted-verify']:8.3f} | {row['encrypted/plain']:9.2f} {row['plain-then-age/plain']:17.2f}"
          f" {row['encrypted/plain-then-age']:15.2f} {row['encrypted-verify/plain-verify']:13.2f}")
for tree, b in sizes.items():
    print(f"bytes {tree}: plain {b.get('plain')}, encrypted {b.get('encrypted')}")
print("goal: encrypted/plain <= 1.10 (and with verify)")
for tree, row in summary.items():
    print(f"  {tree:<6} no-verify {goal(row['encrypted/plain'] <= 1.10)}, verify {goal(row['encrypted-verify/plain-verify'] <= 1.10)}")
with open(dest, "w") as f:
    json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "datamig": rev,
               "cores": int(jobs), "age": age_v, "load": load, "trees": summary, "runs_s": runs}, f, indent=2)
    f.write("\n")
PY
