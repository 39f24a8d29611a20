//! `/healthz` on both ports.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn both_ports_report_health_and_the_admin_port_adds_detail() {
    let app = spawn_app().await;
    app.create_session(json!({})).await;
    let public = app.public_healthz().await;
    assert_eq!(public.status(), StatusCode::OK);
    assert_eq!(
        public.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );

    let admin = app.admin_healthz().await;
    assert_eq!(admin.status(), StatusCode::OK);
    let body: Value = admin.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["signer"]["ready"], true);
    assert_eq!(body["algorithm"], "RS256");
    assert_eq!(body["store"]["live_sessions"], 1);
    assert_eq!(body["store"]["status"], "ok");
    assert_eq!(body["store"]["skipped"], json!([]));
    assert_eq!(body["store"]["torn_tail_bytes"], 0);
    assert!(body["store"].get("write_fault").is_none(), "{body}");
}
