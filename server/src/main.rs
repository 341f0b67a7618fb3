//! The `ivan` binary; see the `ivan_server` crate docs.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    ivan_server::cli::main()
}
