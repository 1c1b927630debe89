//! trunkline: outbound carrier routing for FreeSWITCH.
//!
//! The pure core — [`model`], [`routing`], [`causes`], [`dialstring`], [`fsxml`] — is plain
//! functions over plain data: no I/O, no tokio, no sqlx. The edges — [`store`], [`api`],
//! [`xmlcurl`] — talk to the database and HTTP clients. [`app`] wires them; [`cli`] is the
//! command line; [`config`] reads the settings; [`memory`] is how the process holds memory.

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
pub mod memory;
pub mod model;
pub mod routing;
pub mod store;
pub mod xmlcurl;
