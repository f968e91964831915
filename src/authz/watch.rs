//! A file loaded at start and reloaded while the server runs, like grpc-go's
//! `authz.NewFileWatcher`: every `refresh` a thread reads the file again and, when its bytes
//! changed since the last good load, parses it. A good file replaces the one in force for
//! the calls that start after; a broken or unreadable one leaves the one in force, is logged
//! with the reason (the file, the line, the rule) and counted, on every refresh until it is
//! fixed. At start a broken file is an error: the server does not start on it.
//!
//! Calls read the file in force with [`Watched::current`]: a read lock held only to clone an
//! `Arc`. Nothing on a call's path waits for the disk.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a watched file holds.
pub(crate) trait Load: Sized + Send + Sync + 'static {
    /// For messages: "authorization policy", "JWKS".
    const WHAT: &'static str;
    type Error: Display;
    fn load(text: &str) -> Result<Self, Self::Error>;
    /// What the load accepted but an operator should hear about.
    fn warnings(&self) -> &[String] {
        &[]
    }
}

/// Starting to watch failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WatchError {
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the {what} {} is invalid: {message}", path.display())]
    Invalid { what: &'static str, path: PathBuf, message: String },
    #[error("the {what}'s refresh interval must be more than zero")]
    ZeroRefresh { what: &'static str },
    #[error("cannot start the thread that reloads the {what}: {source}")]
    Thread { what: &'static str, source: std::io::Error },
}

/// A file in force, reloaded every `refresh` by a thread that ends when this is dropped.
pub(crate) struct Watched<T: Load> {
    shared: Arc<Shared<T>>,
    #[allow(dead_code)] // read through `path()`, which the tests use
    path: PathBuf,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared<T> {
    current: RwLock<Arc<T>>,
    /// Good loads since the first.
    reloads: AtomicU64,
    /// Refreshes that found the file unreadable or invalid.
    failures: AtomicU64,
}

impl<T: Load> Watched<T> {
    /// Loads `path` (an error if it cannot be read or is invalid) and starts reloading it
    /// every `refresh`.
    pub(crate) fn start(path: &Path, refresh: Duration) -> Result<Self, WatchError> {
        let what = T::WHAT;
        if refresh.is_zero() {
            return Err(WatchError::ZeroRefresh { what });
        }
        let bytes = std::fs::read(path).map_err(|source| WatchError::Read { what, path: path.to_owned(), source })?;
        let first = T::load(&String::from_utf8_lossy(&bytes)).map_err(|e| WatchError::Invalid {
            what,
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        log_warnings(path, &first);
        let shared = Arc::new(Shared {
            current: RwLock::new(Arc::new(first)),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let mut reloader = Reloader { shared: shared.clone(), path: path.to_owned(), last: bytes };
        let thread = std::thread::Builder::new()
            .name("greeter-authz-watch".into())
            .spawn(move || {
                // A message or the sender's drop both end the thread.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(refresh) {
                    reloader.check();
                }
            })
            .map_err(|source| WatchError::Thread { what, source })?;
        Ok(Watched { shared, path: path.to_owned(), stop: Some(stop), thread: Some(thread) })
    }

    /// The file in force now.
    pub(crate) fn current(&self) -> Arc<T> {
        self.shared.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Good reloads since start.
    pub(crate) fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Refreshes that found the file unreadable or invalid (and kept the one in force).
    #[allow(dead_code)] // used by tests/authz.rs and examples/authz_bench.rs, which include this module
    pub(crate) fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// [`Self::failures`] for a metrics gauge, valid as long as anyone holds it.
    pub(crate) fn failures_counter(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.failures.load(Ordering::Relaxed)
    }
}

impl<T: Load> Drop for Watched<T> {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The reload thread's state.
struct Reloader<T> {
    shared: Arc<Shared<T>>,
    path: PathBuf,
    /// The bytes of the file in force.
    last: Vec<u8>,
}

impl<T: Load> Reloader<T> {
    fn check(&mut self) {
        let (what, path) = (T::WHAT, self.path.display());
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                log::warn!("cannot read the {what} {path} ({e}); the one loaded before stays in force");
                return;
            }
        };
        if bytes == self.last {
            return;
        }
        match T::load(&String::from_utf8_lossy(&bytes)) {
            Ok(loaded) => {
                log_warnings(&self.path, &loaded);
                *self.shared.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(loaded);
                self.last = bytes;
                self.shared.reloads.fetch_add(1, Ordering::Relaxed);
                log::info!("the {what} {path} changed: reloaded; it applies to calls from now on");
            }
            Err(e) => {
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                log::warn!("the {what} {path} changed but is invalid: {e}; the one loaded before stays in force");
            }
        }
    }
}

fn log_warnings<T: Load>(path: &Path, loaded: &T) {
    for warning in loaded.warnings() {
        log::warn!("{} {}: {warning}", T::WHAT, path.display());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A file of one number.
    #[derive(Debug)]
    struct Number(u32);
    impl Load for Number {
        const WHAT: &'static str = "number";
        type Error = std::num::ParseIntError;
        fn load(text: &str) -> Result<Self, Self::Error> {
            text.trim().parse().map(Number)
        }
    }

    const REFRESH: Duration = Duration::from_millis(20);

    /// Waits until `done` holds; fails after 10 s (a loaded machine may delay the thread).
    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what} did not happen within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_changed_file_applies_and_a_broken_one_keeps_the_one_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let watched = Watched::<Number>::start(&path, REFRESH).unwrap();
        assert_eq!(watched.current().0, 1);

        std::fs::write(&path, "2").unwrap();
        until("the reload", || watched.reloads() == 1);
        assert_eq!(watched.current().0, 2);

        std::fs::write(&path, "two").unwrap();
        until("two failed refreshes", || watched.failures() >= 2);
        assert_eq!(watched.current().0, 2);
        assert_eq!(watched.reloads(), 1);

        std::fs::remove_file(&path).unwrap();
        let before = watched.failures();
        until("a refresh of the missing file", || watched.failures() > before);
        assert_eq!(watched.current().0, 2);

        std::fs::write(&path, "3").unwrap();
        until("the second reload", || watched.reloads() == 2);
        assert_eq!(watched.current().0, 3);
    }

    #[test]
    fn a_broken_file_at_start_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "x").unwrap();
        let err = Watched::<Number>::start(&path, REFRESH).err().unwrap().to_string();
        assert_eq!(err, format!("the number {} is invalid: invalid digit found in string", path.display()));
        let err = Watched::<Number>::start(&dir.path().join("none"), REFRESH).err().unwrap().to_string();
        assert!(err.starts_with("cannot read the number"), "{err}");
        std::fs::write(&path, "1").unwrap();
        assert!(matches!(Watched::<Number>::start(&path, Duration::ZERO), Err(WatchError::ZeroRefresh { .. })));
    }

    #[test]
    fn dropping_the_watcher_ends_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        // A long refresh: the drop must not wait for it.
        let watched = Watched::<Number>::start(&path, Duration::from_secs(3600)).unwrap();
        let weak = Arc::downgrade(&watched.shared);
        let (dropped, done) = mpsc::channel();
        std::thread::spawn(move || {
            drop(watched);
            let _ = dropped.send(());
        });
        done.recv_timeout(Duration::from_secs(10)).expect("dropping the watcher waits for its hour-long refresh");
        assert!(weak.upgrade().is_none(), "the thread still holds the shared state: it did not end");
    }
}
