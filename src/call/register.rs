//! [`Registrar`]: every method of every service is registered here, so that each call meets
//! the gate's verdict, the server's observers and its driver in this one place.

use std::sync::{Arc, Mutex, PoisonError};

use super::gate::{Gate, Gatekeeper, ObserversByPath};
use super::method::MethodObservers;
use super::observe::{MethodName, Observer};
use super::service::Service;

/// Builds grpcio services from [`Service`]s, each call of each method observed by the
/// server's observers (none: the observed call holds nothing and counts nothing).
pub(crate) struct Registrar {
    observers: Vec<Arc<dyn Observer>>,
    /// What each method's observers are, for the gate's refusals.
    registered: Mutex<ObserversByPath>,
}

impl Registrar {
    pub(crate) fn new(observers: Vec<Arc<dyn Observer>>) -> Self {
        Registrar { observers, registered: Mutex::default() }
    }

    /// `service`'s methods, registered.
    pub(crate) fn register(&self, service: &Service) -> grpcio::Service {
        service
            .builder(|builder, def, path| {
                let name = MethodName::new(path, def.kind);
                let observers: MethodObservers = self.observers.iter().map(|o| o.method(name)).collect();
                self.registered.lock().unwrap_or_else(PoisonError::into_inner).insert(path, observers.clone());
                (def.register)(builder, path, observers)
            })
            .build()
    }

    /// The hook that asks `gate` about every call of every method registered so far.
    pub(crate) fn gatekeeper(&self, gate: Arc<dyn Gate>) -> Gatekeeper {
        let registered = self.registered.lock().unwrap_or_else(PoisonError::into_inner);
        Gatekeeper::new(gate, registered.clone())
    }
}
