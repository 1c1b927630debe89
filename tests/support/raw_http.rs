//! mod_xml_curl's request as raw HTTP/1.1 bytes on a socket of the test's own: for tests that
//! must control what reaches the wire and when (a body held back, a connection left open).

use std::net::SocketAddr;

use trunkline::fsxml::testdata::SAMPLE_DIALPLAN_FETCH;

/// One mod_xml_curl request on its own connection, as raw HTTP/1.1: (head, body).
pub fn raw_fetch(addr: SocketAddr, extra_headers: &str) -> (Vec<u8>, Vec<u8>) {
    let body = SAMPLE_DIALPLAN_FETCH.as_bytes().to_vec();
    let head = format!(
        "POST /freeswitch/xml HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: freeswitch-xml/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
        body.len()
    );
    (head.into_bytes(), body)
}

/// Whether `raw` is one complete `200` response: every byte its Content-Length announces.
pub fn is_complete_200(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    head.starts_with("HTTP/1.1 200") && length == Some(body.len())
}
