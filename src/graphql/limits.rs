//! Document limits async-graphql 7 lacks: bracket nesting (its parser recurses on list and
//! object literals without bound, so a deep one overflows the stack and aborts the
//! process), aliases (the tool of alias-based brute force) and a refusal, with a code,
//! of introspection when it is off.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use async_graphql::{
    ErrorExtensionValues, ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

use super::error::code;

/// Deepest bracket nesting (`{`, `[`, `(`) a document may have before it is parsed. The
/// parser overflows a 2 MiB stack between 200 and 400 levels of list literals in a debug
/// build; real documents stay far below (selections stop at the depth limit).
pub const MAX_NESTING: usize = 64;

/// Whether `query` nests brackets at most `max` deep, strings, block strings and
/// comments skipped. Runs before any parse, in one pass without recursion.
pub fn nesting_within(query: &str, max: usize) -> bool {
    let bytes = query.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    true
}

/// Documents kept parsed, at most.
const CACHED_DOCUMENTS: usize = 256;
/// Longest document kept parsed: clients send a handful of short operations over and
/// over, which is what the cache is for.
const CACHED_DOCUMENT_MAX: usize = 4096;

/// Documents that parsed and passed these limits, by their text. Parsing is the costliest
/// step of a small operation (async-graphql's pest parser), and a client sends the same
/// few documents again and again; a hit skips the parse and the walk. Bounded in count
/// and size; when full it starts over, which costs one parse per document.
#[derive(Default)]
struct ParsedDocuments(Mutex<HashMap<Box<str>, ExecutableDocument>>);

impl ParsedDocuments {
    fn get(&self, query: &str) -> Option<ExecutableDocument> {
        self.0.lock().ok()?.get(query).cloned()
    }

    fn put(&self, query: &str, doc: &ExecutableDocument) {
        if query.len() > CACHED_DOCUMENT_MAX {
            return;
        }
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CACHED_DOCUMENTS {
                map.clear();
            }
            map.insert(query.into(), doc.clone());
        }
    }
}

/// Refuses documents with too many aliases, or introspection when it is disabled.
pub struct DocumentLimits {
    max_aliases: usize,
    introspection: bool,
    parsed: Arc<ParsedDocuments>,
}

impl DocumentLimits {
    /// At most `max_aliases` aliases per document (fragments expanded); `__schema` and
    /// `__type` only when `introspection` is on.
    pub fn new(max_aliases: usize, introspection: bool) -> Self {
        Self {
            max_aliases,
            introspection,
            parsed: Arc::default(),
        }
    }
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Self {
            max_aliases: self.max_aliases,
            introspection: self.introspection,
            parsed: self.parsed.clone(),
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
        if let Some(doc) = self.parsed.get(query) {
            return Ok(doc);
        }
        if !nesting_within(query, MAX_NESTING) {
            return Err(refusal(format!(
                "the document nests brackets more than {MAX_NESTING} deep"
            )));
        }
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
        self.parsed.put(query, &doc);
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_brackets_outside_strings_and_comments() {
        assert!(nesting_within("{ a { b } }", 2));
        assert!(!nesting_within("{ a { b } }", 1));
        assert!(!nesting_within("{ a(x: [[1]]) }", 3));
        assert!(nesting_within(r#"{ a(x: "[[[[{{{{") }"#, 2));
        assert!(nesting_within(r#"{ a(x: "\"[[[") }"#, 2));
        assert!(nesting_within("{ a # [[[[[[\n }", 1));
        assert!(nesting_within(r#"{ a(x: """ [[[[ \""" [[[ """) }"#, 2));
        // Unbalanced or unterminated input is the parser's to refuse, not a panic here.
        assert!(nesting_within("}}}]]] \"", 1));
        assert!(nesting_within("\"\"\"", 1));
        let deep = format!("{{ user(id: {}1{}) {{ id }} }}", "[".repeat(500), "]".repeat(500));
        assert!(!nesting_within(&deep, MAX_NESTING));
    }

    #[test]
    fn the_type_ref_fragment_of_introspection_clients_fits() {
        let type_ref = "fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name \
            ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { \
            kind name ofType { kind name } } } } } } } } }";
        assert!(nesting_within(type_ref, MAX_NESTING));
    }
}
