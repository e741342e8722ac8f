//! The `regent` binary: a thin shell over `regent::cli`.

fn main() -> std::process::ExitCode {
    regent::cli::main()
}
