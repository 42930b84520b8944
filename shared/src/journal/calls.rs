//! The calls of the attempt being handled: the worker runs an attempt inside
//! [`capture`], the connector [`note`]s each call it makes. Outside a capture
//! (a dry run, the reconciler) a note goes nowhere.

use super::CallMade;
use std::cell::RefCell;
use std::future::Future;

/// At most this many calls are kept per attempt (the rest are counted).
pub const MAX_CALLS: usize = 64;

tokio::task_local! {
    static CALLS: RefCell<(Vec<CallMade>, usize)>;
}

/// Runs `f`, collecting the calls noted while it runs (in order). Past
/// [`MAX_CALLS`], a last entry says how many more were made.
pub async fn capture<F: Future>(f: F) -> (F::Output, Vec<CallMade>) {
    CALLS
        .scope(RefCell::new((Vec::new(), 0)), async move {
            let out = f.await;
            let (mut calls, more) = CALLS.with(|c| c.take());
            if more > 0 {
                calls.push(CallMade {
                    connection: String::new(),
                    method: String::new(),
                    path: format!("… {more} more call(s) not kept"),
                    status: None,
                    duration_ms: 0,
                    error: None,
                });
            }
            (out, calls)
        })
        .await
}

/// Notes one call into the attempt being captured, if any.
pub fn note(c: CallMade) {
    let _ = CALLS.try_with(|cell| {
        let mut v = cell.borrow_mut();
        if v.0.len() < MAX_CALLS {
            v.0.push(c);
        } else {
            v.1 += 1;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(path: &str) -> CallMade {
        CallMade {
            connection: "sn".into(),
            method: "GET".into(),
            path: path.into(),
            status: Some(200),
            duration_ms: 1,
            error: None,
        }
    }

    #[tokio::test]
    async fn calls_are_kept_per_capture_and_nowhere_outside() {
        note(call("/outside"));
        let ((), inner) = capture(async {
            note(call("/a"));
            tokio::task::yield_now().await;
            note(call("/b"));
        })
        .await;
        assert_eq!(
            inner.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(),
            ["/a", "/b"]
        );
        let ((), many) = capture(async {
            for i in 0..MAX_CALLS + 3 {
                note(call(&format!("/{i}")));
            }
        })
        .await;
        assert_eq!(many.len(), MAX_CALLS + 1);
        assert!(many.last().unwrap().path.contains("3 more"));
    }
}
