//! `callscope demo`: the simulated agent's calls arrive over real OTLP, and the demo
//! ends with the console's address and a key that signs in to a console showing them.

use std::time::{Duration, Instant};

use callscope::demo::{DemoArgs, keep_calling, start, telemetry};
use reqwest::{StatusCode, header, redirect::Policy};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ends_with_a_console_to_sign_in_to() {
    let args = DemoArgs {
        calls: 3,
        seed: 7,
        speed: 0,
        data: None,
        http: false,
        no_serve: false,
    };
    let demo = start(&args, true).await.unwrap();
    let base = format!("http://{}", demo.server.api_addr);
    let text = &demo.outcome.text;
    assert!(text.contains(&format!("open     {base}/")), "{text}");
    assert!(text.contains(&format!("API key  {}", demo.key)), "{text}");
    assert!(!demo.outcome.records.is_empty());

    // The printed key signs in to the console, whose session reads the demo's calls.
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let resp = http
        .post(format!("{base}/signin"))
        .header(header::ORIGIN, &base)
        .form(&[("api_key", demo.key.as_str()), ("name", "Newcomer")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/calls");
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http
        .get(format!("{base}/calls"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(r#"<meta name="cs-page" content="calls">"#)
    );
    // The calls list as the console's session reads it.
    let list = async || -> Value {
        http.get(format!("{base}/v1/calls"))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let calls = list().await;
    assert_eq!(calls["total_count"], 3, "{calls}");
    let shown = &demo.outcome.shown_call;
    assert!(
        calls["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["call_id"] == shown.as_str())
    );

    // While it serves, the simulated agent keeps placing calls, one every few seconds,
    // each seen in progress before it ends: the console's live view has calls to follow.
    let telemetry = telemetry(&args, &demo.server).unwrap();
    let calling = tokio::spawn(keep_calling(args.clone(), telemetry.dispatch().clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let calls = list().await;
        let live = calls["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == "in_progress");
        if calls["total_count"].as_u64() > Some(3) && live {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new call in progress: {calls}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    calling.abort();
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap()
        .unwrap();
    demo.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_serving_the_demo_prints_the_call_and_stops() {
    let args = DemoArgs {
        calls: 2,
        seed: 3,
        speed: 0,
        data: None,
        http: true,
        no_serve: true,
    };
    let outcome = callscope::demo::run_quiet(&args).await.unwrap();
    assert!(outcome.text.contains(&outcome.shown_call));
    assert!(outcome.text.contains("CALL_STARTED"), "{}", outcome.text);
    assert!(
        !outcome.text.contains("API key"),
        "no console to sign in to"
    );
    assert!(outcome.internal_kept_out > 0);
}
