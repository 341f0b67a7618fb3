//! `sqlx::migrate!` embeds the migration files at compile time, but cargo does not
//! know it reads them: without this, a changed or added migration would not rebuild
//! the crate and binaries would carry stale migrations.
fn main() {
    println!("cargo:rerun-if-changed=../migrations/sqlite");
    println!("cargo:rerun-if-changed=../migrations/postgres");
}
