//! Level 4, bidirectional streaming: `cargo run --example chat -- --messages Hello,Bye`.

mod cli;

use clap::Parser;
use cli::ClientArgs;

/// Chat with the server: send messages while its replies stream back.
#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    client: ClientArgs,
    /// Your name in the chat.
    #[arg(long, default_value = "Rust")]
    user: String,
    /// Messages to send, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "Hello,Bye")]
    messages: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    let _traces = cli::client_tracing();
    cli::report(run(&opts))
}

fn run(opts: &Opts) -> Result<(), cli::CliError> {
    opts.client
        .blocking_client()?
        .chat(&opts.user, &opts.messages, |reply| println!("(Receive) {}: {}", reply.user, reply.message))?;
    Ok(())
}
