//! The real `payrail` binary as a child process: `payrail serve` on a
//! loopback port, and client subcommands run against it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_payrail");
/// Longest wait for a server to start listening (a restart replays the log).
const START_TIME_MAX: Duration = Duration::from_secs(60);
/// Longest wait for a server to exit after SIGTERM.
const STOP_TIME_MAX: Duration = Duration::from_secs(60);

/// A 127.0.0.1 port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A `payrail serve` child; killed when dropped, also when a test panics.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where `start` put the Prometheus endpoint (None: as the arguments say).
    pub metrics_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl ServerProcess {
    /// `payrail serve --listen ADDR --data-dir DATA_DIR` followed by `extra`
    /// (flags override the config file), logging at info level, stderr
    /// appended to `log` (so restarts keep one log); returns once it says
    /// it listens and accepts connections, and fails the test with its log
    /// if it exits first. A port taken meanwhile (`free_addr` gives one that
    /// was free a moment ago; a test running beside may have taken it) is
    /// swapped for another free one: `addr` then says where it listens.
    pub fn spawn(data_dir: &Path, addr: SocketAddr, log: &Path, extra: &[&str]) -> ServerProcess {
        const ATTEMPTS: usize = 5;
        let mut addr = addr;
        for attempt in 1..=ATTEMPTS {
            let log_from = std::fs::metadata(log).map_or(0, |meta| meta.len());
            let stderr = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            let child = Command::new(BINARY)
                .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
                .arg(data_dir)
                .args(extra)
                .env("RUST_LOG", "info")
                // Tests start many servers: none touches its whole record table.
                .env("PAYRAIL_PREFAULT", "false")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap();
            let mut server = ServerProcess {
                child,
                addr,
                metrics_addr: None,
                data_dir: data_dir.to_owned(),
                log: log.to_owned(),
            };
            match server.wait_until_listening(log_from) {
                Ok(()) => return server,
                Err(text) if attempt < ATTEMPTS && text.contains("Address already in use") => {
                    addr = free_addr();
                }
                Err(text) => panic!("payrail serve exited: {text}"),
            }
        }
        unreachable!("every attempt returns or panics")
    }

    /// A server in `dir` (data in `dir/data`, log in `dir/serve.log`) on free
    /// ports for the protocol and the metrics endpoint, then `extra`.
    pub fn start(dir: &Path, extra: &[&str]) -> ServerProcess {
        let metrics_addr = free_addr();
        let metrics = metrics_addr.to_string();
        let mut args = vec!["--metrics-listen", metrics.as_str()];
        args.extend_from_slice(extra);
        let mut server = ServerProcess::spawn(
            &dir.join("data"),
            free_addr(),
            &dir.join("serve.log"),
            &args,
        );
        server.metrics_addr = Some(metrics_addr);
        server
    }

    /// Waits until this start's part of the log (from byte `log_from`) says
    /// the server listens and its port accepts a connection (a connection
    /// alone could reach another server on a port this one failed to take).
    /// `Err` with that part of the log if the server exited first.
    fn wait_until_listening(&mut self, log_from: u64) -> Result<(), String> {
        let started = Instant::now();
        let this_start = |server: &ServerProcess| {
            let text = server.log_text();
            text.get(log_from as usize..).unwrap_or_default().to_owned()
        };
        loop {
            if this_start(self).contains("listening")
                && TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{status}: {}", this_start(self)));
            }
            assert!(
                started.elapsed() < START_TIME_MAX,
                "payrail serve did not listen on {} within {START_TIME_MAX:?}: {}",
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a client subcommand against this server.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .args(["--addr", &self.addr.to_string(), "--data-dir"])
            .arg(&self.data_dir);
        run(command)
    }

    /// Runs a client subcommand with `--json`, checks its exit code and
    /// returns the object it printed.
    pub fn json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.run(&all);
        expect_code(&output, code);
        json(&output)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (bounded) for a clean exit: status 0.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "clean shutdown exits 0, got {status}; log:\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(
                started.elapsed() < STOP_TIME_MAX,
                "payrail serve did not stop on SIGTERM within {STOP_TIME_MAX:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` with no input and without a `PAYRAIL_ADDR` from the
/// environment the tests run in.
pub fn run(mut command: Command) -> Output {
    command.stdin(Stdio::null()).env_remove("PAYRAIL_ADDR");
    command.output().unwrap()
}

/// Runs a subcommand that needs no server.
pub fn cli(args: &[&str]) -> Output {
    let mut command = Command::new(BINARY);
    command.args(args);
    run(command)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it differs.
pub fn expect_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// The one JSON object a subcommand printed with `--json`.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("not one JSON object ({error}): {}", stdout(output)))
}

/// The Prometheus page at `addr`, by plain HTTP/1.1.
pub fn metrics_text(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The value of the sample of `name` whose labels include every one of
/// `labels` (each as `key="value"`), if the page has one.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}
