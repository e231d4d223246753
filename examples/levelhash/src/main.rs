//! `levelhash`: every crashsim subcommand, for the Level Hashing target.

fn main() -> std::process::ExitCode {
    crashsim_cli::Cli::new().target::<levelhash::LevelHash>().run()
}
