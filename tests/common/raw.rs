//! A raw unary call, its request and reply as bytes: for a service the crate has no client
//! for (an OTLP collector's `Export`, to tell a collector from anything else on its port).

use std::io::Read as _;
use std::time::Duration;

use grpcio::{CallOption, Channel, Marshaller, Method, MethodType};

fn ser(bytes: &Vec<u8>, buf: &mut grpcio::GrpcSlice) -> grpcio::Result<()> {
    *buf = grpcio::GrpcSlice::from(bytes.as_slice());
    Ok(())
}

fn de(mut reader: grpcio::MessageReader) -> grpcio::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| grpcio::Error::Codec(Box::new(e)))?;
    Ok(bytes)
}

const BYTES: Marshaller<Vec<u8>> = Marshaller { ser, de };

/// Calls the unary method `path` with `request`; its reply.
pub fn unary(channel: &Channel, path: &'static str, request: Vec<u8>, timeout: Duration) -> grpcio::Result<Vec<u8>> {
    let method = Method { ty: MethodType::Unary, name: path, req_mar: BYTES, resp_mar: BYTES };
    grpcio::Client::new(channel.clone()).unary_call(&method, &request, CallOption::default().timeout(timeout))
}
