//! Server children of the benches: a bench runs callscope in a process of its own (so
//! its CPU and memory are measured apart from the load), which says on its first line
//! of output that it serves and where: `READY <addr> <addr> …`.

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdout, Command, Stdio},
};

use anyhow::{Context, bail};

/// A child that has said it is ready.
pub struct ReadyChild {
    /// The process; the bench stops it.
    pub child: Child,
    /// Kept open: a child writing to a closed pipe would fail.
    pub stdout: BufReader<ChildStdout>,
    /// The addresses it printed, as `http://` URLs, in its order.
    pub urls: Vec<String>,
}

/// Spawns `cmd` with piped stdin and stdout and waits for its `READY` line, which must
/// name at least `addresses` addresses.
///
/// # Errors
/// The child could not be spawned, or its first line is not `READY` with enough
/// addresses (it failed to start).
pub fn spawn_ready(cmd: &mut Command, addresses: usize) -> anyhow::Result<ReadyChild> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().context("the child's stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    if parts.next() != Some("READY") {
        bail!("a server child did not start: {line}");
    }
    let urls: Vec<String> = parts.map(|a| format!("http://{a}")).collect();
    if urls.len() < addresses {
        bail!(
            "a server child named {} of {addresses} addresses: {line}",
            urls.len()
        );
    }
    Ok(ReadyChild {
        child,
        stdout,
        urls,
    })
}
