//! `berth-shim`: one process per container. See `berth_runtime::shim`.

fn main() {
    std::process::exit(berth_runtime::shim::entry::main());
}
