//! The code `build.rs` generates from `proto/` at compile time (none of it is in git).
//!
//! - The Greeter messages (`HelloRequest`, `StockReply`, …, rust-protobuf 3) and the grpcio
//!   glue (the method descriptors `METHOD_GREETER_*` our server registers; `GreeterClient`)
//!   are re-exported at this module's root.
//! - [`health`]: the standard `grpc.health.v1` protocol.
//! - [`reflection`]: the two versions of the server reflection protocol.
//! - [`testing`]: `grpc.testing`, gRPC's official interop test protocol.
//! - `otlp` (internal): OpenTelemetry's trace export, `TraceService/Export`'s answer.
#![allow(missing_docs, clippy::all, renamed_and_removed_lints)]

mod generated {
    include!(concat!(env!("OUT_DIR"), "/proto/mod.rs"));
}

pub use generated::greeter::*;
pub use generated::greeter_grpc::*;

/// The Greeter service's full name, as the proto defines it; health reports on it by this name.
pub const GREETER_SERVICE: &str = "greeter.Greeter";

/// `grpc.health.v1`: messages and the `Health` service glue.
pub mod health {
    pub use super::generated::health::*;
    pub use super::generated::health_grpc::*;
}

/// `grpc.reflection.v1` and `grpc.reflection.v1alpha`: the same messages, two packages.
pub mod reflection {
    pub mod v1 {
        pub use super::super::generated::reflection_v1::*;
        pub use super::super::generated::reflection_v1_grpc::*;
    }
    pub mod v1alpha {
        pub use super::super::generated::reflection_v1alpha::*;
        pub use super::super::generated::reflection_v1alpha_grpc::*;
    }
}

/// `grpc.testing`: the messages, `TestService` and `UnimplementedService` of gRPC's official
/// interop tests.
pub mod testing {
    pub use super::generated::empty::Empty;
    pub use super::generated::messages::*;
    /// `grpc/testing/test.proto`, which defines the services.
    pub use super::generated::test::file_descriptor;
    pub use super::generated::test_grpc::*;
}

/// OpenTelemetry's OTLP trace export: the answer to `TraceService/Export` (its requests are
/// encoded field by field, `telemetry/otlp_wire.rs`), and the messages, for the tests that
/// read requests back.
pub(crate) mod otlp {
    pub(crate) use super::generated::trace_service::ExportTraceServiceResponse;
    #[cfg(test)]
    pub(crate) use super::generated::trace_service::*;
    #[cfg(test)]
    pub(crate) mod common {
        pub(crate) use super::super::generated::common::*;
    }
    #[cfg(test)]
    pub(crate) mod resource {
        pub(crate) use super::super::generated::resource::*;
    }
    #[cfg(test)]
    pub(crate) mod trace {
        pub(crate) use super::super::generated::trace::*;
    }
}
