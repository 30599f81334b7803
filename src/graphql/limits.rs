//! Document limits async-graphql 7 lacks, checked before it validates anything: bracket
//! nesting (its parser recurses on list and object literals without bound, so a deep one
//! overflows the stack), the size of the document with fragments expanded (its validation
//! and execution expand every spread at every use, so fragments spreading the next one
//! twice grow 2^n and exhaust memory), aliases (the tool of alias-based brute force) and
//! a refusal, with a code, of introspection when it is off.

use std::{collections::HashMap, sync::Mutex};

use async_graphql::{
    ServerError, ServerResult, ValidationResult,
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

use super::code::Code;

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

/// Documents that parsed and passed these limits, by their text, with async-graphql's
/// verdict once one passed its validation. Parsing (async-graphql's pest parser) and
/// validation (twenty-odd rules walking the document) are the costliest steps of a small
/// operation, and a client sends the same few documents again and again: a hit skips
/// both. Validation's only use of variables is checking their values against the
/// arguments they fill, which `coercion` does for every request, cached or not.
/// Bounded in count and size; when full it starts over, which costs one parse per
/// document.
#[derive(Default)]
struct ParsedDocuments(Mutex<HashMap<Box<str>, Parsed>>);

#[derive(Clone)]
struct Parsed {
    doc: ExecutableDocument,
    validated: Option<ValidationResult>,
}

impl ParsedDocuments {
    fn get(&self, query: &str) -> Option<Parsed> {
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
            let parsed = Parsed {
                doc: doc.clone(),
                validated: None,
            };
            map.insert(query.into(), parsed);
        }
    }

    fn validated(&self, query: &str, result: ValidationResult) {
        if let Ok(mut map) = self.0.lock()
            && let Some(parsed) = map.get_mut(query)
        {
            parsed.validated = Some(result);
        }
    }
}

/// Refuses documents whose expansion is too large, with too many aliases, with fragment
/// cycles or chains too deep, or with introspection when it is disabled. One serves
/// every request of a schema, so its cache does too.
pub struct DocumentLimits {
    limits: Limits,
    parsed: ParsedDocuments,
}

/// Where a request's validation verdict comes from, as parsing its document found out.
#[derive(Default)]
pub(super) enum Verdict {
    /// None yet: the document has not parsed.
    #[default]
    Unknown,
    /// The cache had one for the document.
    Cached(ValidationResult),
    /// Validation runs; the cache keeps its verdict for this document text, if it
    /// still holds the document.
    ToKeep(Box<str>),
}

/// The numbers [`DocumentLimits`] enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most field selections in a document once every fragment spread is expanded
    /// (`__typename` included): bounds what validation and execution walk.
    pub max_fields: usize,
    /// Most aliases in a document, fragments expanded.
    pub max_aliases: usize,
    /// Deepest nesting of selection sets, fragments and inline fragments included
    /// (async-graphql's "recursive depth").
    pub max_recursive_depth: usize,
    /// Most directives on one field.
    pub max_directives: usize,
    /// Whether `__schema` and `__type` may be selected.
    pub introspection: bool,
}

/// Longest chain of fragments spreading fragments. Real documents (Relay's included)
/// nest a handful; the bound keeps every walk of the document shallow.
pub const MAX_FRAGMENT_CHAIN: usize = 32;

impl DocumentLimits {
    /// Enforces `limits` on every document before async-graphql validates it.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            parsed: ParsedDocuments::default(),
        }
    }

    /// Parses `query` in place of async-graphql's parse step, which checks recursion and
    /// directive limits by walking every fragment spread at every use: the exponential
    /// walk these limits exist to prevent: the pipeline never runs async-graphql's step.
    pub(super) fn parse(&self, query: &str, verdict: &mut Verdict) -> ServerResult<ExecutableDocument> {
        if let Some(parsed) = self.parsed.get(query) {
            *verdict = match parsed.validated {
                Some(result) => Verdict::Cached(result),
                None => Verdict::ToKeep(query.into()),
            };
            return Ok(parsed.doc);
        }
        if !nesting_within(query, MAX_NESTING) {
            return Err(refusal(format!(
                "the document nests brackets more than {MAX_NESTING} deep"
            )));
        }
        let doc = async_graphql::parser::parse_query(query).map_err(|e| match e {
            // Uncoded: `error::code_parse_failure` codes it and strips the quoted source line.
            async_graphql::parser::Error::Syntax { .. } => ServerError::new(e.to_string(), None),
            // The parser also enforces what the spec calls validation rules (Lone
            // Anonymous Operation, Operation and Fragment Name Uniqueness).
            other => refusal(other.to_string()),
        })?;
        if let Some(why) = self.limits.check(&doc) {
            return Err(refusal(why));
        }
        self.parsed.put(query, &doc);
        *verdict = Verdict::ToKeep(query.into());
        Ok(doc)
    }

    /// The document's validation verdict: the cached one, or what `validate` (which
    /// only runs without one) decides, kept for the next request of the document.
    pub(super) async fn validate(
        &self,
        verdict: Verdict,
        validate: impl Future<Output = Result<ValidationResult, Vec<ServerError>>>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        if let Verdict::Cached(result) = verdict {
            return Ok(result);
        }
        let result = validate.await;
        if let (Ok(result), Verdict::ToKeep(query)) = (&result, verdict) {
            self.parsed.validated(&query, *result);
        }
        result
    }
}

