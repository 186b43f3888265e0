fn main() -> std::process::ExitCode {
    slx::cli::main()
}
