#!/usr/bin/env bash
# Issue 15 item 5, interleaved (one run of each command per round, so machine
# noise hits all alike), wall and CPU time of every run: full restore of the
# small tree's archive (50,000 files) by datamig -j1 and -j"$(nproc)" (writer
# threads) against GNU `tar --zstd -xf`, each followed by `sync -f` of the
# destination (datamig syncs itself; the extra sync costs it nothing).
# Also checks that the -j1 and -jN reports are the same.
# Usage: [BEFORE=old/datamig] [ROUNDS=7] [RESTORE_DIR=/dev/shm/...] benches/restore15.sh [BENCH_DIR]
set -euo pipefail
export TREES="small"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is required (apt-get install -y time)" >&2; exit 2; }
tar --version | head -1 | grep -q 'GNU tar' || { echo "GNU tar is required" >&2; exit 2; }
rounds="${ROUNDS:-7}"
work="$bench_dir/work/restore15"
mkdir -p "$work/archives"
# tmpfs by default: ext4 is pathologically slow at re-creating 50,000 files
# right after deleting them (benches/README.md, "Restore"), which swamps both.
out="${RESTORE_DIR:-/dev/shm/datamig-bench-restore15}"
date=20251225
a="$work/archives/small-$date.tar.zst"
rm -f "$a"*
"$bin" --root "$bench_dir" archive small --dest "$work/archives" --date "$date" -q >/dev/null

declare -A cmd
names=()
add() { names+=("$1"); cmd[$1]="$2"; }
add datamig-j1 "'$bin' restore '$a' --to '$out' -q -j1 && sync -f '$out'"
add "datamig-j$jobs" "'$bin' restore '$a' --to '$out' -q -j$jobs && sync -f '$out'"
if [[ -n "${BEFORE:-}" ]]; then
    cp "$BEFORE" "$work/datamig-before.new" && mv "$work/datamig-before.new" "$work/datamig-before"
    add datamig-before "'$work/datamig-before' restore '$a' --to '$out' -q && sync -f '$out'"
fi
add tar-x-sync "tar --zstd -xf '$a' -C '$out' && sync -f '$out'"

times="$work/times.tsv"
: >"$times"
for ((r = 0; r <= rounds; r++)); do
    echo "== round $r of $rounds$( ((r == 0)) && echo ' (warm-up, not counted)')"
    # Rotate the order each round: no command always runs first.
    for ((i = 0; i < ${#names[@]}; i++)); do
        name="${names[$(((i + r) % ${#names[@]}))]}"
        rm -rf "$out" && mkdir -p "$out" && sync -f "$out"
        /usr/bin/time -o "$work/t.txt" -f '%e %U %S %M' bash -c "${cmd[$name]}" >/dev/null
        ((r == 0)) || printf '%s\t%s\n' "$name" "$(cat "$work/t.txt")" >>"$times"
    done
done

echo "== outputs"
report() {
    rm -rf "$out" && mkdir -p "$out"
    "$bin" restore "$a" --to "$out" -q --json "$@" | python3 -c 'import json,sys; r=json.load(sys.stdin); r.pop("seconds"); print(json.dumps(r, sort_keys=True))'
}
# One after the other (process substitutions would run both at once into $out).
report -j1 >"$work/report-j1.json"
report -j"$jobs" >"$work/report-jn.json"
cmp "$work/report-j1.json" "$work/report-jn.json" && echo "-j1 and -j$jobs restore reports identical"
rm -rf "$out"

python3 - "$times" "$results/restore15-summary.json" "$build_rev" "$jobs" "$(cat /proc/loadavg)" "$(df -T "$(dirname "$out")" | awk 'NR==2 {print $2}')" <<'PY'
import json, statistics, sys, datetime
times, dest, rev, jobs, load, fs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
runs = {}
for line in open(times):
    name, rest = line.rstrip("\n").split("\t")
    wall, user, sys_, rss = rest.split()
    runs.setdefault(name, []).append({"wall": float(wall), "cpu": float(user) + float(sys_),
                                      "rss_kib": int(rss)})
med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu", "rss_kib")}
       for k, v in runs.items()}
print(f"\nMedians of {len(next(iter(runs.values())))} interleaved rounds, datamig {rev}, {jobs} cores, load {load}, into {fs}")
print(f"{'command':<16} {'wall s':>8} {'cpu s':>8} {'RSS MiB':>8}  {'wall/tar':>8} {'cpu/tar':>8}")
t = med["tar-x-sync"]
ratios = {}
for k, m in med.items():
    ratios[k] = {"wall/tar": m["wall"] / t["wall"], "cpu/tar": m["cpu"] / t["cpu"]}
    print(f"{k:<16} {m['wall']:8.3f} {m['cpu']:8.3f} {m['rss_kib'] / 1024:8.1f}  "
          f"{ratios[k]['wall/tar']:8.2f} {ratios[k]['cpu/tar']:8.2f}")
best = ratios[f"datamig-j{jobs}"]["wall/tar"]
print(f"goal: datamig -j{jobs} <= 1.15x tar --zstd -xf + sync: {best:.2f} ({'ok' if best <= 1.15 else 'MISSED'})")
with open(dest, "w") as fh:
    json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "datamig": rev,
               "cores": jobs, "load": load, "filesystem": fs, "runs": runs, "median": med,
               "ratios": ratios}, fh, indent=2)
    fh.write("\n")
PY
