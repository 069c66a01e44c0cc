#!/usr/bin/env bash
# Restore benchmark: `datamig restore` against GNU `tar --zstd -xf`.
#   (a) one 4 KiB file out of a >= 1 GiB archive (datamig seeks to its frame,
#       tar decompresses the whole stream), with the archive bytes each reads;
#   (b) full restore of that archive (the large tree plus the 4 KiB file);
#   (c) full restore of the small tree's archive (50,000 files).
# Optionally (VERIFY_RECHECK) re-runs archive.sh's verify comparison on the
# same archives. See benches/README.md ("Restore").
# Usage: benches/restore.sh [BENCH_DIR]   (settings: see benches/common.sh and below)
#   RUNS               hyperfine --runs for every comparison (default 5; --warmup 1)
#   RESTORE_DIR_LARGE  where (a) and (b) extract (default BENCH_DIR/work/restore/out,
#                      i.e. the bench directory's filesystem)
#   RESTORE_DIR_SMALL  where (c) extracts (default /dev/shm/datamig-bench-restore:
#                      ext4 is pathologically slow at re-creating 50,000 files
#                      right after deleting them, see the README)
#   LARGE_TMPFS        1 (default): also run (b) into /dev/shm (datamig vs tar), which
#                      takes disk writeback and datamig's final syncfs out of it
#   STRACE             1 (default): count the bytes each tool read() / pread()s
#                      from the archive file, with strace -ff -y (one extra run each)
#   VERIFY_RECHECK     trees for archive.sh's verify comparison (default "small";
#                      "" skips it, "small large" does both)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for tool in zstd tar; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done
tar --version | head -1 | grep -q 'GNU tar' || { echo "GNU tar is required" >&2; exit 2; }

runs="${RUNS:-5}"
date=20251225
work="$bench_dir/work/restore"
srcs="$work/src"          # --root for the large archive
arch="$work/archives"
mkdir -p "$srcs" "$arch"
shm_ok() { [[ -d /dev/shm && -w /dev/shm ]]; }
out_large="${RESTORE_DIR_LARGE:-$work/out}"
if [[ -n "${RESTORE_DIR_SMALL:-}" ]]; then
    out_small="$RESTORE_DIR_SMALL"
elif shm_ok; then
    out_small=/dev/shm/datamig-bench-restore
else
    out_small="$work/out-small"
fi
verify_trees="${VERIFY_RECHECK-small}"
# (b') needs ~2.1 GiB free in /dev/shm; skipped when (b) already runs on tmpfs.
large_tmpfs="${LARGE_TMPFS:-1}"
if ! shm_ok || (( $(df -B1 --output=avail /dev/shm | tail -1) < 3 << 30 )) \
    || [[ "$(df --output=fstype "$(dirname "$out_large")" 2>/dev/null | tail -1)" == tmpfs ]]; then
    large_tmpfs=0
fi
use_strace="${STRACE:-1}"
command -v strace >/dev/null || use_strace=0

want() { [[ " $trees " == *" $1 "* ]]; }
fs_of() { mkdir -p "$1" && df -T "$1" | awk 'NR==2 {print $2 " (" $1 ")"}'; }

# ---- the archives -----------------------------------------------------------
# large4k = a copy of the large tree plus one 4 KiB file whose name sorts
# between the big files (random-0.bin random-1.bin | sample-4k.bin | text-0.log
# text-1.log), so it sits in the middle of the archive. Built once, reused.
l4k="$srcs/large4k"
member=sample-4k.bin
if want large && [[ ! -f "$l4k/$member" ]]; then
    echo "== building $l4k (copy of the large tree + $member)"
    rm -rf "$l4k" "$l4k.partial"
    mkdir -p "$l4k.partial"
    cp -a "$bench_dir/large/." "$l4k.partial/"
    python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(4096).randbytes(4096))' \
        > "$l4k.partial/$member"
    touch -r "$l4k.partial/random-1.bin" "$l4k.partial/$member"
    mv "$l4k.partial" "$l4k"
fi

