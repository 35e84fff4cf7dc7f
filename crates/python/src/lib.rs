//! `mnemo._mnemo`: the extension module behind the `mnemo` Python package
//! (PyO3, stable ABI from CPython 3.9). The package (`python/mnemo`)
//! re-exports everything here; its stubs (`__init__.pyi`) give the types.
//!
//! - `memory`: `Memory`, the handle: open, save, forget, reads, close, and
//!   closing at interpreter exit.
//! - `receipt`: `Receipt` (awaitable and blocking waits) and `Outcome`.
//! - `waiter`: the one background waiter that resolves asyncio futures and
//!   blocking waits for every receipt.
//! - `records`: `MemoryRecord`, `SearchHit`, `ListPage`, `Stats`, `Summary`,
//!   and the JSON ⇄ Python conversions of metadata.
//! - `config`: `Memory(...)`'s keyword arguments as a `mnemo::Config`.
//! - `errors`: the exception classes and the mapping of `mnemo::Error`.

use pyo3::prelude::*;

mod config;
mod errors;
mod memory;
mod receipt;
mod records;
mod waiter;

#[pymodule]
fn _mnemo(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::add_to_module(m)?;
    m.add_class::<memory::PyMemory>()?;
    m.add_class::<receipt::PyReceipt>()?;
    m.add_class::<receipt::PyOutcome>()?;
    m.add_class::<records::PyMemoryRecord>()?;
    m.add_class::<records::PySearchHit>()?;
    m.add_class::<records::PyListPage>()?;
    m.add_class::<records::PyStats>()?;
    m.add_class::<records::PySummary>()?;
    // Not added to the module: only `atexit` holds it.
    let close_all = wrap_pyfunction!(memory::close_all_at_exit, m)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (close_all,))?;
    Ok(())
}
