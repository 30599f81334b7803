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
    Mutex, MutexGuard, PoisonError,
    atomic::{AtomicBool, Ordering},
};

use async_graphql::{
    PathSegment, Response, ServerError, ServerResult, Value,
    context::{QueryPathNode, QueryPathSegment},
    extensions::ResolveInfo,
};

/// What one request's failed fields left to settle. Fields resolve concurrently, so it
/// is shared through `&self`.
#[derive(Default)]
pub(super) struct Failures {
    /// Set once any field failed: the common request pays one load per field.
    failed: AtomicBool,
    settling: Mutex<Settling>,
}

#[derive(Default)]
struct Settling {
    /// Errors of nullable fields answered with null; they join the response's errors.
    nulled: Vec<ServerError>,
    /// Paths of failed non-null fields whose null has not reached a nullable field yet.
    propagating: Vec<Vec<PathSegment>>,
}

/// The facts about a field its result is judged by, taken before it resolves.
#[derive(Clone, Copy)]
pub(super) struct Field<'a> {
    nullable: bool,
    path: &'a QueryPathNode<'a>,
}

impl<'a> Field<'a> {
    /// The field `info` is about to resolve.
    pub(super) fn of(info: &ResolveInfo<'a>) -> Self {
        Self {
            nullable: !info.return_type.ends_with('!'),
            path: info.path_node,
        }
    }
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

impl Settling {
    /// Whether a non-null field under `path` failed; its null stops here if so.
    fn absorb_below(&mut self, path: &[PathSegment]) -> bool {
        let before = self.propagating.len();
        self.propagating.retain(|failed| !failed.starts_with(path));
        self.propagating.len() != before
    }
}

impl Failures {
    fn settling(&self) -> MutexGuard<'_, Settling> {
        // Nothing panics while holding it; a poisoned lock still holds whole values.
        self.settling.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `field` answers, given what its resolver returned.
    pub(super) fn resolved(
        &self,
        field: Field<'_>,
        result: ServerResult<Option<Value>>,
    ) -> ServerResult<Option<Value>> {
        match result {
            Ok(value) => {
                if field.nullable
                    && self.failed.load(Ordering::Relaxed)
                    && self.settling().absorb_below(&path_of(field.path))
                {
                    return Ok(Some(Value::Null));
                }
                Ok(value)
            }
            Err(mut err) => {
                self.failed.store(true, Ordering::Relaxed);
                let path = path_of(field.path);
                if err.path.is_empty() {
                    err.path = path.clone();
                }
                let mut settling = self.settling();
                if field.nullable {
                    settling.nulled.push(err);
                    // Whatever failed below this field ends here too.
                    settling.absorb_below(&path);
                    return Ok(Some(Value::Null));
                }
                settling.propagating.push(path);
                Err(err)
            }
        }
    }

    /// Puts the nulled fields' errors into `response`, and nulls its `data` when a
    /// failed non-null field had no nullable field above it.
    pub(super) fn finish(&self, response: &mut Response) {
        if !self.failed.load(Ordering::Relaxed) {
            return;
        }
        let mut settling = self.settling();
        response.errors.append(&mut settling.nulled);
        // A non-null root field failed: nothing nullable above it but `data` itself.
        if !settling.propagating.is_empty() {
            response.data = Value::Null;
        }
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};

    use crate::graphql::{
        limits::{DocumentLimits, Limits},
        pipeline::Pipeline,
    };

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
        // Through the whole pipeline, as the service runs it.
        let limits = Limits {
            max_fields: 100,
            max_aliases: 10,
            max_recursive_depth: 10,
            max_directives: 10,
            introspection: false,
        };
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(Pipeline::new(DocumentLimits::new(limits)))
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
