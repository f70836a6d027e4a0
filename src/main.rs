//! The `edge-agent` binary; see the library for how it works.

fn main() -> std::process::ExitCode {
    edge_agent::cli::main()
}
