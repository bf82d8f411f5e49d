//! The CPU pools, one per kind of CPU work, each sized to the cores the
//! process may use (`available_parallelism`, which follows a container's
//! CPU quota on ECS and Kubernetes).
//!
//! Why not rayon's global pool: libraries use it too (the local model's
//! tokenizer batches with it, candle's matrix products split across it).
//! When the chunkers lived there and blocked on a full chunk queue, the
//! model that was to drain that queue waited for a thread of the same pool,
//! and a load of any real size hung for good. Now:
//!
//! - `chunking`: reading files and chunking. Its threads may block on the
//!   bounded chunk queue; nothing that drains the queue runs here.
//! - `model`: the local model's tokenizer and forward pass. It never waits on
//!   a queue, so it always finishes what it started; while the chunkers are
//!   parked on a full queue, it has every core.
//!
//! Async code hands work to a pool with `run`, which awaits the result
//! without holding a tokio worker or a blocking thread.

use std::sync::OnceLock;

use rayon::ThreadPool;

static CHUNKING: OnceLock<Result<ThreadPool, String>> = OnceLock::new();
static MODEL: OnceLock<Result<ThreadPool, String>> = OnceLock::new();

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn build(
    cell: &'static OnceLock<Result<ThreadPool, String>>,
    name: &'static str,
) -> anyhow::Result<&'static ThreadPool> {
    cell.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores())
            .thread_name(move |i| format!("vecload-{name}-{i}"))
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("cannot start the {name} threads: {e}"))
}

/// Reading and chunking documents.
pub fn chunking() -> anyhow::Result<&'static ThreadPool> {
    build(&CHUNKING, "chunk")
}

/// The local model.
pub fn model() -> anyhow::Result<&'static ThreadPool> {
    build(&MODEL, "model")
}

/// `f` on `pool`, awaited from async code. A panic in `f` comes back as an
/// error (rayon would abort the process on a panic in a spawned job).
pub async fn run<T, F>(pool: &ThreadPool, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.spawn(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into())
        });
        let _ = tx.send(out);
    });
    rx.await
        .map_err(|_| "the worker thread went away".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deadlock of issue 16 in small: every chunking thread blocked on a
    /// full queue must not keep a model job (which uses rayon inside) from
    /// finishing, since the model is what drains the queue.
    #[test]
    fn model_work_finishes_while_every_chunking_thread_is_blocked() {
        let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(1);
        let chunking = chunking().unwrap();
        for i in 0..chunking.current_num_threads() * 2 {
            let tx = tx.clone();
            chunking.spawn(move || {
                let _ = tx.send(i as u64);
            });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let sum = rt.block_on(async {
            use rayon::prelude::*;
            let job = run(model().unwrap(), || {
                (0..10_000u64).into_par_iter().sum::<u64>()
            });
            tokio::time::timeout(std::time::Duration::from_secs(20), job)
                .await
                .expect("model work finished while the chunkers were blocked")
        });
        assert_eq!(sum, Ok(49_995_000));
        drop(tx);
        while rx.recv().is_ok() {}
    }

    #[test]
    fn a_panic_comes_back_as_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let out: Result<(), String> = rt.block_on(run(model().unwrap(), || panic!("model broke")));
        assert_eq!(out, Err("model broke".to_string()));
    }
}
