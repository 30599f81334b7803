//! The GraphiQL page served at `/graphiql` (development by default).

use async_graphql::http::GraphiQLSource;

/// Where async-graphql's GraphiQL page loads React and GraphiQL from.
const GRAPHIQL_DEFAULT_CDN: &str = "https://unpkg.com";

/// The GraphiQL page. With `GRAPHIQL_CDN_URL` (`cdn`) its scripts and stylesheet load from
/// that base in unpkg's layout (`{cdn}/react@18/umd/react.development.js`,
/// `{cdn}/graphiql@4/graphiql.min.js`, ...) and the graphql.org favicon is left out, so the
/// page makes no request to a third party.
pub(crate) fn graphiql_page(cdn: Option<&str>) -> String {
    let page = GraphiQLSource::build()
        .endpoint("/graphql")
        .title("authgraph")
        .finish();
    let Some(cdn) = cdn else {
        return page;
    };
    page.replace(GRAPHIQL_DEFAULT_CDN, cdn)
        .lines()
        .filter(|line| !line.contains("graphql.org/favicon.ico"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphiql_assets_load_from_the_configured_base() {
        let default = graphiql_page(None);
        assert!(default.contains("https://unpkg.com/graphiql@4/graphiql.min.js"));
        let page = graphiql_page(Some("https://assets.example.com/graphiql"));
        for asset in [
            "/react@18/umd/react.development.js",
            "/react-dom@18/umd/react-dom.development.js",
            "/graphiql@4/graphiql.min.css",
            "/graphiql@4/graphiql.min.js",
        ] {
            let url = format!("https://assets.example.com/graphiql{asset}");
            assert!(page.contains(&url), "{url} missing from the page");
        }
        // Every remaining absolute URL points at the configured base.
        for (i, _) in page.match_indices("https://") {
            assert!(
                page[i..].starts_with("https://assets.example.com/graphiql/"),
                "third-party URL in the page: {}",
                &page[i..(i + 60).min(page.len())]
            );
        }
        assert!(!page.contains("//unpkg.com") && !page.contains("graphql.org"));
    }
}
