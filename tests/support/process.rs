//! The real `trunkline serve` binary as a child process, for tests that send it signals
//! (SIGTERM, SIGKILL) and restart it on the same database; plus [`eventually`] and
//! [`eventually_ok`], the bounded waits every test uses instead of sleeping or a loop of its own.

#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_trunkline");

/// Waits until `check` holds, failing the test after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_ok(what, limit, || {
        let holds = check();
        async move {
            if holds.await {
                Ok(())
            } else {
                Err("the check did not hold".to_string())
            }
        }
    })
    .await
}

/// [`eventually`] for a check that has something to give once it holds and something to show
/// while it does not: `check` returns `Ok(value)` when it holds, `Err(state)` otherwise. Returns
/// the value; fails the test after `limit` naming the last state seen.
pub async fn eventually_ok<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    let polled = async {
        loop {
            match check().await {
                Ok(value) => return value,
                Err(state) => last = state,
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    match tokio::time::timeout(limit, polled).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for: {what}; last seen:\n{last}"),
    }
}

fn shipped_templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// A loopback address nothing listens on.
pub fn free_loopback_addr() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A running `trunkline serve`, killed (SIGKILL) when dropped if it is still running.
pub struct Server {
    child: Child,
    pub base: String,
    pub addr: std::net::SocketAddr,
    /// Where its output goes (`serve.log` in the working directory), for failure messages.
    pub log: PathBuf,
    /// Its configuration file.
    config: PathBuf,
}

impl Server {
    /// Writes `config` to `dir/trunkline.toml` and serves it on a free loopback port from `dir`,
    /// with the repository's templates and none of the test's `TRUNKLINE_*` variables. Returns
    /// once `/healthz` answers.
    pub async fn start(dir: &Path, config: &str) -> Server {
        Self::spawn(
            dir,
            &shipped_templates(),
            config,
            free_loopback_addr(),
            None,
        )
        .await
    }

    /// [`Server::start`] on a given address (`[::]:port` for a dual-stack listener).
    pub async fn start_on(dir: &Path, config: &str, addr: std::net::SocketAddr) -> Server {
        Self::spawn(dir, &shipped_templates(), config, addr, None).await
    }

    /// [`Server::start`] with its own templates directory, on a given address (a restarted
    /// instance keeps the address FreeSWITCH's bindings point at).
    pub async fn start_at(
        dir: &Path,
        templates: &Path,
        config: &str,
        addr: std::net::SocketAddr,
    ) -> Server {
        Self::spawn(dir, templates, config, addr, None).await
    }

    /// [`Server::start`] with the soft open-files limit a systemd service gets by default
    /// (`open_files`), as `ulimit -Sn` sets it.
    pub async fn start_with_open_files(dir: &Path, config: &str, open_files: u64) -> Server {
        Self::spawn(
            dir,
            &shipped_templates(),
            config,
            free_loopback_addr(),
            Some(open_files),
        )
        .await
    }

    async fn spawn(
        dir: &Path,
        templates: &Path,
        config: &str,
        addr: std::net::SocketAddr,
        open_files: Option<u64>,
    ) -> Server {
        let config_path = dir.join("trunkline.toml");
        std::fs::write(
            &config_path,
            format!(
                "templates = {:?}\n{config}",
                templates.display().to_string()
            ),
        )
        .expect("config written");
        let log = dir.join("serve.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd = match open_files {
            None => Command::new(BIN),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -Sn {n} && exec \"$0\" \"$@\""), BIN]);
                sh
            }
        };
        cmd.current_dir(dir)
            .args(["--config", config_path.to_str().unwrap()])
            .args(["serve", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (key, _) in std::env::vars() {
            if key.starts_with("TRUNKLINE_") {
                cmd.env_remove(key);
            }
        }
        let server = Server {
            child: cmd.spawn().expect("trunkline starts"),
            base: format!("http://{addr}"),
            addr,
            log,
            config: config_path,
        };
        let client = reqwest::Client::new();
        let health = format!("{}/healthz", server.base);
        eventually(
            "trunkline serving /healthz",
            Duration::from_secs(30),
            || {
                let request = client.get(&health).send();
                async move { request.await.is_ok_and(|r| r.status().is_success()) }
            },
        )
        .await;
        server
    }

    /// A new token for this server's database, as `trunkline token create ARGS` prints it
    /// (e.g. `--metrics`, `--platform-admin`).
    pub fn token(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(["--config", self.config.to_str().unwrap(), "token", "create"])
            .args(args)
            .output()
            .expect("trunkline token create runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as systemd or Kubernetes do to stop the service.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// SIGKILL and reap: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL sent");
        self.child.wait().expect("reaped");
    }

    /// The exit status, failing the test if the process is still running after `limit`.
    pub async fn exited(&mut self, limit: Duration) -> ExitStatus {
        let mut status = None;
        eventually("trunkline to exit", limit, || {
            status = self.child.try_wait().expect("try_wait");
            std::future::ready(status.is_some())
        })
        .await;
        status.expect("exited")
    }

    /// What the process printed, for assertion messages.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
