fn main() -> std::process::ExitCode {
    runner::run(std::env::args_os())
}
