// Run: `cargo run -p callscope-sim --example voice_agent` (exports OTLP/gRPC to OTEL_EXPORTER_OTLP_ENDPOINT, default 127.0.0.1:4317; CALLS, TENANTS=a,b, SEED and SPEED tune the run).
//! A simulated voice agent exporting its calls to a callscope collector over OTLP.

use std::{env, error::Error};

use callscope_sim::SimConfig;
use callscope_tracing::CallscopeTracing;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let telemetry = CallscopeTracing::builder()
        .service_name("voice-agent")
        .fmt_layer(true)
        .env_filter("warn")
        .init()?;

    let config = SimConfig {
        calls: env::var("CALLS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(6),
        tenants: env::var("TENANTS")
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_else(|_| vec!["acme".to_owned()]),
        seed: env::var("SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(42),
        // Paced like live calls, ten times faster than real time, unless SPEED says
        // otherwise (0: no waiting).
        speed: env::var("SPEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .or(Some(10)),
    };
    let report = callscope_sim::run(&config).await;

    println!(
        "{:<38} {:<8} {:<9} {:<9} {:>8} {:>8}",
        "call", "tenant", "direction", "status", "customer", "internal"
    );
    for call in &report.calls {
        println!(
            "{:<38} {:<8} {:<9} {:<9} {:>8} {:>8}",
            call.call_id,
            call.tenant,
            call.direction,
            call.status,
            call.customer_events,
            call.internal_records
        );
    }
    println!(
        "{} calls, {} customer events, {} internal records",
        report.calls.len(),
        report.customer_events(),
        report.internal_records()
    );
    telemetry.shutdown()?;
    Ok(())
}