# Fresh archives every run (the format may change with the build). With the
# read-back verify (the default), as the runbook would make them.
A_large="$arch/large4k-$date.tar.zst"
A_small="$arch/small-$date.tar.zst"
if want large; then
    echo "== archiving large4k"
    rm -f "$A_large"*
    "$bin" --root "$srcs" archive large4k --dest "$arch" --date "$date" -q >/dev/null
    size="$(stat -c %s "$A_large")"
    echo "   $A_large: $size bytes"
    (( size >= 1 << 30 )) || { echo "the large archive is < 1 GiB ($size bytes)" >&2; exit 1; }
fi
if want small; then
    echo "== archiving small"
    rm -f "$A_small"*
    "$bin" --root "$bench_dir" archive small --dest "$arch" --date "$date" -q >/dev/null
    echo "   $A_small: $(stat -c %s "$A_small") bytes"
fi

# Bytes read from the archive file (read + pread64 on a descriptor whose path
# is the archive; strace -y shows it, -ff keeps each thread's calls whole).
strace_bytes() {
    local target d n
    target="$(realpath "$1")"; shift
    d="$(mktemp -d)"
    strace -ff -y -qq -e trace=read,pread64,readv,preadv -o "$d/t" "$@" >/dev/null
    n="$(cat "$d"/t.* | grep -F "<$target>" \
        | awk -F' = ' '$NF ~ /^[0-9]+$/ {s += $NF} END {printf "%.0f", s}' || true)"
    rm -rf "$d"
    echo "${n:-0}"
}
# One datamig restore with --json; prints the report.
dm_json() { "$bin" restore "$@" --json -q; }
fresh() { rm -rf "$1" && mkdir -p "$1" && sync -f "$1"; }

bytes_json="{}"
add_bytes() { bytes_json="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d[sys.argv[2]]=json.loads(sys.argv[3]); print(json.dumps(d))' "$bytes_json" "$1" "$2")"; }
fs_json="{}"
add_fs() { fs_json="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d[sys.argv[2]]=sys.argv[3]; print(json.dumps(d))' "$fs_json" "$1" "$2")"; }

prep() { echo "rm -rf '$1' && mkdir '$1' && sync -f '$1'"; }

if want large; then
    out="$out_large"
    add_fs large "$(fs_of "$out")"
    echo "== restore: large4k into $out ($(fs_of "$out")), $runs runs"
    # Sanity check + datamig's own count of the bytes it read.
    fresh "$out"
    rp="$(dm_json "$A_large" --to "$out" "$member")"
    cmp <(python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(4096).randbytes(4096))') "$out/$member"
    fresh "$out"
    rf="$(dm_json "$A_large" --to "$out")"
    b="$(python3 -c 'import json,sys; p,f=(json.loads(a) for a in sys.argv[1:3]); print(json.dumps({
        "archive_size": p["archive_size"],
        "manifest_sidecar_size": int(sys.argv[3]),
        "datamig_partial_archive_bytes_read": p["archive_bytes_read"],
        "datamig_full_archive_bytes_read": f["archive_bytes_read"],
        "datamig_full_restored_files": f["files"], "datamig_full_restored_bytes": f["bytes"]}))' \
        "$rp" "$rf" "$(stat -c %s "$A_large.manifest.jsonl")")"
    if [[ "$use_strace" == 1 ]]; then
        echo "   counting archive reads with strace"
        fresh "$out"; s_dp="$(strace_bytes "$A_large" "$bin" restore "$A_large" --to "$out" "$member" -q)"
        fresh "$out"; s_tp="$(strace_bytes "$A_large" tar --zstd -xf "$A_large" -C "$out" "$member")"
        fresh "$out"; s_df="$(strace_bytes "$A_large" "$bin" restore "$A_large" --to "$out" -q)"
        b="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(strace_datamig_partial=int(sys.argv[2]), strace_tar_partial=int(sys.argv[3]), strace_datamig_full=int(sys.argv[4])); print(json.dumps(d))' \
            "$b" "$s_dp" "$s_tp" "$s_df")"
    fi
    add_bytes large "$b"
    echo "   bytes: $b"
    sync

    hyperfine --warmup 1 --runs "$runs" --style basic \
        --export-json "$results/restore-partial.json" \
        --prepare "$(prep "$out")" -n datamig-restore-4k \
        "'$bin' restore '$A_large' --to '$out' $member -q" \
        --prepare "$(prep "$out")" -n tar-x-4k \
        "tar --zstd -xf '$A_large' -C '$out' $member"
    sync
    hyperfine --warmup 1 --runs "$runs" --style basic \
        --export-json "$results/restore-full-large.json" \
        --prepare "$(prep "$out")" -n datamig-restore \
        "'$bin' restore '$A_large' --to '$out' -q" \
        --prepare "$(prep "$out")" -n tar-x \
        "tar --zstd -xf '$A_large' -C '$out'" \
        --prepare "$(prep "$out")" -n tar-x-sync \
        "tar --zstd -xf '$A_large' -C '$out' && sync -f '$out'"
    rm -rf "$out"
    # (b') the same full restore into tmpfs: no disk writeback, so no syncfs cost.
    if [[ "$large_tmpfs" == 1 ]]; then
        tout=/dev/shm/datamig-bench-restore-large
        add_fs large_tmpfs "$(fs_of "$tout")"
        echo "== restore: large4k into $tout ($(fs_of "$tout")), $runs runs"
        hyperfine --warmup 1 --runs "$runs" --style basic \
            --export-json "$results/restore-full-large-tmpfs.json" \
            --prepare "$(prep "$tout")" -n datamig-restore \
            "'$bin' restore '$A_large' --to '$tout' -q" \
            --prepare "$(prep "$tout")" -n tar-x \
            "tar --zstd -xf '$A_large' -C '$tout'"
        rm -rf "$tout"
    fi
