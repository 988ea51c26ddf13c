//! A DuckLake for the multi-instance tests: a real PostgreSQL (Debian's binaries, a
//! fresh cluster in a temporary folder on a free port) for the catalog and a real S3
//! server (`moto_server`) for the data files, both started here and stopped on drop.
//! The DuckDB extensions come from `scripts/ducklake-extensions`, as an operator's do.
//! Standalone (std and tempfile only): the DuckLake bench includes this file too.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A PostgreSQL command, as the `postgres` user when the tests run as root (PostgreSQL
/// refuses to run as root).
fn pg(cmd: &str) -> Command {
    let bin = format!("{PG_BIN}/{cmd}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &bin]);
        c
    } else {
        Command::new(bin)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The folder holding the extensions, fetched the documented way when missing.
pub fn extension_dir() -> PathBuf {
    let dir = std::env::var_os("CALLSCOPE_TEST_DUCKDB_EXTENSIONS").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/callscope/duckdb-extensions")
        },
        PathBuf::from,
    );
    // Both users of this file live two folders below the repository's root.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ducklake-extensions");
    let mut cmd = Command::new(script);
    cmd.arg(&dir);
    run(cmd, "scripts/ducklake-extensions");
    dir
}

/// PostgreSQL and an S3 server, running.
pub struct Lake {
    dir: tempfile::TempDir,
    pub pg_port: u16,
    pub s3_port: u16,
    moto: Child,
    pub extensions: PathBuf,
    /// A fresh prefix per lake, so lakes of different tests never share files.
    pub bucket: String,
}

impl Lake {
    /// Starts PostgreSQL (database `callscope`) and the S3 server (bucket
    /// `callscope-lake`), and fetches the extensions if they are missing.
    pub fn start() -> Lake {
        let extensions = extension_dir();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pg")).unwrap();
        if is_root() {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres"]).arg(dir.path());
            run(c, "chown");
        }
        let mut init = pg("initdb");
        init.arg("-D").arg(dir.path().join("pg")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]);
        run(init, "initdb");
        let s3_port = free_port();
        let moto = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &s3_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs (pip install 'moto[server]')");
        let lake = Lake {
            dir,
            pg_port: free_port(),
            s3_port,
            moto,
            extensions,
            bucket: "callscope-lake".into(),
        };
        lake.start_pg();
        let mut create = pg("psql");
        create.args([
            "-h",
            "127.0.0.1",
            "-p",
            &lake.pg_port.to_string(),
            "-U",
            "postgres",
        ]);
        create.args(["-c", "CREATE DATABASE callscope"]);
        run(create, "CREATE DATABASE");
        // The bucket, through the S3 API itself.
        let url = format!("http://127.0.0.1:{}/{}", lake.s3_port, lake.bucket);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let made = Command::new("curl")
                .args(["-sf", "-X", "PUT", &url])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if made {
                break;
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        lake
    }

    /// Starts (or restarts) PostgreSQL and waits until it accepts connections.
    pub fn start_pg(&self) {
        let mut start = pg("pg_ctl");
        start
            .arg("-D")
            .arg(self.dir.path().join("pg"))
            .arg("-l")
            .arg(self.dir.path().join("pg.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                self.pg_port,
                self.dir.path().display()
            ))
            .args(["-w", "start"]);
        run(start, "pg_ctl start");
    }

    /// Stops PostgreSQL at once (`immediate`: like a crash; open connections drop).
    pub fn stop_pg(&self) {
        let mut stop = pg("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path().join("pg"))
            .args(["-m", "immediate", "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }

    /// The `[storage.ducklake]` and `[storage.s3]` tables for an instance of this lake.
    pub fn config_toml(&self) -> String {
        format!(
            "[storage.ducklake]\ncatalog = \"postgres:host=127.0.0.1 port={} dbname=callscope user=postgres\"\n\
             data_path = \"s3://{}/\"\nextension_directory = {:?}\n\n\
             [storage.s3]\nendpoint = \"127.0.0.1:{}\"\nregion = \"us-east-1\"\n\
             access_key_id = \"test\"\nsecret_access_key = \"test\"\nurl_style = \"path\"\nuse_ssl = false\n",
            self.pg_port,
            self.bucket,
            self.extensions.display().to_string(),
            self.s3_port
        )
    }

    /// A folder of its own for instance `n` (its config file, exports).
    pub fn instance_dir(&self, n: usize) -> PathBuf {
        let dir = self.dir.path().join(format!("instance-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// Environment of an instance on the lake (the backend key sits in `[storage]`, which
/// the config file's first table already is).
pub const LAKE_ENV: [(&str, &str); 1] = [("CALLSCOPE_STORAGE__BACKEND", "ducklake")];

impl Drop for Lake {
    fn drop(&mut self) {
        let _ = self.moto.kill();
        let _ = self.moto.wait();
        let mut stop = pg("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path().join("pg"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}
