//! Shared by the integration test binaries: real databases ([`db`]) and a running trunkline
//! over one ([`app`]); the interop suite's FreeSWITCH platform ([`platform`]).

#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod db;
pub mod fake_switch;
pub mod freeswitch;
pub mod hostile;
pub mod logs;
pub mod platform;
pub mod process;
pub mod raw_http;
pub mod sipp;