fi

if want small; then
    out="$out_small"
    add_fs small "$(fs_of "$out")"
    echo "== restore: small into $out ($(fs_of "$out")), $runs runs"
    fresh "$out"
    rf="$(dm_json "$A_small" --to "$out")"
    add_bytes small "$(python3 -c 'import json,sys; f=json.loads(sys.argv[1]); print(json.dumps({
        "archive_size": f["archive_size"], "manifest_sidecar_size": int(sys.argv[2]),
        "datamig_full_archive_bytes_read": f["archive_bytes_read"],
        "datamig_full_restored_files": f["files"], "datamig_full_restored_bytes": f["bytes"]}))' \
        "$rf" "$(stat -c %s "$A_small.manifest.jsonl")")"
    sync
    hyperfine --warmup 1 --runs "$runs" --style basic \
        --export-json "$results/restore-full-small.json" \
        --prepare "$(prep "$out")" -n datamig-restore \
        "'$bin' restore '$A_small' --to '$out' -q" \
        --prepare "$(prep "$out")" -n tar-x \
        "tar --zstd -xf '$A_small' -C '$out'" \
        --prepare "$(prep "$out")" -n tar-x-sync \
        "tar --zstd -xf '$A_small' -C '$out' && sync -f '$out'"
    rm -rf "$out"
fi

# ---- optional: archive.sh's verify comparison, on these archives -------------
vx=/dev/shm/datamig-bench-verify-x
shm_ok || vx="$work/verify-x"
for tree in $verify_trees; do
    want "$tree" || continue
    a="$A_small"; [[ "$tree" == large ]] && a="$A_large"
    echo "== verify re-check: $tree"
    hyperfine --warmup 1 --runs "$runs" --style basic \
        --export-json "$results/restore-verify-recheck-$tree.json" \
        -n datamig-verify "'$bin' verify '$a' -q" \
        --prepare "rm -rf '$vx' && mkdir -p '$vx'" -n zstd-tar-sha256sum \
        "zstd -dcq '$a' | tar -xf - -C '$vx' && cd '$vx' && sha256sum -c --quiet .datamig/SHA256SUMS"
    rm -rf "$vx"
done

