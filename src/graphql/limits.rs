//! Document limits async-graphql 7 lacks: aliases (the tool of alias-based brute force)
//! and a refusal, with a code, of introspection when it is off.

use std::{collections::HashSet, sync::Arc};

use async_graphql::{
    ErrorExtensionValues, ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

use super::error::code;

/// Refuses documents with too many aliases, or introspection when it is disabled.
pub struct DocumentLimits {
    /// Most aliases per document, fragments expanded.
    pub max_aliases: usize,
    /// Whether `__schema` and `__type` may be queried.
    pub introspection: bool,
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Self {
            max_aliases: self.max_aliases,
            introspection: self.introspection,
        })
    }
}

fn refusal(message: String) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code::VALIDATION_FAILED);
    err.extensions = Some(ext);
    err
}

#[derive(Default)]
struct Tally {
    aliases: usize,
    introspection: bool,
}

fn walk<'a>(
    doc: &'a ExecutableDocument,
    set: &'a SelectionSet,
    tally: &mut Tally,
    active: &mut HashSet<&'a str>,
    budget: usize,
) {
    for item in &set.items {
        if tally.aliases > budget {
            return;
        }
        match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                tally.aliases += usize::from(field.alias.is_some());
                let name = field.name.node.as_str();
                tally.introspection |= name == "__schema" || name == "__type";
                walk(doc, &field.selection_set.node, tally, active, budget);
            }
            Selection::InlineFragment(fragment) => {
                walk(doc, &fragment.node.selection_set.node, tally, active, budget)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                // A cycle is a validation error reported later; here it must not loop.
                if let Some(fragment) = doc.fragments.get(name)
                    && active.insert(name)
                {
                    walk(doc, &fragment.node.selection_set.node, tally, active, budget);
                    active.remove(name);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Extension for DocumentLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let mut tally = Tally::default();
        for (_, op) in doc.operations.iter() {
            walk(
                &doc,
                &op.node.selection_set.node,
                &mut tally,
                &mut HashSet::new(),
                self.max_aliases,
            );
        }
        if tally.aliases > self.max_aliases {
            return Err(refusal(format!(
                "too many aliases: at most {} per request",
                self.max_aliases
            )));
        }
        if tally.introspection && !self.introspection {
            return Err(refusal("introspection is disabled".to_owned()));
        }
        Ok(doc)
    }
}
