//! SIP callers and carriers for the interop suite: sipp processes on loopback, each with its own
//! scenario file, ports and message trace, and the parser of that trace, so a test asserts on
//! what reached the wire (the carrier's INVITE, the caller's final status).
//!
//! sipp checks a scenario's response codes when it loads it, so every status gets its own
//! scenario, written out here.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::freeswitch::free_port;

/// What a carrier does with each INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 180, then 200 with SDP; waits for the ACK and the BYE.
    Connect,
    /// A final failure status at once (503, 486, …).
    Status(u16),
    /// A final failure status with `Reason: Q.850;cause=<n>` (which sofia would let override
    /// its SIP → cause table, FREESWITCH.md §4.4).
    StatusWithQ850(u16, u16),
    /// Nothing at all until the CANCEL (answered 200, then 487): a carrier that gives no
    /// progress.
    Silent,
    /// 180, then nothing until the CANCEL (answered 200, then 487 for the INVITE).
    RingUntilCancelled,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => "Failure",
    }
}

const SDP: &str = "v=0
o=sipp 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
";

/// A response to the INVITE being handled, with `extra` header lines.
fn response(status: u16, extra: &str, body: &str) -> String {
    let (content_type, length) = if body.is_empty() {
        ("", "Content-Length: 0".to_string())
    } else {
        (
            "Content-Type: application/sdp\n",
            "Content-Length: [len]".to_string(),
        )
    };
    format!(
        "  <send><![CDATA[\nSIP/2.0 {status} {}\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag01[call_number]\n[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\n{extra}{content_type}{length}\n\n{body}]]></send>\n",
        reason(status)
    )
}

/// The end of a carrier's scenario once the INVITE is cancelled: 200 for the CANCEL, 487 for
/// the INVITE (whose CSeq method must be INVITE again), and the ACK.
fn cancelled() -> String {
    format!(
        "  <recv request=\"CANCEL\"/>\n{}  <send><![CDATA[\nSIP/2.0 487 Request Terminated\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag01[call_number]\n[last_Call-ID:]\nCSeq: [last_cseq_number] INVITE\nContent-Length: 0\n\n]]></send>\n  <recv request=\"ACK\"/>\n",
        response(200, "", "")
    )
}

fn carrier_scenario(answer: Answer) -> String {
    let steps = match answer {
        Answer::Connect => format!(
            "  <recv request=\"INVITE\" crlf=\"true\"/>\n{}{}  <recv request=\"ACK\" crlf=\"true\"/>\n  <recv request=\"BYE\"/>\n{}",
            response(180, "", ""),
            response(200, "", SDP),
            response(200, "", "")
        ),
        Answer::Status(status) => format!(
            "  <recv request=\"INVITE\" crlf=\"true\"/>\n{}  <recv request=\"ACK\"/>\n",
            response(status, "", "")
        ),
        Answer::StatusWithQ850(status, cause) => format!(
            "  <recv request=\"INVITE\" crlf=\"true\"/>\n{}  <recv request=\"ACK\"/>\n",
            response(status, &format!("Reason: Q.850;cause={cause}\n"), "")
        ),
        Answer::RingUntilCancelled => format!(
            "  <recv request=\"INVITE\" crlf=\"true\"/>\n{}{}",
            response(180, "", ""),
            cancelled()
        ),
        Answer::Silent => format!(
            "  <recv request=\"INVITE\" crlf=\"true\"/>\n{}",
            cancelled()
        ),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"carrier\">\n{steps}</scenario>\n"
    )
}

/// A carrier: a sipp UAS on its own port, answering every INVITE as told.
pub struct Carrier {
    child: Child,
    pub port: u16,
    trace: PathBuf,
}

impl Carrier {
    pub fn start(dir: &Path, name: &str, answer: Answer) -> Carrier {
        Carrier::start_on(dir, name, answer, free_port())
    }

    /// A carrier on a given port: another answer where a stopped carrier listened. `name`
    /// names its scenario and trace files.
    pub fn start_on(dir: &Path, name: &str, answer: Answer, port: u16) -> Carrier {
        let scenario = dir.join(format!("carrier-{name}.xml"));
        std::fs::write(&scenario, carrier_scenario(answer)).unwrap();
        let trace = dir.join(format!("carrier-{name}.messages"));
        let child = sipp(dir, &scenario, port, &trace)
            .spawn()
            .expect("sipp starts");
        Carrier { child, port, trace }
    }

