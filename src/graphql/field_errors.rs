//! Field errors as the GraphQL spec handles them ("Handling Field Errors"): a nullable
//! field that fails *is* null, so its key stays in the response with `null`, and a
//! non-null field that fails makes its nearest nullable parent field null (or `data`,
//! when none is). async-graphql drops a failed field's key instead, which Apollo's iOS
//! and Kotlin codegen reject (`missingValue`) and Apollo Client's cache reads as a
//! missing field to refetch.
//!
//! Nullability is judged per field: an error below a list's element marks the nearest
//! nullable field above it, the list itself when it is nullable.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use async_graphql::{
    PathSegment, Response, ServerError, ServerResult, Value,
    context::{QueryPathNode, QueryPathSegment},
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest, NextResolve, ResolveInfo},
};

/// Installs [`FieldErrors`]; register it inside `ErrorCodes`, so the errors it keeps
/// are coded like any other.
pub struct FieldErrors;

impl ExtensionFactory for FieldErrors {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest::default())
    }
}

#[derive(Default)]
struct PerRequest {
    /// Set once any field failed: the common request pays one load per field.
    failed: AtomicBool,
    /// Errors of nullable fields answered with null; they join the response's errors.
    nulled: Mutex<Vec<ServerError>>,
    /// Paths of failed non-null fields whose null has not reached a nullable field yet.
    propagating: Mutex<Vec<Vec<PathSegment>>>,
}

fn path_of(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path: Vec<PathSegment> = std::iter::once(node)
        .chain(node.parents())
        .map(|n| match n.segment {
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_owned()),
            QueryPathSegment::Index(i) => PathSegment::Index(i),
        })
        .collect();
    path.reverse();
    path
}

impl PerRequest {
    /// Whether a non-null field under `path` failed; its null stops here if so.
    fn absorb_below(&self, path: &[PathSegment]) -> bool {
        let Ok(mut propagating) = self.propagating.lock() else {
            return false;
        };
        let before = propagating.len();
        propagating.retain(|failed| !failed.starts_with(path));
        propagating.len() != before
    }
}

#[async_trait::async_trait]
impl Extension for PerRequest {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        if !self.failed.load(Ordering::Relaxed) {
            return response;
        }
        if let Ok(mut nulled) = self.nulled.lock() {
            response.errors.append(&mut nulled);
        }
        // A non-null root field failed: nothing nullable above it but `data` itself.
        if self.propagating.lock().is_ok_and(|p| !p.is_empty()) {
            response.data = Value::Null;
        }
        response
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let nullable = !info.return_type.ends_with('!');
        let path_node = info.path_node;
        match next.run(ctx, info).await {
            Ok(value) => {
                if nullable && self.failed.load(Ordering::Relaxed) && self.absorb_below(&path_of(path_node)) {
                    return Ok(Some(Value::Null));
                }
                Ok(value)
            }
            Err(mut err) => {
                self.failed.store(true, Ordering::Relaxed);
                let path = path_of(path_node);
                if err.path.is_empty() {
                    err.path = path.clone();
                }
                if nullable {
                    if let Ok(mut nulled) = self.nulled.lock() {
                        nulled.push(err);
                    }
                    // Whatever failed below this field ends here too.
                    self.absorb_below(&path);
                    return Ok(Some(Value::Null));
                }
                if let Ok(mut propagating) = self.propagating.lock() {
                    propagating.push(path);
                }
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};

    use super::*;

    struct Query;

    #[derive(SimpleObject)]
    struct Item {
        id: i32,
        /// Fails, nullable.
        secret: Option<Guarded>,
    }

    struct Guarded;

    #[Object]
    impl Guarded {
        async fn value(&self) -> async_graphql::Result<Option<i32>> {
            Err("forbidden".into())
        }
        async fn strict(&self) -> async_graphql::Result<i32> {
            Err("forbidden".into())
        }
    }

    #[Object]
    impl Query {
        async fn nullable(&self) -> async_graphql::Result<Option<i32>> {
            Err("no".into())
        }
        async fn item(&self) -> Option<Item> {
            Some(Item {
                id: 1,
                secret: Some(Guarded),
            })
        }
        async fn strict(&self) -> async_graphql::Result<i32> {
            Err("no".into())
        }
        async fn ok(&self) -> i32 {
            7
        }
    }

    async fn run(query: &str) -> serde_json::Value {
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(FieldErrors)
            .finish();
        serde_json::to_value(schema.execute(query).await).unwrap()
    }

    #[tokio::test]
    async fn a_failed_nullable_field_keeps_its_key_as_null() {
        let body = run("{ ok nullable item { id secret { value } } }").await;
        assert_eq!(body["data"]["ok"], 7);
        assert!(
            body["data"].as_object().unwrap().contains_key("nullable"),
            "{body}"
        );
        assert_eq!(body["data"]["nullable"], serde_json::Value::Null);
        assert_eq!(body["data"]["item"]["secret"]["value"], serde_json::Value::Null);
        assert!(
            body["data"]["item"]["secret"]
                .as_object()
                .unwrap()
                .contains_key("value")
        );
        assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
        let paths: Vec<_> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].clone())
            .collect();
        assert!(paths.contains(&serde_json::json!(["nullable"])), "{paths:?}");
        assert!(
            paths.contains(&serde_json::json!(["item", "secret", "value"])),
            "{paths:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_non_null_field_nulls_its_nearest_nullable_parent() {
        let body = run("{ ok item { id secret { strict } } }").await;
        assert_eq!(body["data"]["ok"], 7);
        assert_eq!(body["data"]["item"]["id"], 1);
        assert!(
            body["data"]["item"].as_object().unwrap().contains_key("secret"),
            "{body}"
        );
        assert_eq!(body["data"]["item"]["secret"], serde_json::Value::Null, "{body}");
        assert_eq!(
            body["errors"][0]["path"],
            serde_json::json!(["item", "secret", "strict"])
        );
        let root = run("{ ok strict }").await;
        assert_eq!(root["data"], serde_json::Value::Null, "{root}");
        assert_eq!(root["errors"].as_array().unwrap().len(), 1);
    }
}
