//! CORS for pages served from other origins: none allowed unless configured. The page the
//! gateway serves itself is same-origin and needs no CORS.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an origin (scheme://host[:port], or * for any)")]
pub struct InvalidOrigin(String);

/// The CORS policy: `origins` may call (`*`: any); replies expose the gRPC status headers,
/// which a browser hides from a cross-origin page otherwise.
pub(crate) fn layer(origins: &[String]) -> Result<CorsLayer, InvalidOrigin> {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| {
                let valid = o.starts_with("http://") || o.starts_with("https://");
                let trimmed = o.trim_end_matches('/');
                HeaderValue::from_str(trimmed).ok().filter(|_| valid).ok_or_else(|| InvalidOrigin(o.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST])
        // Calls carry metadata of the caller's choosing as headers; the origin list is
        // what restricts who may call.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(600)))
}
