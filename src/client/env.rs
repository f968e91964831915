//! The completion queue the clients of a program share: made with the first client, ended
//! with the last (its thread exits once nothing uses it), so a program that makes many
//! short-lived clients makes one thread, not one each.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use grpcio::{EnvBuilder, Environment};

/// The shared environment, made anew when the last one has ended.
pub(crate) fn shared() -> Arc<Environment> {
    static SHARED: Mutex<Weak<Environment>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(env) = slot.upgrade() {
        return env;
    }
    let env = Arc::new(EnvBuilder::new().cq_count(1).name_prefix("greeter-client").build());
    *slot = Arc::downgrade(&env);
    env
}
