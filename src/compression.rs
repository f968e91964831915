//! Message compression, as C-core does it: gzip or deflate (zlib), chosen per channel.
//!
//! A server set to compress (`ServerConfig::compression`) compresses a reply only for a
//! client that accepts the algorithm (its `grpc-accept-encoding`; else the other one it
//! accepts, else none), only messages of at least `compression_min_len` bytes, and only
//! when compressing makes the message smaller: each message says in its own flag whether it
//! was. A client set to compress (`GreeterBuilder::compression`) compresses every request
//! without asking: gRPC has no way to learn first what the server accepts, so a server that
//! cannot inflate it answers UNIMPLEMENTED (grpc-go decompresses gzip only when the program
//! imports `google.golang.org/grpc/encoding/gzip`).

use std::str::FromStr;

use grpcio::{ChannelBuilder, CompressionAlgorithms, CompressionLevel, MetadataBuilder};

/// An algorithm for message compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Messages go as they are (gRPC's default).
    #[default]
    None,
    Gzip,
    /// zlib's format, which gRPC calls deflate.
    Deflate,
}

/// C-core's own metadata key that chooses one call's algorithm; C-core removes it before
/// the headers go out. A server-wide compression overrides it.
pub(crate) const CALL_COMPRESSION_KEY: &str = "grpc-internal-encoding-request";

/// C-core's name for the least message size it compresses (the misspelling is C-core's).
const MIN_LEN_ARG: &std::ffi::CStr = c"grpc.gprc_min_message_size_to_compress";

/// zlib's level for gzip and deflate. Set always: grpcio-sys's C-core clamps zlib's "default
/// level" (-1) into 0..=9, which makes it 0, no compression at all, so that every message
/// would grow, and go uncompressed.
const LEVEL_ARG: &std::ffi::CStr = c"grpc.gzip_compression_level";
const ZLIB_LEVEL: i32 = 6;

impl Compression {
    /// Its name on the wire (`grpc-encoding`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "identity",
            Compression::Gzip => "gzip",
            Compression::Deflate => "deflate",
        }
    }

    /// A server's channel settings: replies compressed for the clients that accept it. C-core
    /// does that for a compression *level*, not for an algorithm (which it applies blind to
    /// what the client accepts), so the algorithm maps to the level that picks it first: low
    /// takes gzip before deflate, high deflate before gzip.
    pub(crate) fn server_args(self, builder: ChannelBuilder, min_len: usize) -> ChannelBuilder {
        // The zlib level also serves calls that choose their own compression (`for_call`).
        let builder = builder.raw_cfg_int(LEVEL_ARG.into(), ZLIB_LEVEL);
        let level = match self {
            Compression::None => return builder,
            Compression::Gzip => CompressionLevel::GRPC_COMPRESS_LEVEL_LOW,
            Compression::Deflate => CompressionLevel::GRPC_COMPRESS_LEVEL_HIGH,
        };
        builder.default_compression_level(level).raw_cfg_int(MIN_LEN_ARG.into(), clamp(min_len))
    }

    /// A client's channel settings: every request compressed with this algorithm.
    pub(crate) fn client_args(self, builder: ChannelBuilder, min_len: usize) -> ChannelBuilder {
        let builder = builder.raw_cfg_int(LEVEL_ARG.into(), ZLIB_LEVEL);
        let algorithm = match self {
            Compression::None => return builder,
            Compression::Gzip => CompressionAlgorithms::GRPC_COMPRESS_GZIP,
            Compression::Deflate => CompressionAlgorithms::GRPC_COMPRESS_DEFLATE,
        };
        builder.default_compression_algorithm(algorithm).raw_cfg_int(MIN_LEN_ARG.into(), clamp(min_len))
    }

    /// Chooses this algorithm for one call, through its initial metadata (a channel without
    /// a server-wide compression only).
    pub(crate) fn for_call(self, metadata: &mut MetadataBuilder) {
        metadata.add_str(CALL_COMPRESSION_KEY, self.name()).expect("a valid key and value");
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "identity" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "deflate" => Ok(Compression::Deflate),
            other => Err(format!("unknown compression {other:?}: use gzip, deflate or none")),
        }
    }
}

/// Messages shorter than this are not worth compressing (a reply of a few bytes would grow).
pub(crate) const DEFAULT_MIN_LEN: usize = 1024;

fn clamp(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}
