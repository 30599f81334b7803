//! Unit tests of `limits`.

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
