//! A real FreeSWITCH node for the interop suite (`tests/interop/`): found or unpacked once,
//! configured per test from the project's own `freeswitch-conf/` drop-ins exactly as
//! `freeswitch-conf/README.md` tells an operator (only ports and credentials substituted),
//! started in the foreground on its own ports and directory, driven over its Event Socket, and
//! stopped by PID.
//!
//! Where the node comes from: `TRUNKLINE_FREESWITCH` (an unpacked build holding `run.sh`, its
//! `.tar.gz`, or an installed `freeswitch` binary), else the build in `../shared/freeswitch/`.
//! Without one the suite prints one line and skips; under `CI=true` that is a failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// How to run one FreeSWITCH: its binary and, for the relocatable build, where its modules and
/// libraries are.
#[derive(Debug, Clone)]
pub struct Build {
    binary: PathBuf,
    modules: Option<PathBuf>,
    libraries: Option<String>,
}

/// The FreeSWITCH to test against, or `None` (after saying so) when this machine has none.
/// Under `CI=true` a missing FreeSWITCH or sipp fails the test instead.
pub fn build() -> Option<Build> {
    let missing = |what: String| -> Option<Build> {
        if super::db::in_ci() {
            panic!("interop suite: {what} (CI=true: a missing FreeSWITCH is a failure)");
        }
        eprintln!(
            "interop suite skipped: {what}; set TRUNKLINE_FREESWITCH to an unpacked FreeSWITCH build (holding run.sh), its .tar.gz, or an installed freeswitch binary, and install sipp"
        );
        None
    };
    if which("sipp").is_none() {
        return missing("sipp is not installed (apt-get install sip-tester)".into());
    }
    let found = match std::env::var_os("TRUNKLINE_FREESWITCH") {
        Some(named) => {
            let named = PathBuf::from(named);
            Some(from_path(&named).unwrap_or_else(|| {
                panic!(
                    "TRUNKLINE_FREESWITCH={} is neither a build with run.sh, its .tar.gz, nor a freeswitch binary",
                    named.display()
                )
            }))
        }
        None => shared_archive().map(|archive| unpacked(&archive)),
    };
    match found {
        Some(build) => Some(build),
        None => missing("no FreeSWITCH found in ../shared/freeswitch".into()),
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

fn from_path(path: &Path) -> Option<Build> {
    if path.join("run.sh").is_file() {
        return Some(relocatable(path));
    }
    if path.to_string_lossy().ends_with(".tar.gz") && path.is_file() {
        return Some(unpacked(path));
    }
    path.is_file().then(|| Build {
        binary: path.to_path_buf(),
        modules: None,
        libraries: None,
    })
}

/// The relocatable build's layout (its `run.sh`): `fs/bin`, `fs/lib/freeswitch/mod`, `deps/lib`.
fn relocatable(root: &Path) -> Build {
    Build {
        binary: root.join("fs/bin/freeswitch"),
        modules: Some(root.join("fs/lib/freeswitch/mod")),
        libraries: Some(format!(
            "{}:{}",
            root.join("fs/lib").display(),
            root.join("deps/lib").display()
        )),
    }
}

fn shared_archive() -> Option<PathBuf> {
    let shared = Path::new(MANIFEST).join("../shared/freeswitch");
    let mut archives: Vec<PathBuf> = std::fs::read_dir(shared)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("freeswitch-") && n.ends_with(".tar.gz"))
        })
        .collect();
    archives.sort();
    archives.pop()
}

/// Unpacks `archive` once under `target/interop/` (into a fresh directory renamed into place,
/// so concurrent test binaries never see half an archive) and returns its build.
fn unpacked(archive: &Path) -> Build {
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.gz"))
        .expect("archive name");
    let home = Path::new(MANIFEST).join("target/interop");
    let done = home.join(name);
    if !done.join("ready").is_file() {
        std::fs::create_dir_all(&home).expect("target/interop");
        let scratch = tempfile::tempdir_in(&home).expect("scratch dir");
        let status = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(scratch.path())
            .status()
            .expect("tar runs");
        assert!(status.success(), "unpacking {} failed", archive.display());
        let root = std::fs::read_dir(scratch.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.join("run.sh").is_file())
            .expect("the archive holds a directory with run.sh");
        std::fs::write(root.join("ready"), "").unwrap();
        // Another test binary may have won the race: then its copy is used.
        let _ = std::fs::rename(&root, &done);
    }
    relocatable(&done)
}

