/// mimalloc: the migration allocates and frees millions of small strings (Redis replies,
/// keys), where glibc's allocator spent a sixth of runner's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    runner::run(std::env::args_os())
}
