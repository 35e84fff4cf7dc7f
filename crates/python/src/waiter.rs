//! The one background waiter behind every receipt wait from Python.
//!
//! A receipt's wait is a small future on the engine's watch channels. Here
//! each one becomes a task on a single-threaded tokio runtime, driven by one
//! thread (`mnemo-waiter`), so a thousand pending receipts cost a thousand
//! small tasks, not a thousand threads. When a wait ends for an `await`, its
//! result goes to a second thread (`mnemo-dispatch`), the only one here that
//! takes the GIL: it takes it once for everything that resolved together and
//! hands the results to each asyncio loop with one `call_soon_threadsafe`
//! per loop; on the loop, [`settle`] sets the futures that are still
//! waiting. Blocking waits (`wait_durable()`) get their result through a
//! channel instead and never touch the dispatcher.
//!
//! The engine's own threads never see any of this, and never take the GIL.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyList, PyTuple};
use tokio::runtime::Handle;

use crate::errors;
use crate::receipt::PyOutcome;

/// What a settled asyncio future gets.
enum Value {
    /// A receipt's wait ended: an `Outcome`.
    Outcome(mnemo::WriteOutcome),
    /// Work without a result (`aclose()`): `None`.
    Nothing,
}

/// A settled wait for an asyncio future.
struct Settled {
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
    result: Result<Value, mnemo::Error>,
}

pub(crate) struct Waiter {
    handle: Handle,
    settled: mpsc::Sender<Settled>,
}

/// The waiter of this process (its pid: a forked child starts its own, the
/// parent's threads are not there).
static WAITER: Mutex<Option<(u32, Arc<Waiter>)>> = Mutex::new(None);

/// Set at interpreter exit: the dispatcher stops taking the GIL.
static EXITING: AtomicBool = AtomicBool::new(false);

pub(crate) fn waiter() -> Arc<Waiter> {
    let pid = std::process::id();
    let mut slot = WAITER.lock();
    match &*slot {
        Some((p, w)) if *p == pid => w.clone(),
        _ => {
            let w = Arc::new(Waiter::start());
            *slot = Some((pid, w.clone()));
            w
        }
    }
}

/// At interpreter exit, after the memories are closed.
pub(crate) fn exiting() {
    EXITING.store(true, Ordering::SeqCst);
}

impl Waiter {
    fn start() -> Waiter {
        let rt = tokio::runtime::Builder::new_current_thread()
            // The blocking pool's threads (`aclose()` runs there).
            .thread_name("mnemo-close")
            .build()
            .expect("a current-thread tokio runtime builds");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("mnemo-waiter".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("spawn the mnemo-waiter thread");
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("mnemo-dispatch".into())
            .spawn(move || dispatch(rx))
            .expect("spawn the mnemo-dispatch thread");
        Waiter {
            handle,
            settled: tx,
        }
    }

    /// Runs `wait` on the waiter and resolves the asyncio `future` of
    /// `event_loop` with its result. Returns the task's abort handle.
    pub(crate) fn settle_future<F>(
        &self,
        event_loop: Py<PyAny>,
        future: Py<PyAny>,
        wait: F,
    ) -> tokio::task::AbortHandle
    where
        F: Future<Output = Result<mnemo::WriteOutcome, mnemo::Error>> + Send + 'static,
    {
        let tx = self.settled.clone();
        self.handle
            .spawn(async move {
                let result = wait.await.map(Value::Outcome);
                let _ = tx.send(Settled {
                    event_loop,
                    future,
                    result,
                });
            })
            .abort_handle()
    }

    /// Runs `work` on the waiter and sends its output to `tx`.
    pub(crate) fn spawn_to<F, T>(
        &self,
        work: F,
        tx: mpsc::SyncSender<T>,
    ) -> tokio::task::AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.handle
            .spawn(async move {
                let _ = tx.send(work.await);
            })
            .abort_handle()
    }

    /// Runs blocking `work` on the runtime's blocking pool and resolves
    /// the asyncio `future` of `event_loop` with `Ok(None)` or the error.
    pub(crate) fn settle_future_blocking<F>(
        &self,
        event_loop: Py<PyAny>,
        future: Py<PyAny>,
        work: F,
    ) where
        F: FnOnce() -> Result<(), mnemo::Error> + Send + 'static,
    {
        let tx = self.settled.clone();
        self.handle.spawn_blocking(move || {
            let result = work().map(|()| Value::Nothing);
            let _ = tx.send(Settled {
                event_loop,
                future,
                result,
            });
        });
    }
}

/// The dispatcher thread: takes the GIL once per burst of settled waits and
/// hands each loop its results in one `call_soon_threadsafe`.
fn dispatch(rx: mpsc::Receiver<Settled>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(4096));
        if EXITING.load(Ordering::SeqCst) {
            // The interpreter is going away: nobody is left to wake, and
            // taking the GIL now could block this thread for ever.
            std::mem::forget(batch);
            continue;
        }
        // `try_attach`: never panics if the interpreter is finalizing. If it
        // cannot attach, the batch's Python references are leaked (there
        // is no interpreter left to release them to).
        let mut batch = Some(batch);
        let attached = Python::try_attach(|py| deliver(py, batch.take().unwrap_or_default()));
        if attached.is_none() {
            std::mem::forget(batch);
        }
    }
}

fn deliver(py: Python<'_>, batch: Vec<Settled>) {
    // Group by loop, in arrival order.
    let mut groups: Vec<(Py<PyAny>, Vec<Bound<'_, PyAny>>)> = Vec::new();
    for s in batch {
        let item = (|| -> PyResult<Bound<'_, PyAny>> {
            let (value, is_error) = match s.result {
                Ok(Value::Outcome(o)) => (Bound::new(py, PyOutcome::from(o))?.into_any(), false),
                Ok(Value::Nothing) => (py.None().into_bound(py), false),
                Err(e) => (
                    errors::to_py(py, e)
                        .into_value(py)
                        .into_bound(py)
                        .into_any(),
                    true,
                ),
            };
            let is_error = PyBool::new(py, is_error).to_owned().into_any();
            Ok(PyTuple::new(py, [s.future.bind(py).clone(), value, is_error])?.into_any())
        })();
        let Ok(item) = item else { continue };
        match groups
            .iter_mut()
            .find(|(l, _)| l.as_ptr() == s.event_loop.as_ptr())
        {
            Some((_, items)) => items.push(item),
            None => groups.push((s.event_loop, vec![item])),
        }
    }
    let Ok(settle_fn) = settle_function(py) else {
        return;
    };
    for (event_loop, items) in groups {
        let Ok(list) = PyList::new(py, items) else {
            continue;
        };
        // A closed loop refuses: its futures have nobody waiting on them.
        let _ = event_loop
            .bind(py)
            .call_method1("call_soon_threadsafe", (settle_fn, list));
    }
}

fn settle_function(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static SETTLE: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    SETTLE
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(pyo3::wrap_pyfunction!(settle, py)?.into_any().unbind())
        })
        .map(|f| f.bind(py))
}

/// Runs on the asyncio loop: sets each `(future, value, is_error)` that is
/// still pending (a cancelled one is left alone).
#[pyfunction]
fn settle(items: &Bound<'_, PyList>) {
    for item in items.iter() {
        let Ok((future, value, is_error)) =
            item.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>, bool)>()
        else {
            continue;
        };
        if future
            .call_method0("done")
            .and_then(|d| d.is_truthy())
            .unwrap_or(true)
        {
            continue;
        }
        let _ = if is_error {
            future.call_method1("set_exception", (value,))
        } else {
            future.call_method1("set_result", (value,))
        };
    }
}
