"""Shared fixtures of the Python package's tests.

Run with ``pytest tests/python`` after ``pip install .`` at the repository
root. Each test gets its own database in a temporary folder.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest

import mnemo

# Short batching windows keep the tests quick; tests that need saves to
# stay pending set their own.
FAST = {"quiet_window_ms": 20, "max_wait_ms": 200}


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "memory.db")


@pytest.fixture
def open_memory(db_path):
    """Opens memories on the test's database (fast windows unless told
    otherwise) and closes whatever the test left open."""
    opened = []

    def _open(path=None, **kwargs):
        config = dict(FAST)
        config.update(kwargs)
        kwargs = config
        kwargs.setdefault("namespace", "u1")
        memory = mnemo.Memory(path or db_path, **kwargs)
        opened.append(memory)
        return memory

    yield _open
    for memory in opened:
        memory.close()


@pytest.fixture
def run_python():
    """Runs Python code in a new process: ``run_python(code, *args)``."""
    return _run_python


def _run_python(code, *args, env=None, timeout=120, **popen):
    """Runs ``code`` in a new Python process (this interpreter, this
    package) and returns the completed process."""
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        **popen,
    )


def _pg_bindir():
    """PostgreSQL's server binaries, found as the Rust tests find them
    (tests/common/pg.rs): $MNEMO_PG_BINDIR, `pg_config --bindir`,
    /usr/lib/postgresql/15/bin, the highest version installed."""
    candidates = [os.environ.get("MNEMO_PG_BINDIR")]
    try:
        candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    candidates.append("/usr/lib/postgresql/15/bin")
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for c in candidates:
        if c and os.path.exists(os.path.join(c, "initdb")) and os.path.exists(os.path.join(c, "postgres")):
            return c
    return None


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for this test session, on a Unix socket
    in its own temporary folder (trust authentication, user ``postgres``).
    Skipped when PostgreSQL's server binaries are not installed
    (``apt-get install postgresql-15``). Yields a function that makes a fresh
    database and returns its ``postgres://`` URL."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql-15)")
    base = tempfile.mkdtemp(prefix="mnemo-py-pg-")
    # initdb and postgres refuse to run as root: run them as `postgres`.
    as_postgres = []
    if os.geteuid() == 0:
        if subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        shutil.chown(base, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(base, "data")
    subprocess.run(
        as_postgres
        + [os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"],
        check=True,
        capture_output=True,
    )
    port = 5432
    server = subprocess.Popen(
        as_postgres
        + [
            os.path.join(bindir, "postgres"),
            "-D", data,
            "-k", base,
            "-p", str(port),
            "-c", "listen_addresses=",
            "-c", "max_connections=100",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(base, "postgres.log"), "w"),
    )
    psql = os.path.join(bindir, "psql")
    if not os.path.exists(psql):
        psql = shutil.which("psql") or psql
    deadline = time.monotonic() + 30
    while True:
        ready = subprocess.run(
            [psql, "-h", base, "-p", str(port), "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"],
            capture_output=True,
        )
        if ready.returncode == 0:
            break
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"PostgreSQL did not start: {ready.stderr!r}")
        time.sleep(0.1)
    made = [0]

    def database():
        made[0] += 1
        name = f"mnemo_py_{made[0]}"
        subprocess.run(
            [psql, "-h", base, "-p", str(port), "-U", "postgres", "-d", "postgres", "-c", f"CREATE DATABASE {name}"],
            check=True,
            capture_output=True,
        )
        return f"postgres://postgres@{urllib.parse.quote(base, safe='')}:{port}/{name}"

    try:
        yield database
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(base, ignore_errors=True)
