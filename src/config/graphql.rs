//! Limits on every GraphQL document: `GRAPHQL_MAX_DEPTH`, `GRAPHQL_MAX_COMPLEXITY`,
//! `GRAPHQL_MAX_ALIASES`, `GRAPHQL_MAX_FIELDS`, `GRAPHQL_MAX_DIRECTIVES`,
//! `GRAPHQL_MAX_RECURSIVE_DEPTH` and `GRAPHQL_INTROSPECTION`.

use super::{parse, positive};

/// Limits applied to every GraphQL document.
#[derive(Clone, Debug)]
pub struct GraphqlLimits {
    /// Deepest allowed selection nesting.
    pub max_depth: usize,
    /// Highest allowed complexity (one per field by default).
    pub max_complexity: usize,
    /// Most aliases allowed in one document.
    pub max_aliases: usize,
    /// Most field selections in one document, fragments expanded.
    pub max_fields: usize,
    /// Most directives allowed on one field.
    pub max_directives: usize,
    /// Deepest allowed recursion while walking a document (fragments included).
    pub max_recursive_depth: usize,
    /// Whether the schema can be introspected (`_service` always works).
    pub introspection: bool,
    /// Whether validation errors suggest names ("did you mean").
    pub suggestions: bool,
}

impl Default for GraphqlLimits {
    /// The defaults of every variable, as in development (introspection and
    /// suggestions on): what `from_lookup` falls back to and what the SDL is printed with.
    fn default() -> Self {
        Self {
            max_depth: 10,
            max_complexity: 200,
            max_aliases: 10,
            max_fields: 1000,
            max_directives: 10,
            max_recursive_depth: 32,
            introspection: true,
            suggestions: true,
        }
    }
}

impl GraphqlLimits {
    /// Reads the variables above; outside development (`dev` false) introspection is off
    /// by default and suggestions are off.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>, dev: bool) -> anyhow::Result<Self> {
        let d = Self::default();
        Ok(Self {
            max_depth: positive(get, "GRAPHQL_MAX_DEPTH", d.max_depth)?,
            max_complexity: positive(get, "GRAPHQL_MAX_COMPLEXITY", d.max_complexity)?,
            max_aliases: parse(get, "GRAPHQL_MAX_ALIASES", d.max_aliases)?,
            max_fields: positive(get, "GRAPHQL_MAX_FIELDS", d.max_fields)?,
            max_directives: parse(get, "GRAPHQL_MAX_DIRECTIVES", d.max_directives)?,
            max_recursive_depth: parse(get, "GRAPHQL_MAX_RECURSIVE_DEPTH", d.max_recursive_depth)?,
            introspection: parse(get, "GRAPHQL_INTROSPECTION", dev)?,
            suggestions: dev,
        })
    }
}