fn refusal(message: String) -> ServerError {
    Code::ValidationFailed.error(message)
}

/// What a selection set amounts to once its fragments are expanded. Counts saturate:
/// a spread-doubling document reaches `usize::MAX` without being walked 2^n times.
#[derive(Clone, Copy, Default)]
struct Tally {
    fields: usize,
    aliases: usize,
    /// Deepest nesting below this selection set.
    depth: usize,
    introspection: bool,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.fields = self.fields.saturating_add(other.fields);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.depth = self.depth.max(other.depth);
        self.introspection |= other.introspection;
    }

    /// This tally seen from one level up.
    fn nested(mut self) -> Self {
        self.depth += 1;
        self
    }
}

/// Measures a document's expansion in time linear in its text: each fragment is
/// measured once and its tally reused at every spread (async-graphql's own validation
/// and execution expand spreads again at each use, which is what must be bounded first).
struct Expansion<'a> {
    doc: &'a ExecutableDocument,
    max_directives: usize,
    measured: HashMap<&'a str, Tally>,
    chain: Vec<&'a str>,
}

impl<'a> Expansion<'a> {
    fn new(doc: &'a ExecutableDocument, max_directives: usize) -> Self {
        Self {
            doc,
            max_directives,
            measured: HashMap::new(),
            chain: Vec::new(),
        }
    }

    fn selection_set(&mut self, set: &'a SelectionSet) -> Result<Tally, String> {
        let mut tally = Tally::default();
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    if field.directives.len() > self.max_directives {
                        return Err(format!(
                            "field `{name}` has more than {} directives",
                            self.max_directives
                        ));
                    }
                    tally.add(Tally {
                        fields: 1,
                        aliases: usize::from(field.alias.is_some()),
                        depth: 0,
                        introspection: name == "__schema" || name == "__type",
                    });
                    let children = &field.selection_set.node;
                    if !children.items.is_empty() {
                        tally.add(self.selection_set(children)?.nested());
                    }
                }
                Selection::InlineFragment(fragment) => {
                    tally.add(self.selection_set(&fragment.node.selection_set.node)?.nested())
                }
                Selection::FragmentSpread(spread) => {
                    tally.add(self.fragment(spread.node.fragment_name.node.as_str())?.nested())
                }
            }
        }
        Ok(tally)
    }

    fn fragment(&mut self, name: &'a str) -> Result<Tally, String> {
        if let Some(tally) = self.measured.get(name) {
            return Ok(*tally);
        }
        if self.chain.contains(&name) {
            return Err(format!("fragment `{name}` spreads itself"));
        }
        if self.chain.len() >= MAX_FRAGMENT_CHAIN {
            return Err(format!(
                "fragments spread fragments more than {MAX_FRAGMENT_CHAIN} deep"
            ));
        }
        // An unknown fragment is validation's to report, with its position.
        let Some((defined, fragment)) = self.doc.fragments.get_key_value(name) else {
            return Ok(Tally::default());
        };
        self.chain.push(defined.as_str());
        let tally = self.selection_set(&fragment.node.selection_set.node)?;
        self.chain.pop();
        self.measured.insert(defined.as_str(), tally);
        Ok(tally)
    }

    /// The whole document: every operation, and every fragment (used or not, since
    /// validation visits each definition).
    fn document(mut self) -> Result<Tally, String> {
        let mut total = Tally::default();
        for (_, op) in self.doc.operations.iter() {
            total.add(self.selection_set(&op.node.selection_set.node)?);
        }
        for name in self.doc.fragments.keys() {
            let unused = self.fragment(name.as_str())?;
            total.introspection |= unused.introspection;
        }
        // Fragments count once per use above; the loop only measured the unused ones.
        Ok(total)
    }
}

impl Limits {
    /// Why `doc` is refused, if it is.
    fn check(&self, doc: &ExecutableDocument) -> Option<String> {
        let tally = match Expansion::new(doc, self.max_directives).document() {
            Ok(tally) => tally,
            Err(why) => return Some(why),
        };
        if tally.fields > self.max_fields {
            return Some(format!(
                "the document selects too many fields: at most {} with fragments expanded",
                self.max_fields
            ));
        }
        if tally.depth > self.max_recursive_depth {
            return Some(format!(
                "the document nests selections and fragments more than {} deep",
                self.max_recursive_depth
            ));
        }
        if tally.aliases > self.max_aliases {
            return Some(format!(
                "too many aliases: at most {} per request",
                self.max_aliases
            ));
        }
        if tally.introspection && !self.introspection {
            return Some("introspection is disabled".to_owned());
        }
        None
    }
}

#[cfg(test)]
mod tests;
