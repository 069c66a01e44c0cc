#!/usr/bin/env bash
# Off-site copies (issue 13) against one local S3 server (moto_server from
# .ci/venv, as the tests use): medians of interleaved rounds of
#   upload:  `datamig copy A s3://bench/…` vs `rclone copy A bench:bench/…`
#            of the same >= 1 GiB archive (Debian rclone, an S3 remote set
#            through RCLONE_CONFIG_BENCH_*: provider Other, path style);
#            datamig's time includes its read-back proof, so its
#            `upload_seconds` (the uploads alone) is reported too;
#   restore: `datamig restore URL/NAME --to D PATH` vs `restic restore latest
#            --include PATH --no-cache` from a restic repository of the same
#            tree on the same server, with the bytes each fetched, counted
#            by a proxy in front of the server (benches/count_proxy.py: HTTP
#            response bytes, headers included) and, for datamig, its own
#            `archive_bytes_read`.
# Run by hand, never in CI.
# Usage: benches/remote.sh [BENCH_DIR]
#   ROUNDS    counted rounds (default 3)
#   SIZE_MIB  the big file's size (default 1024: the archive is >= 1 GiB)
#   WORK      tree, archive, restore targets (default BENCH_DIR/work/remote)
# Needs: python3, curl, rclone, restic, and .ci/venv with moto[server].
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
bench_dir="${1:-${DATAMIG_BENCH_DIR:-/tmp/datamig-bench}}"
rounds="${ROUNDS:-3}"
size_mib="${SIZE_MIB:-1024}"
work="${WORK:-$bench_dir/work/remote}"
results="$here/results"
moto_server="$repo/.ci/venv/bin/moto_server"
for tool in python3 curl rclone restic; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done
[[ -x "$moto_server" ]] || { echo "$moto_server is required (.ci/run installs it)" >&2; exit 2; }
mkdir -p "$work" "$results"

echo "== building the release binary"
(cd "$repo" && cargo build --release --quiet)
bin="$work/datamig"
cp "$repo/target/release/datamig" "$bin.new" && mv "$bin.new" "$bin"
rev="$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z "$(cd "$repo" && git status --porcelain --untracked-files=no -- src Cargo.toml)" ]] || rev="$rev+dirty"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
pport="$(free_port)"
count="$work/proxy-bytes"
"$moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
python3 "$here/count_proxy.py" "$pport" "$port" "$count" &
proxy_pid=$!
trap 'kill $moto_pid $proxy_pid 2>/dev/null || true' EXIT
auth="Authorization: AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
for _ in $(seq 100); do curl -sf -o /dev/null -H "$auth" "http://127.0.0.1:$port/" && break; sleep 0.2; done
curl -sf -o /dev/null -X PUT -H "$auth" "http://127.0.0.1:$port/bench"
s3_delete() { curl -sf -o /dev/null -X DELETE -H "$auth" "http://127.0.0.1:$port/bench/$1" || true; }

# A CA bundle from the environment makes rclone's AWS SDK refuse its own
# HTTP transport; the server here is plain http.
unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export RESTIC_PASSWORD=bench
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ENDPOINT="http://127.0.0.1:$port" RCLONE_CONFIG_BENCH_REGION=us-east-1
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=testing RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=testing
direct="http://127.0.0.1:$port"
proxied="http://127.0.0.1:$pport"

tree="$work/tree"
if [[ ! -f "$tree/data/big.bin" ]] || (($(stat -c %s "$tree/data/big.bin") != size_mib << 20)); then
    echo "== writing a $size_mib MiB file of random bytes and a 4 KiB needle"
    rm -rf "$tree"
    mkdir -p "$tree/data/small"
    head -c "$((size_mib << 20))" /dev/urandom >"$tree/data/big.bin"
    head -c 4096 /dev/urandom >"$tree/data/small/needle.bin"
    for i in $(seq 20); do echo "note $i" >"$tree/data/small/note-$i.txt"; done
fi
rm -rf "$work/archives"
"$bin" --root "$tree" -q archive data --dest "$work/archives" --date 20251225 --no-verify
a="$work/archives/data-20251225.tar.zst"
name="$(basename "$a")"
abytes="$(stat -c %s "$a")"
echo "   $a: $abytes bytes; datamig at $rev; moto on port $port (proxy $pport)"
((abytes >= 1 << 30)) || echo "   note: the archive is under 1 GiB (SIZE_MIB=$size_mib)"

echo "== the restore sources: one datamig copy, one restic repository"
AWS_ENDPOINT_URL="$direct" "$bin" -q copy "$a" s3://bench/base
restic -q -r "s3:$direct/bench/restic" init >/dev/null
restic -q -r "s3:$direct/bench/restic" backup --no-cache "$tree/data" >/dev/null

