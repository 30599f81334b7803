//! Document limits async-graphql 7 lacks, checked before it validates anything: bracket
//! nesting (its parser recurses on list and object literals without bound, so a deep one
//! overflows the stack), the size of the document with fragments expanded (its validation
//! and execution expand every spread at every use, so fragments spreading the next one
//! twice grow 2^n and exhaust memory), aliases (the tool of alias-based brute force) and
//! a refusal, with a code, of introspection when it is off.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{
    ServerError, ServerResult, ValidationResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation},
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
/// arguments they fill, which `RequestCoercion` does for every request, cached or not.
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
/// cycles or chains too deep, or with introspection when it is disabled.
pub struct DocumentLimits {
    limits: Limits,
    parsed: Arc<ParsedDocuments>,
    /// This request's document text, when the cache may keep its validation verdict.
    query: Mutex<Option<Box<str>>>,
    /// The cached verdict for this request's document.
    validated: Mutex<Option<ValidationResult>>,
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
            parsed: Arc::default(),
            query: Mutex::default(),
            validated: Mutex::default(),
        }
    }
}

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Self {
            limits: self.limits,
            parsed: self.parsed.clone(),
            query: Mutex::default(),
            validated: Mutex::default(),
        })
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

#[async_trait::async_trait]
impl Extension for DocumentLimits {
    /// Parses the document itself instead of calling `next`: async-graphql's own parse
    /// step checks recursion and directive limits by walking every fragment spread at
    /// every use, which is the exponential walk these limits exist to prevent. This
    /// extension must therefore be the innermost one.
    async fn parse_query(
        &self,
        _ctx: &ExtensionContext<'_>,
        query: &str,
        _variables: &Variables,
        _next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(parsed) = self.parsed.get(query) {
            match parsed.validated {
                Some(result) => set(&self.validated, result),
                None => set(&self.query, query.into()),
            }
            return Ok(parsed.doc);
        }
        if !nesting_within(query, MAX_NESTING) {
            return Err(refusal(format!(
                "the document nests brackets more than {MAX_NESTING} deep"
            )));
        }
        let doc = async_graphql::parser::parse_query(query).map_err(|e| match e {
            // Uncoded: `ErrorCodes` codes it and strips the quoted source line.
            async_graphql::parser::Error::Syntax { .. } => ServerError::new(e.to_string(), None),
            // The parser also enforces what the spec calls validation rules (Lone
            // Anonymous Operation, Operation and Fragment Name Uniqueness).
            other => refusal(other.to_string()),
        })?;
        if let Some(why) = self.limits.check(&doc) {
            return Err(refusal(why));
        }
        self.parsed.put(query, &doc);
        set(&self.query, query.into());
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        if let Some(result) = take(&self.validated) {
            return Ok(result);
        }
        let result = next.run(ctx).await;
        if let (Ok(verdict), Some(query)) = (&result, take(&self.query)) {
            self.parsed.validated(&query, *verdict);
        }
        result
    }
}

