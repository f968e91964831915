//! gRPC statuses the gateway itself gives: as trailers at the end of a reply, or as a
//! trailers-only reply (the status in the headers), which tonic-web turns into gRPC-Web.

use http::{HeaderMap, HeaderValue, StatusCode};
use tonic::body::Body;
use tonic::{Code, Status};

/// Every status code as grpc-go spells it (the server's `/metrics` use the same names),
/// indexed by the code's number.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

pub(crate) fn code_name(code: Code) -> &'static str {
    CODE_NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

/// The `grpc-status` in `headers`, if any (a trailers-only reply, or the trailers).
pub(crate) fn code_in(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    Some(value.to_str().ok().and_then(|v| v.parse::<i32>().ok()).map_or(Code::Unknown, Code::from_i32))
}

/// A reply that is only a status: what the gateway answers when it does not forward a call.
pub(crate) fn reply(status: Status) -> http::Response<Body> {
    status.into_http()
}

/// The trailers that end a reply the gateway has to cut short.
pub(crate) fn trailers(code: Code, message: &str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code as i32));
    // grpc-message is percent-encoded UTF-8 (the gRPC spec).
    let encoded: String = message
        .bytes()
        .map(|b| if (b' '..=b'~').contains(&b) && b != b'%' { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect();
    trailers.insert("grpc-message", HeaderValue::from_str(&encoded).unwrap_or(HeaderValue::from_static("")));
    trailers
}

/// The gRPC code for a reply that came back with HTTP status `http` instead of a gRPC one
/// (gRPC's "HTTP to gRPC status code mapping").
pub(crate) fn from_http(http: StatusCode) -> Status {
    let code = match http.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("the gRPC server answered with HTTP status {http} instead of a gRPC reply"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_codes() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::ResourceExhausted), "ResourceExhausted");
        assert_eq!(code_name(Code::Unauthenticated), "Unauthenticated");
    }

    #[test]
    fn messages_are_percent_encoded() {
        let t = trailers(Code::Unavailable, "50% down: é");
        assert_eq!(t["grpc-status"], "14");
        assert_eq!(t["grpc-message"], "50%25 down: %C3%A9");
    }

    #[test]
    fn a_status_header_is_read_and_garbage_is_unknown() {
        let mut h = HeaderMap::new();
        assert_eq!(code_in(&h), None);
        h.insert("grpc-status", HeaderValue::from_static("8"));
        assert_eq!(code_in(&h), Some(Code::ResourceExhausted));
        h.insert("grpc-status", HeaderValue::from_static("eight"));
        assert_eq!(code_in(&h), Some(Code::Unknown));
    }
}