/// What a node is told: where trunkline is, and its own Event Socket.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// `http://127.0.0.1:PORT/freeswitch/xml`
    pub xmlcurl_url: String,
    /// `user:password`, as in both bindings' `gateway-credentials`.
    pub xmlcurl_credentials: String,
    pub esl_port: u16,
    pub esl_password: String,
    /// The first port of this node's RTP range (100 ports).
    pub rtp_start: u16,
    /// The operator's own files besides the drop-ins: `(path under conf/, text)`.
    pub own_files: Vec<(String, String)>,
}

/// A running FreeSWITCH, killed when dropped if it is still running.
pub struct Node {
    child: Child,
    pub spec: NodeSpec,
    /// The node's own directory: `conf/`, `log/freeswitch.log`, databases.
    pub dir: PathBuf,
}

/// The project's drop-in `freeswitch-conf/<file>`, with each `(from, to)` substituted; every
/// `from` must be there, so the walkthrough and this test cannot drift apart.
pub fn drop_in(file: &str, substitutions: &[(&str, &str)]) -> String {
    let path = Path::new(MANIFEST).join("freeswitch-conf").join(file);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in substitutions {
        assert!(
            text.contains(from),
            "{file} no longer holds {from:?}: update freeswitch-conf/README.md and this test"
        );
        text = text.replace(from, to);
    }
    text
}

/// The lines inside a drop-in's outer element (`hardening.vars.xml`: `<include>…</include>`),
/// to merge into the operator's own file.
fn inner_lines(file: &str, outer: &str) -> String {
    let text = drop_in(file, &[]);
    let open = format!("<{outer}>");
    let close = format!("</{outer}>");
    // The last opening tag: the comment above it may name the element too.
    let start = text.rfind(&open).expect("opening element") + open.len();
    let end = text.rfind(&close).expect("closing element");
    text[start..end].to_string()
}

/// The node's core settings (`switch.conf.xml`): its session limits, log level and RTP range
/// (`rtp_ports` ports from `rtp_start`), with the lines of the `hardening.switch.xml` drop-in.
pub fn switch_conf(
    rtp_start: u16,
    rtp_ports: u16,
    max_sessions: u32,
    sessions_per_second: u32,
    loglevel: &str,
) -> String {
    format!(
        r#"<configuration name="switch.conf" description="Core Configuration">
  <settings>
    <param name="colorize-console" value="false"/>
    <param name="max-sessions" value="{max_sessions}"/>
    <param name="sessions-per-second" value="{sessions_per_second}"/>
    <param name="loglevel" value="{loglevel}"/>
    <param name="rtp-start-port" value="{rtp_start}"/>
    <param name="rtp-end-port" value="{}"/>
    <param name="dump-cores" value="no"/>
{}
  </settings>
</configuration>
"#,
        rtp_start + rtp_ports - 1,
        inner_lines("hardening.switch.xml", "settings")
    )
}

