//! What the API tests share: the app under test and its database, the services it talks
//! to (SMTP sink, identity provider, a PostgreSQL cluster, the binary as a process), and
//! the GraphQL operations and probes several test files use.
//!
//! Everything is re-exported here, so a test file names `crate::support::{TestApp, ...}`
//! without knowing which submodule an item lives in.

pub mod abuse;
pub mod app;
mod compat;
pub mod db;
pub mod mail;
pub mod oidc;
pub mod ops;
pub mod pg;
pub mod process;
pub mod smtp_sink;
pub mod sql;
pub mod wait;

pub use abuse::*;
pub use app::*;
pub use db::*;
pub use mail::*;
pub use oidc::*;
pub use ops::*;
pub use pg::*;
pub use process::*;
pub use smtp_sink::*;
pub use sql::*;
pub use wait::*;
