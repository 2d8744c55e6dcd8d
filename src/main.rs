//! Thin glue: parse the command line, run the chosen mode, exit with its code.

fn main() {
    let mut logger = env_logger::Builder::new();
    logger
        .filter_level(log::LevelFilter::Warn)
        .parse_env(env_logger::Env::new().filter("FLEET_INIT_LOG"))
        .target(env_logger::Target::Stderr)
        .format_timestamp_millis();
    // A second logger cannot exist; if it did, diagnostics would be lost, not fleet-init.
    if logger.try_init().is_err() {
        eprintln!("fleet-init: logger already set");
    }
    let code = fleet_init::launch::main(std::env::args_os().skip(1));
    std::process::exit(code);
}
