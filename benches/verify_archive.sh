#!/usr/bin/env bash
# Issue 15 item 3: `datamig verify ARCHIVE` (every member decoded and hashed,
# the whole-file SHA-256 beside it) against `borg check --verify-data` on a
# borg repository of the same tree, interleaved (one run of each command per
# round, so machine noise hits all alike), wall and CPU time of every run:
#   datamig verify -j1   datamig verify -j$(nproc)   borg check --verify-data
# The tree is issue 15's tree (b) scaled down: 4 files of SIZE_MIB MiB, each
# MiB half random bytes, half text (so both tools compress something).
# Also checks the output: the -j1 and -jN reports are byte-identical.
# Usage: [SIZE_MIB=256] [ROUNDS=5] benches/verify_archive.sh [BENCH_DIR]
set -euo pipefail
# A space, not empty: common.sh builds its default trees when TREES is empty.
export TREES=" "
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is required (apt-get install -y time)" >&2; exit 2; }
command -v borg >/dev/null || { echo "borg is required (apt-get install -y borgbackup)" >&2; exit 2; }
rounds="${ROUNDS:-5}"
size="${SIZE_MIB:-256}"
work="$bench_dir/work/verify-archive"
tree="$bench_dir/big4-$size"
mkdir -p "$work"

if [[ ! -d "$tree" ]]; then
    rm -rf "$tree.partial"
    python3 - "$tree.partial/data" "$size" <<'PY'
import os, random, sys
out, size = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
text = b"".join(b"line %06d of a log file, status=ok value=%d\n" % (i, i * 7) for i in range(12000))
for n in range(4):
    r = random.Random(n)
    with open(os.path.join(out, f"big{n}.bin"), "wb") as f:
        for _ in range(size):
            f.write(r.randbytes(1 << 19))
            f.write(text[: 1 << 19])
PY
    mv "$tree.partial" "$tree"
fi

archive="$work/data-20260101.tar.zst"
if [[ ! -f "$archive" ]]; then
    "$bin" --root "$tree" archive data --dest "$work" --date 20260101 --no-verify -q
fi
repo="$work/borg-repo"
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
if [[ ! -d "$repo" ]]; then
    borg init -e none "$repo"
    (cd "$tree" && borg create "$repo::data" data)
fi
echo "   archive $(du -h "$archive" | cut -f1), borg repo $(du -sh "$repo" | cut -f1)"

declare -A cmd
names=()
add() { names+=("$1"); cmd[$1]="$2"; }
add datamig-verify-j1 "'$bin' -q verify -j1 '$archive'"
add "datamig-verify-j$jobs" "'$bin' -q verify -j$jobs '$archive'"
add borg-check-verify-data "borg check --verify-data '$repo'"

times="$work/times.tsv"
: >"$times"
for ((r = 0; r <= rounds; r++)); do
    echo "== round $r of $rounds$( ((r == 0)) && echo ' (warm-up, not counted)')"
    for name in "${names[@]}"; do
        /usr/bin/time -o "$work/t.txt" -f '%e %U %S %M' bash -c "${cmd[$name]}" >/dev/null
        ((r == 0)) || printf '%s\t%s\n' "$name" "$(cat "$work/t.txt")" >>"$times"
    done
done

echo "== outputs"
"$bin" -q verify -j1 --json "$archive" >"$work/j1.json"
"$bin" -q verify -j"$jobs" --json "$archive" >"$work/jn.json"
cmp "$work/j1.json" "$work/jn.json" && echo "-j1 and -j$jobs reports identical"

python3 - "$times" "$results/verify-archive-summary.json" "$build_rev" "$jobs" "$size" "$(cat /proc/loadavg)" <<'PY'
import json, statistics, sys, datetime
times, dest, rev, jobs, size, load = sys.argv[1:7]
runs = {}
for line in open(times):
    name, rest = line.rstrip("\n").split("\t")
    wall, user, sys_, rss = rest.split()
    runs.setdefault(name, []).append({"wall": float(wall), "cpu": float(user) + float(sys_),
                                      "rss_kib": int(rss)})
med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu", "rss_kib")}
       for k, v in runs.items()}
borg = med["borg-check-verify-data"]
print(f"\nMedians of {len(next(iter(runs.values())))} interleaved rounds, datamig {rev}, "
      f"{jobs} cores, 4 x {size} MiB, load {load}")
print(f"{'command':<26} {'wall s':>8} {'cpu s':>8} {'RSS MiB':>8} {'wall/borg':>10}")
ratios = {}
for k, m in med.items():
    ratios[k] = round(m["wall"] / borg["wall"], 3)
    print(f"{k:<26} {m['wall']:8.3f} {m['cpu']:8.3f} {m['rss_kib'] / 1024:8.1f} {ratios[k]:10.2f}")
print("goal: datamig verify <= 0.8x borg check --verify-data, scaling with -j")
json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "datamig": rev,
           "cores": int(jobs), "tree": f"4 x {size} MiB (half random, half text per MiB)",
           "load": load, "medians": med, "wall_vs_borg": ratios, "goal": 0.8, "runs": runs},
          open(dest, "w"), indent=2)
print(f"wrote {dest}")
PY
