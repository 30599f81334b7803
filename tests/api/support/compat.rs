//! The spellings from before `support/` and the builders, so that test files written
//! against them (on branches open when this moved) still compile after a merge. New tests
//! use the builders; delete this file, and the path aliases in `main.rs`, once nothing
//! names them.
#![allow(
    dead_code,
    reason = "used only by files not yet ported; `expect` would fail once they are"
)]

use authgraph::auth::jwt::KeyAlgorithm;

use super::{app::TestApp, process::Service};

impl TestApp {
    /// `TestApp::builder().key(alg).envs(vars.iter().copied()).spawn()`.
    pub async fn spawn_with(alg: KeyAlgorithm, vars: &[(&str, &str)]) -> Self {
        Self::builder().key(alg).envs(vars.iter().copied()).spawn().await
    }
}

impl Service {
    /// `Service::builder().envs(vars.iter().copied()).spawn()`.
    pub fn spawn(vars: &[(&str, &str)]) -> Self {
        Self::builder().envs(vars.iter().copied()).spawn()
    }
}
