//! gRPC's interop client, with upstream's flags:
//! `cargo run --example interop_client -- --server_port 10000 --test_case large_unary` (or `all`).
//!
//! Prints `PASS <case>` for each case that passes; for each one that fails, one line on
//! stderr naming the check, and the exit status is non-zero.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::interop::InteropClientArgs;
use greeter::interop;

/// Run gRPC's official interop cases against a grpc.testing.TestService server.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    client: InteropClientArgs,
}

fn main() -> ExitCode {
    cli::init_logging();
    let opts = Opts::parse();
    let (cases, client) = match interop::cases(&opts.client.test_case).and_then(|c| Ok((c, opts.client.connect()?))) {
        Ok(ready) => ready,
        Err(e) => return cli::report(Err(e)),
    };
    let mut failed = false;
    for case in cases {
        match futures::executor::block_on(client.run(case)) {
            Ok(()) => println!("PASS {case}"),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
