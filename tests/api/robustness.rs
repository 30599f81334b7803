//! A few thousand generated malformed requests through the real router: broken JSON,
//! wrong variable types, huge strings, NUL bytes, deep nesting, unknown fields, token
//! soup. None may panic or answer 500, every error carries a code, and no error echoes a
//! value it was sent.

use axum::{body::Body, http::Request};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Value, json};

use crate::support::{LOGIN, REGISTER, TestApp};

/// Written into values only (never names), so any echo of a value is caught.
const MARKER: &str = "Mkr9Zq";
const REQUESTS: usize = 3000;

const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "...",
    ":",
    ",",
    "=",
    "!",
    "$input",
    "$x",
    "@include(if: true)",
    "@skip",
    "query",
    "mutation",
    "subscription",
    "fragment F on Query",
    "on",
    "me",
    "user",
    "id",
    "email",
    "login",
    "register",
    "input",
    "password",
    "__schema",
    "__type",
    "__typename",
    "_entities",
    "_service",
    "sdl",
    "true",
    "null",
    "1e309",
    "-0",
    "\"Mkr9Zq\"",
    "\"\\u0000\"",
    "\"\\uD800\"",
    "#",
    "\n",
    "\"\"\"Mkr9Zq\"\"\"",
    "a:",
    "b:",
];

fn random_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => format!("{MARKER}\u{0}{MARKER}"),
        1 => format!("{MARKER}@example.com\r\nBcc: x@y.z"),
        2 => format!("{MARKER}{}", "é".repeat(rng.random_range(0..300))),
        3 => format!("{MARKER}{}", "x".repeat(rng.random_range(1000..20_000))),
        4 => (0..rng.random_range(0..40))
            .map(|_| char::from_u32(rng.random_range(0..0x3000)).unwrap_or('\u{fffd}'))
            .chain(MARKER.chars())
            .collect(),
        _ => format!("  {MARKER}@Example.COM  "),
    }
}

fn random_value(rng: &mut StdRng, depth: usize) -> Value {
    match rng.random_range(0..if depth > 4 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(random_string(rng)),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "email",
                "password",
                "displayName",
                "admin",
                "role",
                "id",
                "__proto__",
                "",
            ];
            Value::Object(
                (0..rng.random_range(0..5))
                    .map(|_| {
                        (
                            (*keys.choose(rng).unwrap()).to_owned(),
                            random_value(rng, depth + 1),
                        )
                    })
                    .collect(),
            )
        }
    }
}

fn deep_json(depth: usize) -> String {
    format!("{}{}{}", "[".repeat(depth), MARKER.len(), "]".repeat(depth))
}

fn json_post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/graphql")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn operation(query: &str, variables: Value) -> Request<Body> {
    json_post(json!({ "query": query, "variables": variables }).to_string())
}

