//! Two service processes on one data directory: the second must refuse to start and name
//! the first, instead of both appending to one journal.

#[path = "support/service.rs"]
mod service;

#[tokio::test]
async fn a_second_service_on_the_same_data_directory_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let first = service::start(&data_dir, &[]).await;

    let (status, log) = service::run_to_exit(&data_dir, &[]);
    assert!(!status.success(), "the second service started: {log}");
    assert!(
        log.contains(&format!(
            "in use by another session-manager (pid {})",
            first.pid()
        )),
        "{log}"
    );

    // The lock goes with its holder, however it ends.
    first.kill();
    let again = service::start(&data_dir, &[]).await;
    again.terminate();
}