    /// Waits until sipp listens on its port (a datagram sent earlier is refused by the host,
    /// which FreeSWITCH reports as a 503), or fails the test after ten seconds.
    pub async fn listening(&self) {
        let port = self.port;
        super::process::eventually(
            &format!("sipp listening on {port}"),
            std::time::Duration::from_secs(10),
            || async move { std::net::UdpSocket::bind(("127.0.0.1", port)).is_err() },
        )
        .await;
    }

    /// Every INVITE this carrier received so far (retransmissions once).
    pub fn invites(&self) -> Vec<SipMessage> {
        let mut seen = Vec::new();
        let mut invites: Vec<SipMessage> = Vec::new();
        for m in received(&self.trace) {
            if m.start_line.starts_with("INVITE ") {
                let key = (m.header("Call-ID"), m.header("CSeq"));
                if !seen.contains(&key) {
                    seen.push(key);
                    invites.push(m);
                }
            }
        }
        invites
    }
}

fn sipp(dir: &Path, scenario: &Path, port: u16, trace: &Path) -> Command {
    let mut cmd = Command::new("sipp");
    cmd.current_dir(dir)
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mp", &free_port().to_string()])
        .args(["-nostdin", "-trace_msg", "-message_file"])
        .arg(trace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // sipp says why it gave up (a port it could not bind, a scenario it could not read)
        // only on stderr; `call` shows it beside the trace.
        .stderr(
            std::fs::File::create(trace.with_extension("stderr"))
                .map_or_else(|_| Stdio::null(), Stdio::from),
        )
        .kill_on_drop(true);
    cmd
}

/// One SIP message from a sipp trace.
#[derive(Debug, Clone)]
pub struct SipMessage {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    /// When sipp sent or received it (seconds since midnight).
    pub at: f64,
    pub received: bool,
}

impl SipMessage {
    /// The first header of that name (case-insensitive), or "".
    pub fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// `INVITE <uri> SIP/2.0` → `<uri>`.
    pub fn request_uri(&self) -> &str {
        self.start_line.split(' ').nth(1).unwrap_or_default()
    }

    /// `SIP/2.0 486 Busy Here` → 486.
    pub fn status(&self) -> Option<u16> {
        self.start_line
            .strip_prefix("SIP/2.0 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
    }
}

/// The messages sipp recorded as received in its `-trace_msg` file.
fn received(trace: &Path) -> Vec<SipMessage> {
    let mut all = messages(trace);
    all.retain(|m| m.received);
    all
}

/// Every message of a `-trace_msg` file: blocks that start with a line of dashes and the time
/// (`… 2026-12-01 04:07:10.305605`), then `… message received …` or
/// `… message sent …`, a blank line and the message.
fn messages(trace: &Path) -> Vec<SipMessage> {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let mut out = Vec::new();
    for block in text.split("----------------------------------------------- ") {
        let mut lines = block.lines();
        let Some(time) = lines.next() else { continue };
        // The time of day (`2026-12-01 04:07:10.305605`): enough for durations within a test.
        let at = time
            .split_whitespace()
            .find_map(|t| {
                let mut parts = t.split(':').map(|p| p.parse::<f64>().ok());
                let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
                Some(h * 3600.0 + m * 60.0 + s)
            })
            .unwrap_or_default();
        let Some(what) = lines.next() else { continue };
        let received = what.contains("message received");
        if !received && !what.contains("message sent") {
            continue;
        }
        let mut lines = lines.skip_while(|l| l.trim().is_empty());
        let Some(start_line) = lines.next() else {
            continue;
        };
        let headers = lines
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        out.push(SipMessage {
            start_line: start_line.trim().to_string(),
            headers,
            at,
            received,
        });
    }
    out
}

/// What a caller should do once the call is up or ringing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Waits for a final answer: on 200, ACK, a short call, BYE; otherwise ACK.
    Expect(u16),
    /// Hangs up (CANCEL) once the call rings.
    CancelWhileRinging,
}

/// How a call ended, from the caller's side of the wire.
#[derive(Debug)]
pub struct CallOutcome {
    /// The final status of the INVITE the caller received (None: none arrived).
    pub status: Option<u16>,
    /// From the caller's INVITE to that final status.
    pub setup: Option<Duration>,
    /// Whether sipp ran the scenario to its end.
    pub completed: bool,
    /// The message trace, then whatever sipp printed on stderr.
    pub trace: String,
}

fn caller_scenario(
    request_user: &str,
    display: &str,
    caller_id: &str,
    headers: &str,
    caller: Caller,
) -> String {
    let invite = format!(
        "  <send retrans=\"500\"><![CDATA[\nINVITE sip:{request_user}@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: {display}<sip:{caller_id}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\nTo: <sip:{request_user}@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:caller@[local_ip]:[local_port]>\nMax-Forwards: 70\nX-Caller-Secret: never-forwarded\n{headers}Content-Type: application/sdp\nContent-Length: [len]\n\n{SDP}]]></send>\n  <recv response=\"100\" optional=\"true\"/>\n"
    );
    let ack = "  <send><![CDATA[\nACK sip:{user}@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n".replace("{user}", request_user);
    let rest = match caller {
        Caller::Expect(200) => format!(
            "  <recv response=\"180\" optional=\"true\"/>\n  <recv response=\"183\" optional=\"true\"/>\n  <recv response=\"200\" rrs=\"true\"/>\n  <send><![CDATA[\nACK sip:{request_user}@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[last_From:]\n[last_To:]\nCall-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n  <pause milliseconds=\"300\"/>\n  <send retrans=\"500\"><![CDATA[\nBYE sip:{request_user}@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: <sip:{caller_id}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n[last_To:]\nCall-ID: [call_id]\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n  <recv response=\"200\"/>\n"
        ),
        Caller::Expect(status) => format!(
            "  <recv response=\"180\" optional=\"true\"/>\n  <recv response=\"183\" optional=\"true\"/>\n  <recv response=\"{status}\"/>\n{ack}"
        ),
        Caller::CancelWhileRinging => format!(
            "  <recv response=\"180\"/>\n  <pause milliseconds=\"500\"/>\n  <send><![CDATA[\nCANCEL sip:{request_user}@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\nFrom: <sip:{caller_id}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\nTo: <sip:{request_user}@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n  <recv response=\"200\"/>\n  <recv response=\"487\"/>\n{ack}"
        ),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"caller\">\n{invite}{rest}</scenario>\n"
    )
}

/// Places one call from a sipp UAC to `127.0.0.1:<profile_port>`, with `request_user` as the
/// Request-URI's user part exactly as given (percent-encode what SIP does not allow raw) and
/// `headers` (`Name: value` lines) added to the INVITE, and waits for it to end (bounded).
pub async fn call(
    dir: &Path,
    profile_port: u16,
    request_user: &str,
    caller_id: &str,
    headers: &[(&str, String)],
    caller: Caller,
) -> CallOutcome {
    call_named(
        dir,
        profile_port,
        request_user,
        "",
        caller_id,
        headers,
        caller,
    )
    .await
}

/// As [`call`], with `display` written verbatim before the INVITE's From URI (e.g.
/// `"Front Desk" `, quotes and trailing space included; `""` for none): the caller-ID name a
/// SIP caller presents, hostile or not. Only the INVITE carries it (the dialog is keyed by the
/// tag, not the name).
pub async fn call_named(
    dir: &Path,
    profile_port: u16,
    request_user: &str,
    display: &str,
    caller_id: &str,
    headers: &[(&str, String)],
    caller: Caller,
) -> CallOutcome {
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\n"))
        .collect();
    let id = free_port();
    let scenario = dir.join(format!("caller-{id}.xml"));
    std::fs::write(
        &scenario,
        caller_scenario(request_user, display, caller_id, &headers, caller),
    )
    .unwrap();
    let trace = dir.join(format!("caller-{id}.messages"));
    let mut cmd = sipp(dir, &scenario, id, &trace);
    cmd.args([
        "-m",
        "1",
        "-l",
        "1",
        "-timeout",
        "50s",
        "-recv_timeout",
        "30000",
    ])
    .arg(format!("127.0.0.1:{profile_port}"));
    let mut child = cmd.spawn().expect("sipp starts");
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the caller finishes within 60 s")
        .expect("sipp waited for");
    let messages = messages(&trace);
    let invite_sent = messages
        .iter()
        .find(|m| !m.received && m.start_line.starts_with("INVITE "))
        .map(|m| m.at);
    let last_final = messages
        .iter()
        .rev()
        .filter(|m| m.received && m.header("CSeq").ends_with("INVITE"))
        .find(|m| m.status().is_some_and(|s| s >= 200));
    let status = last_final.and_then(SipMessage::status);
    let setup = invite_sent
        .zip(last_final)
        .map(|(sent, m)| Duration::from_secs_f64((m.at - sent).max(0.0)));
    CallOutcome {
        status,
        setup,
        completed: exit.success(),
        trace: format!(
            "{}{}",
            std::fs::read_to_string(&trace).unwrap_or_default(),
            std::fs::read_to_string(trace.with_extension("stderr")).unwrap_or_default()
        ),
    }
}

/// What a burst of calls at a fixed rate gave, read from the caller's message trace.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Calls whose INVITE was sent.
    pub placed: usize,
    /// Calls answered 200.
    pub connected: usize,
    /// INVITE → first 180, for each call that rang (seconds, from the trace's timestamps).
    pub ringing: Vec<f64>,
    /// INVITE → 200, for each answered call (seconds).
    pub answered: Vec<f64>,
}

