//! trunkline: outbound carrier routing for FreeSWITCH.
//!
//! The pure core — [`model`], [`routing`], [`causes`], [`dialstring`], [`fsxml`] — is plain
//! functions over plain data: no I/O, no tokio, no sqlx. The edges — [`store`], [`api`],
//! [`xmlcurl`], [`esl`], [`serve`] — talk to the database, HTTP clients and FreeSWITCH's Event
//! Socket; [`serve`] owns the HTTP listeners and every connection's deadlines; [`ingest`] takes
//! what the Event Socket sessions read into [`quality`] and attempt records; [`access`] is who
//! is calling and what they may see, for the API and the [`status`] page alike.
//! [`publish`] turns a committed configuration into what both the xml_curl endpoint and the
//! Event Socket read. [`app`] wires them (the only place that knows the whole application's
//! state; each HTTP room gets its own narrow state); [`cli`] is the command line; [`config`]
//! reads the settings; [`memory`] is how the process holds memory. `tests/architecture.rs`
//! keeps these rules.

pub mod access;
pub mod api;
pub mod app;
pub mod causes;
pub mod cli;
pub mod config;
pub mod dialstring;
pub mod esl;
pub mod fsxml;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod memory;
pub mod model;
pub mod publish;
pub mod quality;
pub mod routing;
pub mod serve;
pub mod status;
pub mod store;
pub mod xmlcurl;
