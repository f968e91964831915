//! Every gRPC status code's name, in the two spellings the server's telemetry uses: gRPC's
//! own (`CANCELLED`, statuscodes.md), in the access log and in a span's error status; and
//! grpc-go's (`Canceled`, its `codes.Code.String()`), in the `grpc_code` label of the metrics,
//! so dashboards written for go-grpc-prometheus match.

use grpcio::RpcStatusCode;

/// How many codes gRPC defines: 0 (`OK`) to 16 (`UNAUTHENTICATED`).
pub(crate) const COUNT: usize = 17;

/// (gRPC's name, grpc-go's name), indexed by the code's number.
const NAMES: [(&str, &str); COUNT] = [
    ("OK", "OK"),
    ("CANCELLED", "Canceled"),
    ("UNKNOWN", "Unknown"),
    ("INVALID_ARGUMENT", "InvalidArgument"),
    ("DEADLINE_EXCEEDED", "DeadlineExceeded"),
    ("NOT_FOUND", "NotFound"),
    ("ALREADY_EXISTS", "AlreadyExists"),
    ("PERMISSION_DENIED", "PermissionDenied"),
    ("RESOURCE_EXHAUSTED", "ResourceExhausted"),
    ("FAILED_PRECONDITION", "FailedPrecondition"),
    ("ABORTED", "Aborted"),
    ("OUT_OF_RANGE", "OutOfRange"),
    ("UNIMPLEMENTED", "Unimplemented"),
    ("INTERNAL", "Internal"),
    ("UNAVAILABLE", "Unavailable"),
    ("DATA_LOSS", "DataLoss"),
    ("UNAUTHENTICATED", "Unauthenticated"),
];

/// `code`'s place in the table; a code outside the 17 defined ones counts as `UNKNOWN` (2),
/// as gRPC's own libraries treat it.
pub(crate) fn index(code: RpcStatusCode) -> usize {
    usize::try_from(i32::from(code)).ok().filter(|&i| i < COUNT).unwrap_or(2)
}

/// gRPC's name for `code`: `CANCELLED`.
pub(crate) fn canonical(code: RpcStatusCode) -> &'static str {
    NAMES[index(code)].0
}

/// grpc-go's names of every code, by number: `Canceled` at 1.
pub(crate) fn grpc_go_names() -> [&'static str; COUNT] {
    NAMES.map(|(_, go)| go)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_a_code() {
        assert_eq!(canonical(RpcStatusCode::CANCELLED), "CANCELLED");
        assert_eq!(grpc_go_names()[index(RpcStatusCode::CANCELLED)], "Canceled");
        assert_eq!(canonical(RpcStatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
        assert_eq!(grpc_go_names()[index(RpcStatusCode::DEADLINE_EXCEEDED)], "DeadlineExceeded");
    }

    #[test]
    fn a_code_out_of_range_is_unknown() {
        assert_eq!(canonical(RpcStatusCode::from(17)), "UNKNOWN");
        assert_eq!(canonical(RpcStatusCode::from(-1)), "UNKNOWN");
        assert_eq!(index(RpcStatusCode::from(99)), 2);
    }
}
