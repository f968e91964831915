//! Upstream's interop flags (`--server_port`, `--use_tls=true`, …), spelled as every other
//! implementation's interop client and server take them, so the same harness drives ours.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use greeter::interop::{InteropClient, InteropError, InteropServerConfig, SoakConfig};
use greeter::{ClientTls, ServerTls};

/// `examples/interop_server.rs`'s flags.
#[derive(Args, Debug, Clone)]
pub struct InteropServerArgs {
    /// Port to listen on, on every interface (0: any free port; the one taken is printed).
    #[arg(long = "port", default_value_t = 10000)]
    pub port: u16,
    /// Serve TLS (needs --tls_cert_file and --tls_key_file). Takes `--use_tls` or `--use_tls=true|false`.
    #[arg(long = "use_tls", num_args = 0..=1, default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    pub use_tls: bool,
    /// The server's certificate chain (PEM), e.g. grpc-go's testdata/server1.pem.
    #[arg(long = "tls_cert_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The server's private key (PEM), e.g. grpc-go's testdata/server1.key.
    #[arg(long = "tls_key_file")]
    pub tls_key_file: Option<PathBuf>,
}

impl InteropServerArgs {
    pub fn config(&self) -> Result<InteropServerConfig, InteropError> {
        let mut config = InteropServerConfig::on_port(self.port);
        match (self.use_tls, &self.tls_cert_file, &self.tls_key_file) {
            (true, Some(cert), Some(key)) => config.tls = Some(ServerTls::from_files(cert, key, None)?),
            (true, _, _) => {
                return Err(flags(
                    "--use_tls needs --tls_cert_file and --tls_key_file (this server bundles no test certificate; \
                     grpc-go's are testdata/server1.pem and server1.key)",
                ))
            }
            (false, None, None) => {}
            (false, _, _) => return Err(flags("--tls_cert_file and --tls_key_file are only used with --use_tls")),
        }
        Ok(config)
    }
}

/// `examples/interop_client.rs`'s flags.
#[derive(Args, Debug, Clone)]
pub struct InteropClientArgs {
    /// Server host name or address.
    #[arg(long = "server_host", default_value = "localhost")]
    pub server_host: String,
    #[arg(long = "server_port", default_value_t = 10000)]
    pub server_port: u16,
    /// The case to run (empty_unary, large_unary, …, custom_metadata, rpc_soak, …), or `all`.
    #[arg(long = "test_case", default_value = "large_unary")]
    pub test_case: String,
    /// Connect with TLS. Takes `--use_tls` or `--use_tls=true|false`.
    #[arg(long = "use_tls", num_args = 0..=1, default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    pub use_tls: bool,
    /// Trust the test CA given by --ca_file instead of the platform's roots.
    #[arg(long = "use_test_ca", num_args = 0..=1, default_value = "false", default_missing_value = "true", action = ArgAction::Set)]
    pub use_test_ca: bool,
    /// The test CA (PEM), e.g. grpc-go's testdata/ca.pem; read with --use_test_ca.
    #[arg(long = "ca_file")]
    pub ca_file: Option<PathBuf>,
    /// The name to expect in the server's certificate (and send as :authority), e.g.
    /// foo.test.google.fr for the grpc test certificates.
    #[arg(long = "server_host_override")]
    pub server_host_override: Option<String>,
    #[arg(long = "soak_iterations", default_value_t = SoakConfig::default().iterations)]
    pub soak_iterations: u32,
    #[arg(long = "soak_max_failures", default_value_t = SoakConfig::default().max_failures)]
    pub soak_max_failures: u32,
    #[arg(long = "soak_per_iteration_max_acceptable_latency_ms", default_value_t = 1000)]
    pub soak_per_iteration_max_acceptable_latency_ms: u64,
    #[arg(long = "soak_overall_timeout_seconds", default_value_t = 10)]
    pub soak_overall_timeout_seconds: u64,
    #[arg(long = "soak_min_time_ms_between_rpcs", default_value_t = 0)]
    pub soak_min_time_ms_between_rpcs: u64,
    #[arg(long = "soak_request_size", default_value_t = SoakConfig::default().request_size)]
    pub soak_request_size: usize,
    #[arg(long = "soak_response_size", default_value_t = SoakConfig::default().response_size)]
    pub soak_response_size: usize,
}

impl InteropClientArgs {
    /// The client these flags describe; fails on flags that do not fit together.
    pub fn connect(&self) -> Result<InteropClient, InteropError> {
        let tls = match (self.use_tls, self.use_test_ca, &self.ca_file) {
            (false, false, None) if self.server_host_override.is_none() => None,
            (false, ..) => {
                return Err(flags("--use_test_ca, --ca_file and --server_host_override are only used with --use_tls"))
            }
            (true, true, Some(ca)) => Some(ClientTls::from_files(ca, None, None, self.server_host_override.clone())?),
            (true, true, None) => {
                return Err(flags(
                    "--use_test_ca needs --ca_file (this client bundles no test CA; grpc-go's is testdata/ca.pem)",
                ))
            }
            (true, false, Some(_)) => return Err(flags("--ca_file is only read with --use_test_ca")),
            (true, false, None) => {
                Some(ClientTls { server_ca: None, identity: None, server_name: self.server_host_override.clone() })
            }
        };
        InteropClient::connect(&self.server_host, self.server_port, tls, self.soak())
    }

    pub fn soak(&self) -> SoakConfig {
        SoakConfig {
            iterations: self.soak_iterations,
            max_failures: self.soak_max_failures,
            max_latency: Duration::from_millis(self.soak_per_iteration_max_acceptable_latency_ms),
            overall_timeout: Duration::from_secs(self.soak_overall_timeout_seconds),
            min_time_between_rpcs: Duration::from_millis(self.soak_min_time_ms_between_rpcs),
            request_size: self.soak_request_size,
            response_size: self.soak_response_size,
        }
    }
}

fn flags(message: &str) -> InteropError {
    InteropError::Flags(message.to_owned())
}