/// Places `calls` calls at `rate` a second from one sipp UAC to `127.0.0.1:<profile_port>`, each
/// answered call held 300 ms then hung up, and waits for the last to end (bounded). Times come
/// from the microsecond timestamps of sipp's message trace, not its millisecond buckets.
pub async fn load(
    dir: &Path,
    profile_port: u16,
    number: &str,
    caller_id: &str,
    rate: u32,
    calls: u32,
) -> LoadOutcome {
    let id = free_port();
    let scenario = dir.join(format!("load-{id}.xml"));
    std::fs::write(
        &scenario,
        caller_scenario(number, "", caller_id, "", Caller::Expect(200)),
    )
    .unwrap();
    let trace = dir.join(format!("load-{id}.messages"));
    let limit = Duration::from_secs(u64::from(calls / rate.max(1)) + 60);
    let mut cmd = sipp(dir, &scenario, id, &trace);
    cmd.args(["-r", &rate.to_string(), "-rp", "1000"])
        .args(["-m", &calls.to_string()])
        .args(["-l", &(rate * 10).max(10).to_string()])
        .args(["-recv_timeout", "10000"])
        .args(["-timeout", &format!("{}s", limit.as_secs())])
        .arg(format!("127.0.0.1:{profile_port}"));
    let mut child = cmd.spawn().expect("sipp starts");
    tokio::time::timeout(limit + Duration::from_secs(10), child.wait())
        .await
        .expect("the load caller finishes")
        .expect("sipp waited for");
    let outcome = load_outcome(&messages(&trace));
    let _ = std::fs::remove_file(&trace);
    outcome
}

/// Per Call-ID: when the first INVITE left, and when the first 180 and the 200 came back.
fn load_outcome(messages: &[SipMessage]) -> LoadOutcome {
    #[derive(Default)]
    struct Call {
        invite: Option<f64>,
        ringing: Option<f64>,
        answered: Option<f64>,
    }
    let mut calls: HashMap<String, Call> = HashMap::new();
    for m in messages {
        let call = calls.entry(m.header("Call-ID")).or_default();
        let first = |slot: &mut Option<f64>| {
            slot.get_or_insert(m.at);
        };
        if !m.received && m.start_line.starts_with("INVITE ") {
            first(&mut call.invite);
        } else if m.received && m.header("CSeq").ends_with("INVITE") {
            match m.status() {
                Some(180) => first(&mut call.ringing),
                Some(200) => first(&mut call.answered),
                _ => {}
            }
        }
    }
    let mut outcome = LoadOutcome::default();
    for call in calls.values() {
        let Some(invite) = call.invite else { continue };
        outcome.placed += 1;
        if let Some(at) = call.ringing {
            outcome.ringing.push(at - invite);
        }
        if let Some(at) = call.answered {
            outcome.connected += 1;
            outcome.answered.push(at - invite);
        }
    }
    outcome
}