/// Writes the node's configuration: FreeSWITCH's own skeleton (freeswitch.xml, vars.xml,
/// switch.conf.xml, logfile.conf.xml, a directory domain), then the steps of
/// `freeswitch-conf/README.md`.
fn write_conf(conf: &Path, spec: &NodeSpec) {
    for sub in ["autoload_configs", "dialplan", "directory"] {
        std::fs::create_dir_all(conf.join(sub)).unwrap();
    }
    let write = |rel: &str, text: String| std::fs::write(conf.join(rel), text).unwrap();
    write(
        "freeswitch.xml",
        r#"<?xml version="1.0"?>
<document type="freeswitch/xml">
  <X-PRE-PROCESS cmd="include" data="vars.xml"/>
  <section name="configuration" description="Various Configuration">
    <X-PRE-PROCESS cmd="include" data="autoload_configs/*.xml"/>
  </section>
  <section name="dialplan" description="Regex/XML Dialplan">
    <X-PRE-PROCESS cmd="include" data="dialplan/*.xml"/>
  </section>
  <section name="directory" description="User Directory">
    <X-PRE-PROCESS cmd="include" data="directory/*.xml"/>
  </section>
</document>
"#
        .into(),
    );
    // Step 6: the hardening and media timeout lines go into vars.xml.
    write(
        "vars.xml",
        format!(
            r#"<include>
  <X-PRE-PROCESS cmd="set" data="domain=127.0.0.1"/>
  <X-PRE-PROCESS cmd="set" data="local_ip=127.0.0.1"/>
  <X-PRE-PROCESS cmd="set" data="global_codec_prefs=PCMU,PCMA"/>
  <X-PRE-PROCESS cmd="set" data="outbound_codec_prefs=PCMU,PCMA"/>
{}
{}
</include>
"#,
            inner_lines("hardening.vars.xml", "include"),
            inner_lines("media.vars.xml", "include")
        ),
    );
    // …and api-expansion=false into switch.conf.xml's <settings>.
    write(
        "autoload_configs/switch.conf.xml",
        switch_conf(spec.rtp_start, 100, 1000, 1000, "debug"),
    );
    write(
        "autoload_configs/logfile.conf.xml",
        r#"<configuration name="logfile.conf" description="File Logging">
  <settings><param name="rotate-on-hup" value="true"/></settings>
  <profiles><profile name="default"><settings>
    <param name="rollover" value="104857600"/>
  </settings><mappings><map name="all" value="debug,info,notice,warning,err,crit,alert"/></mappings></profile></profiles>
</configuration>
"#
        .into(),
    );
    write(
        "directory/default.xml",
        "<include>\n  <domain name=\"$${domain}\"/>\n</include>\n".into(),
    );
    // Steps 1 and 2: credentials and URL in both bindings.
    write(
        "autoload_configs/xml_curl.conf.xml",
        drop_in(
            "autoload_configs/xml_curl.conf.xml",
            &[
                ("http://127.0.0.1:8080/freeswitch/xml", &spec.xmlcurl_url),
                (
                    "freeswitch:change-this-xmlcurl-password",
                    &spec.xmlcurl_credentials,
                ),
            ],
        ),
    );
    // Step 3: the Event Socket's password (and, here, its port).
    write(
        "autoload_configs/event_socket.conf.xml",
        drop_in(
            "autoload_configs/event_socket.conf.xml",
            &[
                (
                    r#"name="listen-port" value="8021""#,
                    &format!(r#"name="listen-port" value="{}""#, spec.esl_port),
                ),
                ("change-this-esl-password", &spec.esl_password),
            ],
        ),
    );
    // Steps 4 and 5: the static fallbacks and the module order, as shipped.
    for file in [
        "autoload_configs/sofia.conf.xml",
        "autoload_configs/acl.conf.xml",
        "autoload_configs/modules.conf.xml",
        "dialplan/trunkline.xml",
    ] {
        write(file, drop_in(file, &[]));
    }
    for (file, text) in &spec.own_files {
        write(file, text.clone());
    }
}

impl Node {
    /// Configures and starts a node in `dir` (foreground, no console, no NAT probing) and
    /// returns once its Event Socket answers `status`.
    pub async fn start(build: &Build, dir: &Path, spec: NodeSpec) -> Node {
        let conf = dir.join("conf");
        write_conf(&conf, &spec);
        let mut node = Self::spawn(build, dir, spec);
        node.wait_until_up().await;
        node
    }

    fn spawn(build: &Build, dir: &Path, spec: NodeSpec) -> Node {
        for sub in ["log", "db", "run", "temp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut cmd = Command::new(&build.binary);
        cmd.args(["-nf", "-nc", "-nonat"])
            .arg("-base")
            .arg(dir)
            .arg("-conf")
            .arg(dir.join("conf"))
            .arg("-log")
            .arg(dir.join("log"))
            .arg("-db")
            .arg(dir.join("db"))
            .arg("-run")
            .arg(dir.join("run"))
            .arg("-temp")
            .arg(dir.join("temp"));
        if let Some(modules) = &build.modules {
            cmd.arg("-mod").arg(modules);
        }
        if let Some(libraries) = &build.libraries {
            cmd.env("LD_LIBRARY_PATH", libraries);
        }
        let out = std::fs::File::create(dir.join("stdout.log")).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true);
        Node {
            child: cmd.spawn().expect("freeswitch starts"),
            spec,
            dir: dir.to_path_buf(),
        }
    }

    async fn wait_until_up(&mut self) {
        let started = std::time::Instant::now();
        loop {
            let answer = self.api("status").await;
            if answer.as_ref().is_ok_and(|s| s.contains("UP")) {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) || !self.running() {
                panic!(
                    "FreeSWITCH's Event Socket did not answer ({answer:?}); its output:\n{}\nlog:\n{}",
                    std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the node (`fsctl shutdown`, then SIGKILL if it lingers) and starts it again on the
    /// same configuration and databases.
    pub async fn restart(&mut self, build: &Build) {
        self.stop().await;
        let mut fresh = Self::spawn(build, &self.dir.clone(), self.spec.clone());
        std::mem::swap(self, &mut fresh);
        drop(fresh);
        self.wait_until_up().await;
    }

    /// `fsctl shutdown` over the Event Socket, then SIGKILL if the process is still there.
    pub async fn stop(&mut self) {
        let _ = self.api("fsctl shutdown").await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// The process's PID (None once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// One `api` command's answer.
    pub async fn api(&self, command: &str) -> std::io::Result<String> {
        api(self.spec.esl_port, &self.spec.esl_password, command).await
    }

    /// The node's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/freeswitch.log")).unwrap_or_default()
    }
}

/// Reads one Event Socket frame: headers up to a blank line, then `Content-Length` bytes.
async fn frame(reader: &mut BufReader<TcpStream>) -> std::io::Result<(String, String)> {
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\n" {
            break;
        }
        headers.push_str(&line);
    }
    let length = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap_or(0));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok((headers, String::from_utf8_lossy(&body).into_owned()))
}

/// One Event Socket session: authenticate, run `api <command>`, return its body. A wrong
/// password is an error (`-ERR invalid`).
pub async fn api(port: u16, password: &str, command: &str) -> std::io::Result<String> {
    api_repeated(port, password, command, 1).await
}

/// [`api`] run `times` times in a row on one session (the load harness's way to make the node
/// do one thing many times); returns the last body.
pub async fn api_repeated(
    port: u16,
    password: &str,
    command: &str,
    times: u32,
) -> std::io::Result<String> {
    let session = async {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut reader = BufReader::new(stream);
        frame(&mut reader).await?; // auth/request
        reader
            .get_mut()
            .write_all(format!("auth {password}\n\n").as_bytes())
            .await?;
        let (reply, _) = frame(&mut reader).await?;
        if !reply.contains("+OK") {
            return Err(std::io::Error::other(format!("auth refused: {reply}")));
        }
        let mut body = String::new();
        for _ in 0..times {
            reader
                .get_mut()
                .write_all(format!("api {command}\n\n").as_bytes())
                .await?;
            body = frame(&mut reader).await?.1;
        }
        Ok(body)
    };
    let limit = Duration::from_secs(20) * times.div_ceil(1000).max(1);
    tokio::time::timeout(limit, session)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// A free port on 127.0.0.1 for both UDP and TCP (sofia binds both on a profile's port),
/// below the kernel's ephemeral range (32768 and up on Linux). A port from that range stays
/// free only until some outgoing connection gets it as its local port: once a pooled HTTP
/// connection held the port picked for FreeSWITCH's Event Socket, and the node could not
/// listen for the whole test. FreeSWITCH's RTP ports start at 20000 (`NodeSpec::rtp_start`).
///
/// Each port heads a block of four that no other call in this process is handed until the
/// cursor wraps: sipp given `-mp <port>` also binds `<port>+2` for video (it exits with
/// "Unable to bind video RTP socket" when that is taken), and two tests asking at once must
/// not both be told the same free port. A CI run lost a call to exactly that.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const BLOCKS: u32 = 10_000 / 4;
    static CURSOR: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let cursor = CURSOR.get_or_init(|| AtomicU32::new(rand::random::<u32>() % BLOCKS));
    loop {
        let block = cursor.fetch_add(1, Ordering::Relaxed) % BLOCKS;
        let port = u16::try_from(FIRST + block * 4).expect("below 20000");
        let udp: Vec<_> = (port..port + 4)
            .map(|p| std::net::UdpSocket::bind(("127.0.0.1", p)))
            .collect();
        if udp.iter().all(Result::is_ok) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// The repository's templates plus the example caller-facing profile, copied as the example
/// tells an operator to (`templates/sofia/callers.xml`).
pub fn templates_with_callers(dir: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let templates = dir.join("templates");
    std::fs::create_dir_all(templates.join("sofia")).unwrap();
    std::fs::copy(
        repo.join("sofia/external.xml"),
        templates.join("sofia/external.xml"),
    )
    .unwrap();
    std::fs::copy(repo.join("acl.conf.xml"), templates.join("acl.conf.xml")).unwrap();
    let callers = std::fs::read_to_string(repo.join("examples/callers.xml")).unwrap();
    std::fs::write(templates.join("sofia/callers.xml"), &callers).unwrap();
    // A second caller-facing profile from the same example, its variables renamed: the
    // operator's own callers, whose calls enter the operator's dialplan first (README step 7).
    add_caller_profile(&templates, "operator");
    templates
}

/// Another caller-facing profile `<name>` from the example in `templates/sofia/callers.xml`,
/// its variables renamed (`caller_sip_port` → `<name>_sip_port`, and so `_context` and
/// `_dialplan`); the address list stays `caller_acl`.
pub fn add_caller_profile(templates: &Path, name: &str) {
    let callers = std::fs::read_to_string(templates.join("sofia/callers.xml")).unwrap();
    let renamed = ["sip_port", "context", "dialplan"]
        .iter()
        .fold(callers, |text, var| {
            text.replace(&format!("caller_{var}"), &format!("{name}_{var}"))
        });
    std::fs::write(templates.join(format!("sofia/{name}.xml")), renamed).unwrap();
}