fn generate(rng: &mut StdRng) -> Request<Body> {
    let valid =
        json!({ "query": LOGIN, "variables": { "input": { "email": "a@b.co", "password": MARKER } } })
            .to_string()
            .into_bytes();
    match rng.random_range(0..12) {
        // Broken JSON: truncated, or bytes flipped.
        0 => {
            let mut bytes = valid.clone();
            if rng.random_bool(0.5) {
                bytes.truncate(rng.random_range(0..bytes.len()));
            } else {
                for _ in 0..rng.random_range(1..5) {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
            }
            json_post(bytes)
        }
        // Random bytes, invalid UTF-8 included.
        1 => json_post(
            (0..rng.random_range(0..512))
                .map(|_| rng.random::<u8>())
                .collect::<Vec<u8>>(),
        ),
        // Wrong variable types and unknown input fields.
        2 => operation(
            [REGISTER, LOGIN].choose(rng).unwrap(),
            json!({ "input": random_value(rng, 0) }),
        ),
        // Huge strings, under and over the body limit.
        3 => {
            let len = rng.random_range(1_000..80_000);
            let huge = format!("{MARKER}{}", "z".repeat(len));
            let field = *["email", "password", "displayName"].choose(rng).unwrap();
            let mut input = json!({ "email": "a@b.co", "password": MARKER });
            input[field] = json!(huge);
            operation(REGISTER, json!({ "input": input }))
        }
        // NUL bytes and control characters in values, names and documents.
        4 => match rng.random_range(0..3) {
            0 => operation(
                LOGIN,
                json!({ "input": { "email": format!("a\u{0}{MARKER}@b.co"), "password": format!("\u{0}{MARKER}") } }),
            ),
            1 => json_post(
                json!({ "query": format!("{{ me {{ id }} }}\u{0}\"{MARKER}\""), "operationName": "\u{0}" })
                    .to_string(),
            ),
            _ => {
                json_post(json!({ "query": "query Q { __typename }", "operationName": "Q\u{0}" }).to_string())
            }
        },
        // Deep nesting: JSON variables, GraphQL selections, list and object literals.
        5 => match rng.random_range(0..4) {
            0 => json_post(format!(
                r#"{{"query":"{{ __typename }}","variables":{{"x":{}}}}}"#,
                deep_json(rng.random_range(100..20_000))
            )),
            1 => {
                let depth = rng.random_range(11..15_000);
                operation(
                    &format!("{}{}", "{ me ".repeat(depth), "}".repeat(depth)),
                    json!({}),
                )
            }
            2 => {
                let depth = rng.random_range(10..10_000);
                let list = format!("{}\"{MARKER}\"{}", "[".repeat(depth), "]".repeat(depth));
                operation(&format!("{{ user(id: {list}) {{ id }} }}"), json!({}))
            }
            _ => {
                let depth = rng.random_range(10..5_000);
                let object = format!("{}\"{MARKER}\"{}", "{ email: ".repeat(depth), " }".repeat(depth));
                operation(
                    &format!("mutation {{ login(input: {object}) {{ accessToken }} }}"),
                    json!({}),
                )
            }
        },
        // Unknown and mistyped top-level fields.
        6 => {
            let mut body = json!({ "query": "{ __typename }" });
            let key = *[
                "query",
                "variables",
                "operationName",
                "extensions",
                "unknown",
                "id",
            ]
            .choose(rng)
            .unwrap();
            body[key] = random_value(rng, 0);
            if key == "operationName" && body[key].is_string() {
                // A name is echoed in "Unknown operation named ...": it is not a value.
                body[key] = json!("Q\u{1}ü");
            }
            json_post(body.to_string())
        }
        // Token soup documents.
        7 => {
            let soup: Vec<&str> = (0..rng.random_range(1..60))
                .map(|_| *TOKENS.choose(rng).unwrap())
                .collect();
            operation(&soup.join(" "), json!({ "x": MARKER }))
        }
        // Methods, content types and Accept headers.
        8 => {
            let method = *["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "POST"]
                .choose(rng)
                .unwrap();
            let content_type = *[
                "application/json",
                "text/plain",
                "application/graphql",
                "",
                "application/json; charset=latin1",
            ]
            .choose(rng)
            .unwrap();
            let accept = *[
                "*/*",
                "text/html",
                "application/graphql-response+json;q=0",
                "application/json;q=abc",
                "",
            ]
            .choose(rng)
            .unwrap();
            let mut builder = Request::builder()
                .method(method)
                .uri("/graphql")
                .header("accept", accept);
            if !content_type.is_empty() {
                builder = builder.header("content-type", content_type);
            }
            builder.body(Body::from(valid.clone())).unwrap()
        }
        // GET with garbage query strings.
        9 => {
            let garbage: String = (0..rng.random_range(0..200))
                .map(|_| {
                    *[
                        "%",
                        "%zz",
                        "%00",
                        "&",
                        "=",
                        "query",
                        "variables",
                        "{",
                        MARKER,
                        "%7B",
                        "+",
                    ]
                    .choose(rng)
                    .unwrap()
                })
                .collect();
            Request::get(format!("/graphql?{garbage}"))
                .body(Body::empty())
                .unwrap()
        }
        // Plausible logins and registrations with random inputs (the throttle answers most).
        10 => {
            let input = json!({ "email": random_string(rng), "password": random_string(rng), "displayName": random_string(rng) });
            operation([REGISTER, LOGIN].choose(rng).unwrap(), json!({ "input": input }))
        }
        // Broken headers around a valid body.
        _ => Request::post("/graphql")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {MARKER}.{MARKER}.é\t"))
            .header("cookie", format!("refresh_token={MARKER}; refresh_token="))
            .header("x-token-delivery", "cookie, cookie")
            .header("x-forwarded-for", format!("{MARKER}, 1.2.3.4, ::ffff:"))
            .body(Body::from(valid))
            .unwrap(),
    }
}

#[tokio::test]
async fn thousands_of_malformed_requests_get_coded_answers_and_no_500() {
    let app = TestApp::builder().env("HTTP_RATE_LIMIT", "off").spawn().await;
    let mut rng = StdRng::seed_from_u64(0x5eed_ab05e);
    let mut statuses = std::collections::BTreeMap::new();
    for n in 0..REQUESTS {
        let request = generate(&mut rng);
        let described = format!("#{n} {} {}", request.method(), request.uri());
        let response = app.request(request).await;
        *statuses.entry(response.status.as_u16()).or_insert(0) += 1;
        assert!(
            !response.status.is_server_error(),
            "{described}: {} {}",
            response.status,
            response.text.chars().take(300).collect::<String>()
        );
        if let Some(errors) = response.body["errors"].as_array() {
            for error in errors {
                assert!(
                    error["extensions"]["code"].is_string(),
                    "{described}: uncoded {error}"
                );
                let message = error["message"].as_str().unwrap_or("");
                assert!(
                    !message.contains(MARKER),
                    "{described}: echoed a value: {message}"
                );
            }
        }
    }
    // The generator reached every layer: transport refusals, GraphQL errors and successes.
    for status in [200, 400, 405, 413, 415] {
        assert!(statuses.contains_key(&status), "no {status} in {statuses:?}");
    }
}
