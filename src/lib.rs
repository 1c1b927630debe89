//! trunkline: outbound carrier routing for FreeSWITCH.
//!
//! The pure core — [`model`], [`routing`], [`causes`], [`dialstring`], [`fsxml`] — is plain
//! functions over plain data: no I/O, no tokio, no sqlx. The edges — [`store`], [`api`],
//! [`xmlcurl`], [`esl`] — talk to the database, HTTP clients and FreeSWITCH. [`app`] wires them.

pub mod causes;
pub mod dialstring;
pub mod fsxml;
pub mod model;
pub mod routing;
