//! The `ivan` binary; see the `ivan_server` crate docs.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // What ivan writes holds personal data and evidence: the data dir, the SQLite
    // database with its -wal and -shm files, originals, keys, mail and SMS sinks,
    // backups, evidence bundles. None of it is for the group or others
    // (docs/OPERATIONS.md, "File modes"). SQLite and the originals store create their
    // files with 0666 (dirs 0777) less the umask and take no mode of their own, so the
    // process umask is the one setting that covers every file; set here, before any
    // thread or file exists. Where ivan creates a file or directory itself it also
    // asks for 0600 / 0700 explicitly.
    rustix::process::umask(rustix::fs::Mode::RWXG | rustix::fs::Mode::RWXO);
    ivan_server::cli::main()
}
