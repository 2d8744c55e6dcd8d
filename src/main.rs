//! Thin glue: run fleet-init with its arguments, exit with its code.

fn main() {
    let code = fleet_init::modes::main(std::env::args_os().skip(1));
    std::process::exit(code);
}