rm -f "$arch"/*-"$date".tar.zst*
rmdir "$arch" 2>/dev/null || true

python3 - "$results" "$build_rev" "$jobs" "$bytes_json" "$fs_json" "$runs" "$verify_trees" $trees <<'PY'
import json, os, sys, datetime
results, rev, jobs, bytes_, fs, runs, vtrees = sys.argv[1:8]
trees = sys.argv[8:]
bytes_, fs, vtrees = json.loads(bytes_), json.loads(fs), vtrees.split()
def med(name):
    with open(f"{results}/{name}.json") as f:
        return {r["command"]: r["median"] for r in json.load(f)["results"]}
out = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "datamig": rev,
       "cores": int(jobs), "runs": int(runs), "filesystems": fs, "bytes": bytes_}
goal = lambda ok: "ok" if ok else "MISSED"
print()
print(f"Restore medians (s), datamig {rev}, {jobs} cores, {runs} runs + 1 warm-up")
if "large" in trees:
    p, f = med("restore-partial"), med("restore-full-large")
    out["partial"] = {"median_s": p, "tar/datamig": p["tar-x-4k"] / p["datamig-restore-4k"]}
    out["full_large"] = {"median_s": f, "datamig/tar": f["datamig-restore"] / f["tar-x"],
                         "datamig/(tar+sync)": f["datamig-restore"] / f["tar-x-sync"]}
    b = bytes_["large"]
    print(f"(a) 4 KiB file of {b['archive_size']:,} B archive, into {fs['large']}:"
          f" datamig {p['datamig-restore-4k']:.4f}  tar {p['tar-x-4k']:.3f}"
          f"  -> tar/datamig {out['partial']['tar/datamig']:.0f}x (goal >= 50: {goal(out['partial']['tar/datamig'] >= 50)})")
    print(f"    archive bytes: datamig reports {b['datamig_partial_archive_bytes_read']:,}"
          + (f", pread {b['strace_datamig_partial']:,}; tar reads {b['strace_tar_partial']:,}" if "strace_tar_partial" in b
             else f"; tar reads the whole archive ({b['archive_size']:,})")
          + f"; + manifest sidecar {b['manifest_sidecar_size']:,}")
    print(f"(b) full, large4k: datamig {f['datamig-restore']:.3f}  tar {f['tar-x']:.3f}  tar+sync {f['tar-x-sync']:.3f}"
          f"  -> datamig/tar {out['full_large']['datamig/tar']:.2f}, datamig/(tar+sync) {out['full_large']['datamig/(tar+sync)']:.2f}")
    if os.path.exists(f"{results}/restore-full-large-tmpfs.json") and "large_tmpfs" in fs:
        t = med("restore-full-large-tmpfs")
        out["full_large_tmpfs"] = {"median_s": t, "datamig/tar": t["datamig-restore"] / t["tar-x"]}
        print(f"(b') full, large4k, into {fs['large_tmpfs']}: datamig {t['datamig-restore']:.3f}  tar {t['tar-x']:.3f}"
              f"  -> datamig/tar {out['full_large_tmpfs']['datamig/tar']:.2f}")
    if "strace_datamig_full" in b:
        print(f"    datamig full restore: reports {b['datamig_full_archive_bytes_read']:,} B read, pread {b['strace_datamig_full']:,} B")
if "small" in trees:
    s = med("restore-full-small")
    out["full_small"] = {"median_s": s, "datamig/tar": s["datamig-restore"] / s["tar-x"],
                         "datamig/(tar+sync)": s["datamig-restore"] / s["tar-x-sync"]}
    print(f"(c) full, small, into {fs['small']}: datamig {s['datamig-restore']:.3f}  tar {s['tar-x']:.3f}"
          f"  tar+sync {s['tar-x-sync']:.3f}  -> datamig/tar {out['full_small']['datamig/tar']:.2f},"
          f" datamig/(tar+sync) {out['full_small']['datamig/(tar+sync)']:.2f}")
for t in vtrees:
    if t not in trees or not os.path.exists(f"{results}/restore-verify-recheck-{t}.json"):
        continue
    v = med(f"restore-verify-recheck-{t}")
    out.setdefault("verify_recheck", {})[t] = {"median_s": v,
        "datamig/reference": v["datamig-verify"] / v["zstd-tar-sha256sum"]}
    print(f"verify re-check {t}: datamig verify {v['datamig-verify']:.3f}  zstd|tar|sha256sum -c"
          f" {v['zstd-tar-sha256sum']:.3f}  -> {v['datamig-verify'] / v['zstd-tar-sha256sum']:.2f}")
with open(f"{results}/restore-summary.json", "w") as fh:
    json.dump(out, fh, indent=2)
    fh.write("\n")
PY
