"""The type stubs shipped with the package (``mnemo/_mnemo.pyi``, with
``py.typed``) match the extension module, and typed code using the API
checks under ``mypy --strict``. Needs mypy (``pip install mypy``); skipped
without it."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy")

USAGE = '''
import asyncio
import datetime
from typing import List, Optional

import mnemo


def sync_use(path: str) -> Optional[str]:
    with mnemo.Memory(path, namespace="u1", quiet_window_ms=20, journal_sync="batch") as memory:
        receipt: mnemo.Receipt = memory.save("c", "k", "v", metadata={"n": [1, 2.5, None]})
        outcome: mnemo.Outcome = receipt.wait_durable(timeout=1.5)
        version: Optional[int] = outcome.version
        record = memory.get("c", "k")
        if record is None:
            return None
        when: datetime.datetime = record.updated_at
        hits: List[mnemo.SearchHit] = memory.search("v", limit=3)
        records: List[mnemo.MemoryRecord] = memory.list()
        page: mnemo.ListPage = memory.list_page(limit=10)
        cursor: Optional[str] = page.next_cursor
        pending: int = memory.stats().pending
        p99: float = memory.stats().flush_ms.p99
        print(version, when, hits[0].score, records, cursor, pending, p99, receipt.status)
        return record.value


async def async_use(path: str) -> str:
    async with mnemo.Memory(path, namespace="u1") as memory:
        receipt = memory.save("c", "k", "v")
        outcome = await receipt.durable()
        indexed = await receipt.indexed()
        return outcome.kind + indexed.kind


def errors(memory: mnemo.Memory) -> str:
    try:
        memory.save("", "k", "v")
    except mnemo.InvalidInput as e:
        return e.field + e.reason
    except mnemo.Overloaded as e:
        return str(e.pending)
    except mnemo.MnemoError:
        return "other"
    return "none"


asyncio.run(async_use("x.db"))
'''


def test_stubs_match_the_extension_module():
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "mnemo._mnemo", "--ignore-disjoint-bases"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_typed_code_checks_under_mypy_strict(tmp_path):
    usage = tmp_path / "usage.py"
    usage.write_text(textwrap.dedent(USAGE))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(usage)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_catches_a_wrong_call(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import mnemo\n"
        "m = mnemo.Memory('x.db', no_such_option=1)\n"
        "m.save('c', 'k', 42)\n"
        "n: int = m.get('c', 'k')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "no_such_option" in done.stdout
    assert 'Argument 3 to "save"' in done.stdout
    assert "Incompatible types in assignment" in done.stdout
