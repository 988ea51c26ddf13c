//! The real `callscope` binary as a child process: started on free ports over a config
//! file, stopped with SIGTERM or killed with SIGKILL, its JSON logs captured.

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use callscope_api::key_sha256_hex;

use super::{TENANTS, key_for};

/// The `callscope` executable Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_callscope");

/// Writes `callscope.toml` in `dir`: storage at `db` (default `dir/callscope.duckdb`),
/// every listener on a free port, an API key for each of [`TENANTS`], then `extra`
/// (whole TOML tables, e.g. `"[visibility]\ndefault_tenant = \"acme\"\n"`). Settings inside
/// `[storage]`, `[otlp]` or `[api]` are easier to give as `CALLSCOPE_*` variables.
pub fn write_config(dir: &Path, db: Option<&Path>, extra: &str) -> PathBuf {
    let db = db.map_or_else(|| dir.join("callscope.duckdb"), Path::to_path_buf);
    let mut text = format!(
        "[storage]\npath = {:?}\n\n[otlp]\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\n\n[api]\naddr = \"127.0.0.1:0\"\n",
        db.display().to_string()
    );
    for t in TENANTS {
        text.push_str(&format!(
            "\n[[api.keys]]\ntenant = \"{t}\"\nkey_sha256 = \"{}\"\n",
            key_sha256_hex(&key_for(t))
        ));
    }
    text.push('\n');
    text.push_str(extra);
    let path = dir.join("callscope.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `callscope serve`.
pub struct Callscope {
    child: Option<Child>,
    pid: u32,
    /// OTLP/gRPC.
    pub grpc: SocketAddr,
    /// OTLP/HTTP.
    pub http: SocketAddr,
    /// The customer API.
    pub api: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

/// Removes every `CALLSCOPE_*` variable the test process inherited: the server reads them
/// as configuration overrides, and the tests decide the configuration themselves.
fn isolate_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CALLSCOPE_") {
            cmd.env_remove(k);
        }
    }
}

impl Callscope {
    /// Starts `callscope serve --config config` with `env` added to its environment and
    /// JSON logs at `info` (unless `env` sets `CALLSCOPE_LOG`), and waits until it serves.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Callscope {
        let mut cmd = Command::new(BIN);
        isolate_env(&mut cmd);
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env("CALLSCOPE_LOG_FORMAT", "json")
            .env("CALLSCOPE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("callscope starts");
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn({
            let logs = logs.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addrs) = serving_addresses(&line) {
                        let _ = tx.send(addrs);
                    }
                    logs.lock().unwrap().push(line);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((grpc, http, api)) = rx.recv_timeout(Duration::from_millis(50)) {
                return Callscope {
                    child: Some(child),
                    pid,
                    grpc,
                    http,
                    api,
                    logs,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "callscope exited ({status}) before serving:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            if Instant::now() >= deadline {
                // Not left running behind the failed test.
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "callscope did not start within 60 s:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything logged so far, one JSON object per line.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `http://<api>`.
    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// `http://<otlp http>`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `http://<otlp grpc>`.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmHWM:")
    }

    /// Resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmRSS:")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
    }

    /// SIGTERM, then waits up to `timeout` for the exit; returns its status and the logs.
    pub fn terminate(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.logs());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "callscope did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Callscope {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The three addresses of the "callscope is serving." log line.
fn serving_addresses(line: &str) -> Option<(SocketAddr, SocketAddr, SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let f = &v["fields"];
    if f["message"] != "callscope is serving." {
        return None;
    }
    let addr = |k: &str| f[k].as_str()?.parse().ok();
    Some((addr("grpc_addr")?, addr("http_addr")?, addr("api_addr")?))
}

/// Runs `callscope` with `args` to completion; returns its status, stdout and stderr.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(BIN);
    isolate_env(&mut cmd);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