fn set<T>(slot: &Mutex<Option<T>>, value: T) {
    if let Ok(mut slot) = slot.lock() {
        *slot = Some(value);
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().ok()?.take()
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

    const LIMITS: Limits = Limits {
        max_fields: 1000,
        max_aliases: 10,
        max_recursive_depth: 32,
        max_directives: 10,
        introspection: true,
    };

    fn check(query: &str) -> Option<String> {
        let doc = async_graphql::parser::parse_query(query).expect("the test document parses");
        LIMITS.check(&doc)
    }

    /// `{...F0} fragment F0 on Query{...F1 ...F1} ... fragment Fn on Query{leaf}`.
    fn doubling(levels: usize, leaf: &str) -> String {
        let mut doc = String::from("{...F0}");
        for i in 0..levels {
            doc += &format!(" fragment F{i} on Query{{...F{n} ...F{n}}}", n = i + 1);
        }
        doc += &format!(" fragment F{levels} on Query{{{leaf}}}");
        doc
    }

    #[test]
    fn spread_doubling_is_refused_without_expanding_it() {
        // 2^30 `__typename` selections: the assessment's process-killing request.
        let refused = check(&doubling(30, "__typename")).expect("refused");
        assert!(refused.contains("too many fields"), "{refused}");
        assert!(check(&doubling(30, "me { id }")).is_some());
        // Small expansions still pass: 2^5 = 32 selections.
        assert_eq!(check(&doubling(5, "__typename")), None);
        assert!(check(&doubling(10, "__typename")).is_some(), "1024 > 1000");
    }

    #[test]
    fn fragment_cycles_and_long_chains_are_refused() {
        let cycle = "{...A} fragment A on Query{...B} fragment B on Query{...A}";
        assert!(check(cycle).expect("refused").contains("spreads itself"));
        let own = "{__typename} fragment A on Query{...A}";
        assert!(check(own).is_some(), "an unused cyclic fragment is refused too");
        let chain = |n: usize| {
            let mut doc = String::from("{...F0}");
            for i in 0..n {
                doc += &format!(" fragment F{i} on Query{{...F{}}}", i + 1);
            }
            doc + &format!(" fragment F{n} on Query{{__typename}}")
        };
        assert_eq!(check(&chain(MAX_FRAGMENT_CHAIN - 1)), None);
        assert!(
            check(&chain(MAX_FRAGMENT_CHAIN + 1))
                .expect("refused")
                .contains("deep")
        );
    }

    #[test]
    fn aliases_and_introspection_count_through_fragments() {
        let aliases = "{...A ...A} fragment A on Query{a: __typename b: __typename c: __typename \
            d: __typename e: __typename f: __typename}";
        assert!(check(aliases).expect("refused").contains("aliases"));
        let hidden = "{...A} fragment A on Query{__schema{queryType{name}}}";
        let off = Limits {
            introspection: false,
            ..LIMITS
        };
        let doc = async_graphql::parser::parse_query(hidden).unwrap();
        assert!(off.check(&doc).expect("refused").contains("introspection"));
        assert_eq!(LIMITS.check(&doc), None);
    }

    /// graphql-js's `getIntrospectionQuery()` as GraphiQL sends it: the heaviest document a
    /// legitimate client sends, which the field bound must leave room for.
    const INTROSPECTION: &str = "query IntrospectionQuery { __schema { queryType { name } \
        mutationType { name } subscriptionType { name } types { ...FullType } directives { \
        name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } } } } \
        fragment FullType on __Type { kind name description specifiedByURL isOneOf \
        fields(includeDeprecated: true) { name description args(includeDeprecated: true) { \
        ...InputValue } type { ...TypeRef } isDeprecated deprecationReason } \
        inputFields(includeDeprecated: true) { ...InputValue } interfaces { ...TypeRef } \
        enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason } \
        possibleTypes { ...TypeRef } } \
        fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue \
        isDeprecated deprecationReason } \
        fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { \
        kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name \
        ofType { kind name ofType { kind name } } } } } } } } } }";

    #[test]
    fn the_introspection_query_fits_with_room_to_spare() {
        let doc = async_graphql::parser::parse_query(INTROSPECTION).unwrap();
        let tally = Expansion::new(&doc, 10).document().unwrap();
        assert!(tally.fields * 3 < LIMITS.max_fields, "{} fields", tally.fields);
        assert_eq!(LIMITS.check(&doc), None);
    }

    mod prop {
        use proptest::prelude::*;

        use super::*;

        /// A document of `levels` fragments, each spreading the next `fanout` times
        /// and selecting `width` fields of its own.
        fn spreads(levels: usize, fanout: usize, width: usize) -> String {
            let mut doc = String::from("{...F0}");
            for i in 0..=levels {
                doc += &format!(" fragment F{i} on Query{{");
                doc += &" __typename".repeat(width);
                if i < levels {
                    doc += &format!(" ...F{}", i + 1).repeat(fanout);
                }
                doc += "}";
            }
            doc
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Spread-doubling, spread-heavy and wide documents are measured in steps
            /// linear in their text (an exponential walk would never finish), and refused
            /// exactly when their true expansion is over the bound.
            #[test]
            fn expansion_is_measured_linearly(levels in 0usize..31, fanout in 1usize..40, width in 1usize..40) {
                let text = spreads(levels, fanout, width);
                let doc = async_graphql::parser::parse_query(&text).unwrap();
                let started = std::time::Instant::now();
                let verdict = LIMITS.check(&doc);
                // Generous for a debug build on a loaded machine; exponential would be hours.
                prop_assert!(started.elapsed() < std::time::Duration::from_millis(200));
                // True expansion: sum over levels of width * fanout^i, saturating.
                let mut expected: u128 = 0;
                let mut copies: u128 = 1;
                for _ in 0..=levels {
                    expected = expected.saturating_add(copies * width as u128);
                    copies = copies.saturating_mul(fanout as u128).min(u128::from(u64::MAX));
                }
                let over = expected > LIMITS.max_fields as u128;
                prop_assert_eq!(verdict.is_some(), over, "{} fields: {:?}", expected, verdict);
            }
        }
    }
}
