//! The GraphQL schema: roots, types, guards, limits and the error-code mapping.

pub mod admin;
pub mod code;
pub mod coercion;
pub mod context;
pub mod error;
pub mod field_errors;
pub mod guards;
pub mod limits;
pub mod loader;
pub mod mfa;
pub mod mutation;
pub mod observability;
pub mod passkeys;
pub mod pipeline;
pub mod query;
pub mod social;
pub mod subscription;
pub mod types;

pub use code::Code;

use async_graphql::{MergedObject, SDLExportOptions, Schema, SchemaBuilder, dataloader::DataLoader};

use crate::{config::GraphqlLimits, state::AppState};

// Each capability keeps its resolvers in a module of its own; the roots merge them.
/// Write operations.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct Mutation(
    mutation::MutationRoot,
    mfa::MfaMutation,
    passkeys::PasskeyMutation,
    admin::AdminMutation,
    social::SocialMutation,
);

/// Read operations.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct Query(query::QueryRoot, admin::AdminQuery);

/// The service's schema type.
pub type AuthSchema = Schema<Query, Mutation, subscription::SubscriptionRoot>;

fn builder(limits: &GraphqlLimits) -> SchemaBuilder<Query, Mutation, subscription::SubscriptionRoot> {
    let documents = limits::DocumentLimits::new(limits::Limits {
        max_fields: limits.max_fields,
        max_aliases: limits.max_aliases,
        max_recursive_depth: limits.max_recursive_depth,
        max_directives: limits.max_directives,
        introspection: limits.introspection,
    });
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        subscription::SubscriptionRoot,
    )
    .enable_federation()
    // Every concern runs in this one extension (see `pipeline`): each extension more
    // would add its boxed hooks to every request and every field. Its `limits` step
    // parses the document itself and bounds its expansion before anything of
    // async-graphql's walks it, so it takes over the recursion and directive limits too.
    .extension(pipeline::Pipeline::new(documents))
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity);
    if !limits.introspection {
        // `_service { sdl }` keeps working: gateways compose us with introspection off.
        builder = builder.disable_introspection();
    }
    if !limits.suggestions {
        builder = builder.disable_suggestions();
    }
    builder
}

/// Builds the schema served at `/graphql`.
pub fn build_schema(state: AppState) -> AuthSchema {
    let users = DataLoader::new(loader::UserLoader::new(state.auth.clone()), tokio::spawn);
    builder(&state.config.graphql.clone())
        .data(users)
        .data(state)
        .finish()
}

/// The federation SDL, as `authgraph print-schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    // With the variables' defaults (as in development), so printing needs no environment.
    builder(&GraphqlLimits::default())
        .finish()
        .sdl_with_options(SDLExportOptions::new().federation())
}

#[cfg(test)]
mod tests {
    /// `schema.graphql` is generated: regenerate it with `cargo run -- print-schema > schema.graphql`.
    #[test]
    fn schema_file_is_in_sync_with_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        let current = super::sdl();
        if on_disk != current {
            if std::env::var_os("UPDATE_SCHEMA").is_some() {
                std::fs::write(path, &current).expect("writing schema.graphql");
            } else {
                panic!(
                    "schema.graphql is stale: run `just schema` (or UPDATE_SCHEMA=1 cargo test schema_file)"
                );
            }
        }
    }
}
