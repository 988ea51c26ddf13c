//! Every file in `otel-config/` parses, and its keys and ports agree with the code.

use std::path::{Path, PathBuf};

use callscope_collector::{ForwardConfig, OtlpConfig, VisibilityConfig};
use callscope_store::StoreConfig;
use serde::Deserialize;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../otel-config")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn yaml(name: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The sections of callscope.toml this crate (and the store) own, with their real types.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    storage: StoreConfig,
    otlp: OtlpConfig,
    api: toml::Table,
    visibility: VisibilityConfig,
    #[serde(default)]
    forward: Vec<ForwardConfig>,
}

/// The example blocks of callscope.toml (`# Example (not a default)` and the `# `-prefixed
/// lines after it), uncommented.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Examples {
    visibility: VisibilityConfig,
    forward: Vec<ForwardConfig>,
}

fn example_lines(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("# Example (not a default)") {
            inside = true;
            continue;
        }
        match line.strip_prefix("# ") {
            Some(rest)
                if inside
                    && (rest.starts_with('[') || rest.contains(" = ") || rest.starts_with('#')) =>
            {
                out.push_str(rest);
                out.push('\n');
            }
            Some(_) if inside => {}
            _ => inside = false,
        }
    }
    out
}

#[test]
fn callscope_toml_documents_every_default() {
    let text = read("callscope.toml");
    let file: File = toml::from_str(&text).unwrap();
    // The uncommented lines are exactly the defaults.
    assert_eq!(file.otlp, OtlpConfig::default());
    assert_eq!(file.storage, StoreConfig::default());
    assert_eq!(file.visibility, VisibilityConfig::default());
    assert!(file.forward.is_empty(), "no destination is a default");
    assert_eq!(file.api["addr"].as_str(), Some("127.0.0.1:8080"));

    // The examples are valid configuration.
    let examples: Examples = toml::from_str(&example_lines(&text)).unwrap();
    assert_eq!(examples.visibility.mask.len(), 1);
    callscope_collector::VisibilityFilter::new(&examples.visibility).unwrap();
    let file = File {
        forward: examples.forward,
        ..file
    };
    assert_eq!(file.forward.len(), 2);
    for (i, f) in file.forward.iter().enumerate() {
        f.validate(i).unwrap();
    }
    // The first destination spells out every option with its default.
    let first = &file.forward[0];
    let defaults = ForwardConfig {
        name: first.name.clone(),
        ..ForwardConfig::new(first.endpoint.clone(), first.protocol)
    };
    assert_eq!(first, &defaults);
    assert_eq!(first.endpoint, "http://127.0.0.1:14317");

    // Each section's keys are all documented: the serialised defaults name no key that
    // the file (or, for a destination, its first example) lacks.
    // A key whose value is a table of keys (`[storage.ducklake]`) is documented as that
    // table, with each of its keys.
    let text = format!("{text}\n{}", example_lines(&text));
    let keys = |section: &str, value: toml::Value| -> Vec<String> {
        let mut out = Vec::new();
        for (key, value) in value.as_table().unwrap() {
            if let toml::Value::Table(sub) = value
                && !sub.is_empty()
            {
                let header = format!("\n[{section}.{key}]\n");
                assert!(text.contains(&header), "callscope.toml lacks `{header}`");
                out.extend(sub.keys().cloned());
            } else {
                out.push(key.clone());
            }
        }
        out
    };
    for key in keys(
        "otlp",
        toml::Value::try_from(OtlpConfig::default()).unwrap(),
    )
    .into_iter()
    .chain(keys(
        "storage",
        toml::Value::try_from(StoreConfig::default()).unwrap(),
    ))
    .chain(keys("forward", toml::Value::try_from(&defaults).unwrap()))
    {
        assert!(
            text.contains(&format!("\n{key} =")),
            "callscope.toml lacks `{key}`"
        );
    }
}

