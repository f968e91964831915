//! [`Service`]: a gRPC service as a set of handlers, each an async function, checked against
//! the `.proto` file that defines the service.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use grpcio::{MethodType, RpcStatus, ServiceBuilder};
use protobuf::reflect::FileDescriptor;
use protobuf::MessageFull;

use super::method::{self, MethodRegistration};
use super::{Call, Replies, Requests};

/// A service of your own, served beside Greeter by the same server, with the same limits,
/// health status, reflection, metrics, traces, access log, authorization and graceful shutdown.
///
/// Each method is an async function: it takes its request (or [`Requests`], the stream of
/// them) and returns its reply (or sends [`Replies`]), ending with `Ok` or the status the call
/// ends with. The closure registered for a method runs when a call arrives: it may read the
/// [`Call`] (who calls, the request's metadata) before it returns the handler's future.
///
/// ```
/// use greeter::{proto, Service};
///
/// // greeter.Greeter, registered the way the server registers it.
/// let greeter = Service::new(proto::file_descriptor(), "greeter.Greeter")
///     .unary("SayHello", |_, request| greeter::patterns::say_hello::say_hello(request));
/// assert_eq!(greeter.name(), "greeter.Greeter");
/// ```
///
/// Every method is checked when the server starts: the `.proto` file must define it, with the
/// request and reply types the handler takes and the same streaming kind; a mismatch stops the
/// server with [`ServerError::Service`](crate::ServerError::Service) naming it.
#[derive(Clone)]
pub struct Service {
    name: String,
    file: FileDescriptor,
    methods: Vec<MethodDef>,
}

#[derive(Clone)]
pub(crate) struct MethodDef {
    pub(crate) name: String,
    pub(crate) kind: MethodType,
    /// The request's and the reply's message names, as the handler's types give them.
    types: (String, String),
    pub(crate) register: Arc<MethodRegistration>,
}

impl Service {
    /// The service `name` (`package.Service`), as `file` defines it.
    pub fn new(file: &FileDescriptor, name: &str) -> Service {
        Service { name: name.to_owned(), file: file.clone(), methods: Vec::new() }
    }

    /// One request, one reply.
    pub fn unary<Req, Resp, H, F>(self, method: &str, handler: H) -> Self
    where
        Req: MessageFull,
        Resp: MessageFull,
        H: Fn(&mut Call<'_>, Req) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Resp, RpcStatus>> + Send + 'static,
    {
        self.method::<Req, Resp>(method, MethodType::Unary, method::unary(handler))
    }

    /// One request, a stream of replies.
    pub fn server_streaming<Req, Resp, H, F>(self, method: &str, handler: H) -> Self
    where
        Req: MessageFull,
        Resp: MessageFull,
        H: Fn(&mut Call<'_>, Req, Replies<Resp>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), RpcStatus>> + Send + 'static,
    {
        self.method::<Req, Resp>(method, MethodType::ServerStreaming, method::server_streaming(handler))
    }

    /// A stream of requests, one reply.
    pub fn client_streaming<Req, Resp, H, F>(self, method: &str, handler: H) -> Self
    where
        Req: MessageFull,
        Resp: MessageFull,
        H: Fn(&mut Call<'_>, Requests<Req>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Resp, RpcStatus>> + Send + 'static,
    {
        self.method::<Req, Resp>(method, MethodType::ClientStreaming, method::client_streaming(handler))
    }

    /// A stream each way, at the same time.
    pub fn bidi<Req, Resp, H, F>(self, method: &str, handler: H) -> Self
    where
        Req: MessageFull,
        Resp: MessageFull,
        H: Fn(&mut Call<'_>, Requests<Req>, Replies<Resp>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), RpcStatus>> + Send + 'static,
    {
        self.method::<Req, Resp>(method, MethodType::Duplex, method::bidi(handler))
    }

    fn method<Req: MessageFull, Resp: MessageFull>(
        mut self,
        method: &str,
        kind: MethodType,
        register: Arc<MethodRegistration>,
    ) -> Self {
        let types = (Req::descriptor().full_name().to_owned(), Resp::descriptor().full_name().to_owned());
        self.methods.push(MethodDef { name: method.to_owned(), kind, types, register });
        self
    }

    /// `package.Service`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `.proto` file that defines the service, for reflection.
    pub(crate) fn file(&self) -> &FileDescriptor {
        &self.file
    }

    /// Every method as the `.proto` file defines it, or why one is not.
    pub(crate) fn check(&self) -> Result<(), String> {
        let Some(service) =
            self.file.services().find(|s| qualified(self.file.package(), s.proto().name()) == self.name)
        else {
            return Err(format!("{} does not define service {}", self.file.name(), self.name));
        };
        let mut seen = HashSet::new();
        for def in &self.methods {
            if !seen.insert(&def.name) {
                return Err(format!("method {} is registered twice", def.name));
            }
            let Some(declared) = service.methods().find(|m| m.proto().name() == def.name) else {
                return Err(format!("{} has no method {}", self.name, def.name));
            };
            let proto = declared.proto();
            let kind = match (proto.client_streaming(), proto.server_streaming()) {
                (false, false) => MethodType::Unary,
                (false, true) => MethodType::ServerStreaming,
                (true, false) => MethodType::ClientStreaming,
                (true, true) => MethodType::Duplex,
            };
            let declared_types =
                (declared.input_type().full_name().to_owned(), declared.output_type().full_name().to_owned());
            if kind_name(kind) != kind_name(def.kind) {
                return Err(format!(
                    "{} is {} in the .proto, registered as {}",
                    def.name,
                    kind_name(kind),
                    kind_name(def.kind)
                ));
            }
            if declared_types != def.types {
                return Err(format!(
                    "{} takes {} and returns {} in the .proto; the handler takes {} and returns {}",
                    def.name, declared_types.0, declared_types.1, def.types.0, def.types.1
                ));
            }
        }
        Ok(())
    }

    /// The grpcio builder of this service, each method registered with `register`.
    pub(crate) fn builder(
        &self,
        mut register: impl FnMut(ServiceBuilder, &MethodDef, &'static str) -> ServiceBuilder,
    ) -> ServiceBuilder {
        let mut builder = ServiceBuilder::new();
        for def in &self.methods {
            let path = intern(format!("/{}/{}", self.name, def.name));
            builder = register(builder, def, path);
        }
        builder
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let methods: Vec<&str> = self.methods.iter().map(|m| m.name.as_str()).collect();
        f.debug_struct("Service").field("name", &self.name).field("methods", &methods).finish()
    }
}

fn qualified(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}.{name}")
    }
}

fn kind_name(kind: MethodType) -> &'static str {
    match kind {
        MethodType::Unary => "unary",
        MethodType::ServerStreaming => "server streaming",
        MethodType::ClientStreaming => "client streaming",
        MethodType::Duplex => "bidi streaming",
    }
}

/// grpcio names a method by a `&'static str`: each distinct path is kept once for the life of
/// the process, so starting servers again and again keeps no more.
fn intern(path: String) -> &'static str {
    static PATHS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut paths = PATHS.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = paths.get(path.as_str()) {
        return known;
    }
    let leaked: &'static str = Box::leak(path.into_boxed_str());
    paths.insert(leaked);
    leaked
}