now() { date +%s.%N; }
rows="$work/rows.tsv"
: >"$rows"
for r in $(seq "$rounds"); do
    echo "== round $r/$rounds"
    t0=$(now)
    AWS_ENDPOINT_URL="$direct" "$bin" --json copy "$a" "s3://bench/dm-$r" >"$work/copy.json"
    t1=$(now)
    up="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["upload_seconds"])' "$work/copy.json")"
    echo -e "upload\tdatamig\t$(echo "$t1 - $t0" | bc)\t$up" >>"$rows"
    for s in "" .sha256 .manifest.jsonl; do s3_delete "dm-$r/$name$s"; done
    t0=$(now)
    rclone copy "$a" "bench:bench/rc-$r"
    t1=$(now)
    echo -e "upload\trclone\t$(echo "$t1 - $t0" | bc)\t" >>"$rows"
    s3_delete "rc-$r/$name"

    rm -rf "$work/out-dm" "$work/out-restic"
    b0=$(cat "$count"); t0=$(now)
    AWS_ENDPOINT_URL="$proxied" "$bin" --json restore "s3://bench/base/$name" --to "$work/out-dm" small/needle.bin >"$work/restore.json"
    t1=$(now); sleep 0.3; b1=$(cat "$count")
    read_bytes="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["archive_bytes_read"])' "$work/restore.json")"
    cmp "$work/out-dm/small/needle.bin" "$tree/data/small/needle.bin"
    echo -e "restore\tdatamig\t$(echo "$t1 - $t0" | bc)\t$((b1 - b0))\t$read_bytes" >>"$rows"
    b0=$(cat "$count"); t0=$(now)
    restic -q -r "s3:$proxied/bench/restic" restore latest --no-cache --target "$work/out-restic" --include "$tree/data/small/needle.bin" >/dev/null
    t1=$(now); sleep 0.3; b1=$(cat "$count")
    cmp "$work/out-restic$tree/data/small/needle.bin" "$tree/data/small/needle.bin"
    echo -e "restore\trestic\t$(echo "$t1 - $t0" | bc)\t$((b1 - b0))\t" >>"$rows"
done

python3 - "$rows" "$results/remote-summary.json" "$rev" "$abytes" "$rounds" <<'PY'
import json, statistics, sys, os
rows_path, out, rev, abytes, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = [l.rstrip("\n").split("\t") for l in open(rows_path) if l.strip()]
def med(kind, tool, col):
    v = [float(r[col]) for r in rows if r[0] == kind and r[1] == tool and len(r) > col and r[col]]
    return statistics.median(v) if v else None
s = {
    "datamig_rev": rev, "archive_bytes": abytes, "rounds": rounds, "cores": os.cpu_count(),
    "server": "moto_server (in-memory S3, 127.0.0.1)",
    "upload": {
        "datamig_copy_seconds": med("upload", "datamig", 2),
        "datamig_upload_seconds": med("upload", "datamig", 3),
        "rclone_copy_seconds": med("upload", "rclone", 2),
    },
    "restore_one_file": {
        "datamig_seconds": med("restore", "datamig", 2),
        "datamig_server_bytes": med("restore", "datamig", 3),
        "datamig_archive_bytes_read": med("restore", "datamig", 4),
        "restic_seconds": med("restore", "restic", 2),
        "restic_server_bytes": med("restore", "restic", 3),
    },
    "rows": rows,
}
u, r = s["upload"], s["restore_one_file"]
u["ratio_copy_vs_rclone"] = u["datamig_copy_seconds"] / u["rclone_copy_seconds"]
u["ratio_upload_vs_rclone"] = u["datamig_upload_seconds"] / u["rclone_copy_seconds"]
r["ratio_seconds_vs_restic"] = r["datamig_seconds"] / r["restic_seconds"]
r["ratio_bytes_vs_restic"] = r["datamig_server_bytes"] / r["restic_server_bytes"]
json.dump(s, open(out, "w"), indent=2)
print(f"\n{'':28}{'datamig':>12}{'other':>12}{'ratio':>8}")
print(f"{'upload, whole copy (s)':28}{u['datamig_copy_seconds']:12.2f}{u['rclone_copy_seconds']:12.2f}{u['ratio_copy_vs_rclone']:8.2f}  (rclone copy)")
print(f"{'upload, uploads only (s)':28}{u['datamig_upload_seconds']:12.2f}{u['rclone_copy_seconds']:12.2f}{u['ratio_upload_vs_rclone']:8.2f}")
print(f"{'one-file restore (s)':28}{r['datamig_seconds']:12.2f}{r['restic_seconds']:12.2f}{r['ratio_seconds_vs_restic']:8.2f}  (restic restore --include)")
print(f"{'  bytes from the server':28}{r['datamig_server_bytes']:12.0f}{r['restic_server_bytes']:12.0f}{r['ratio_bytes_vs_restic']:8.3f}")
print(f"{'  archive_bytes_read':28}{r['datamig_archive_bytes_read']:12.0f}")
print(f"medians of {rounds} interleaved rounds; archive {abytes} bytes; {out}")
PY