#[test]
fn gateway_sends_to_callscopes_default_grpc_address() {
    let config = yaml("otelcol-gateway.yaml");
    let callscope = &config["exporters"]["otlp/callscope"];
    assert_eq!(
        callscope["endpoint"].as_str(),
        Some(OtlpConfig::default().grpc_addr.to_string().as_str())
    );
    assert_eq!(callscope["tls"]["insecure"].as_bool(), Some(true));

    // The gateway listens where callscope.toml's first destination points.
    let receiver = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .unwrap();
    assert!(receiver.ends_with(":14317"), "{receiver}");

    // Every exporter a pipeline names is defined, and logs reach callscope.
    let pipelines = config["service"]["pipelines"].as_mapping().unwrap();
    for (name, pipeline) in pipelines {
        for exporter in pipeline["exporters"].as_sequence().unwrap() {
            let exporter = exporter.as_str().unwrap();
            assert!(
                !config["exporters"][exporter].is_null(),
                "pipeline {name:?} uses undefined exporter {exporter}"
            );
        }
        for processor in pipeline["processors"].as_sequence().unwrap() {
            assert!(!config["processors"][processor.as_str().unwrap()].is_null());
        }
    }
    let logs: Vec<_> = config["service"]["pipelines"]["logs"]["exporters"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(logs.contains(&"otlp/callscope"), "{logs:?}");
}

#[test]
fn grafana_datasources_cover_the_stack() {
    let config = yaml("grafana-datasources.yaml");
    assert_eq!(config["apiVersion"].as_u64(), Some(1));
    let sources = config["datasources"].as_sequence().unwrap();
    let types: Vec<_> = sources.iter().filter_map(|s| s["type"].as_str()).collect();
    for wanted in ["tempo", "jaeger", "loki", "prometheus"] {
        assert!(types.contains(&wanted), "no {wanted} datasource: {types:?}");
    }
    let uids: Vec<_> = sources.iter().filter_map(|s| s["uid"].as_str()).collect();
    for source in sources {
        assert!(source["url"].as_str().unwrap().starts_with("http://"));
        // Links between datasources point at datasources that exist.
        if let Some(uid) = source["jsonData"]["tracesToLogsV2"]["datasourceUid"].as_str() {
            assert!(uids.contains(&uid), "{uid}");
        }
    }
}

#[test]
fn the_scale_out_files_agree_with_the_code() {
    // The lake's instance config is a valid configuration for the DuckLake backend.
    let file: toml::Table = toml::from_str(&read("callscope-lake.toml")).unwrap();
    let storage: StoreConfig = file["storage"].clone().try_into().unwrap();
    assert_eq!(storage.backend, callscope_store::Backend::Ducklake);
    assert!(storage.ducklake.catalog.starts_with("postgres:"));
    assert!(storage.ducklake.data_path.starts_with("s3://"));
    let otlp: OtlpConfig = file["otlp"].clone().try_into().unwrap();
    let port = otlp.grpc_addr.port();

    // The balancer spreads logs and traces over three instances at that port.
    let config = yaml("otelcol-loadbalancer.yaml");
    let lb = &config["exporters"]["loadbalancing/callscope"];
    let hosts = lb["resolver"]["static"]["hostnames"].as_sequence().unwrap();
    assert_eq!(hosts.len(), 3);
    for h in hosts {
        assert!(h.as_str().unwrap().ends_with(&format!(":{port}")), "{h:?}");
    }
    for signal in ["logs", "traces"] {
        let exporters = &config["service"]["pipelines"][signal]["exporters"];
        assert_eq!(
            exporters[0].as_str(),
            Some("loadbalancing/callscope"),
            "{signal}"
        );
    }
}

#[test]
fn every_file_is_checked() {
    let mut names: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "callscope-lake.toml",
            "callscope.toml",
            "grafana-datasources.yaml",
            "otelcol-gateway.yaml",
            "otelcol-loadbalancer.yaml"
        ]
    );
    for name in &names[1..] {
        assert!(
            read("README.md").contains(name.as_str()),
            "README.md does not mention {name}"
        );
    }
}
