//! Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds the migrations at compile time, and
//! without this Cargo would keep a binary that lacks a new file.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
