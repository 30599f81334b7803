//! The GraphiQL page served at `/graphiql` (development by default).
//!
//! Its scripts and stylesheet come from a CDN (unpkg, or `GRAPHIQL_CDN_URL`), so each is
//! pinned to an exact version and carries its Subresource Integrity hash: a CDN (or a
//! mirror) that serves anything else than those bytes gets the asset refused by the
//! browser instead of run with the page's origin, where it could read tokens. The
//! hashes are SHA-384 of the files in the npm registry tarballs of those versions
//! (`npm pack graphiql@4.1.2 react@18.3.1 react-dom@18.3.1`); unpkg serves the same files.

/// Where the assets load from by default.
const GRAPHIQL_DEFAULT_CDN: &str = "https://unpkg.com";

/// One pinned asset: its path in unpkg's layout and its SRI hash.
struct Asset {
    path: &'static str,
    integrity: &'static str,
}

const REACT: Asset = Asset {
    path: "react@18.3.1/umd/react.production.min.js",
    integrity: "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
};
const REACT_DOM: Asset = Asset {
    path: "react-dom@18.3.1/umd/react-dom.production.min.js",
    integrity: "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
};
const GRAPHIQL_CSS: Asset = Asset {
    path: "graphiql@4.1.2/graphiql.min.css",
    integrity: "sha384-1el1QShFBnnXTx9x/Cprg82hZWKt0ry29OAYIXt05swbi0KcZDFoj0CWguMpopJr",
};
const GRAPHIQL_JS: Asset = Asset {
    path: "graphiql@4.1.2/graphiql.min.js",
    integrity: "sha384-9XdHu7ajgGJziD4J1zNBKQ842Q/+zZfDv+ib1eMhZWBH6hPAs806x+Jbcf0yNO6B",
};

/// The GraphiQL page, talking to `/graphql` with the browser's cookies of this origin.
/// With `GRAPHIQL_CDN_URL` (`cdn`) the assets load from that base in unpkg's layout
/// (`{cdn}/graphiql@4.1.2/graphiql.min.js`, ...): the page then makes no request to a
/// third party. (No favicon: an icon from elsewhere would be one, and SRI cannot cover it.)
pub(crate) fn graphiql_page(cdn: Option<&str>) -> String {
    let base = cdn.unwrap_or(GRAPHIQL_DEFAULT_CDN);
    let script = |a: &Asset| {
        format!(
            r#"<script src="{base}/{}" integrity="{}" crossorigin="anonymous"></script>"#,
            a.path, a.integrity
        )
    };
    let (react, react_dom, graphiql) = (script(&REACT), script(&REACT_DOM), script(&GRAPHIQL_JS));
    let css = format!(
        r#"<link rel="stylesheet" href="{base}/{}" integrity="{}" crossorigin="anonymous" />"#,
        GRAPHIQL_CSS.path, GRAPHIQL_CSS.integrity
    );
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="robots" content="noindex">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="referrer" content="origin">
    <title>authgraph</title>
    <style>
      body {{ height: 100%; margin: 0; width: 100%; overflow: hidden; }}
      #graphiql {{ height: 100vh; }}
    </style>
    {react}
    {react_dom}
    {css}
  </head>
  <body>
    <div id="graphiql">Loading...</div>
    {graphiql}
    <script>
      const url = new URL('/graphql', window.location.origin).toString();
      const fetchWithCookies = (input, opts = {{}}) => fetch(input, {{ ...opts, credentials: 'same-origin' }});
      ReactDOM.createRoot(document.getElementById('graphiql')).render(
        React.createElement(GraphiQL, {{
          fetcher: GraphiQL.createFetcher({{ url, fetch: fetchWithCookies }}),
          defaultEditorToolsVisibility: true,
        }})
      );
    </script>
  </body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `<script src>` and `<link href>` of the page, with its tag.
    fn asset_tags(page: &str) -> Vec<&str> {
        page.match_indices('<')
            .map(|(i, _)| &page[i..i + page[i..].find('>').unwrap()])
            .filter(|tag| tag.contains(" src=") || tag.starts_with("<link"))
            .collect()
    }

    #[test]
    fn every_asset_is_pinned_and_carries_its_integrity_hash() {
        for page in [graphiql_page(None), graphiql_page(Some("/graphiql-assets"))] {
            let tags = asset_tags(&page);
            assert_eq!(tags.len(), 4, "{tags:?}");
            for tag in tags {
                assert!(tag.contains(r#" integrity="sha384-"#), "{tag}");
                assert!(tag.contains(r#" crossorigin="anonymous""#), "{tag}");
                // An exact version: `name@1.2.3/`, never a range such as `@18/`.
                let version = tag.split('@').nth(1).and_then(|v| v.split('/').next()).unwrap();
                assert_eq!(version.split('.').count(), 3, "{tag}");
                assert!(version.chars().all(|c| c.is_ascii_digit() || c == '.'), "{tag}");
            }
        }
    }

    #[test]
    fn graphiql_assets_load_from_the_configured_base() {
        let default = graphiql_page(None);
        assert!(default.contains("https://unpkg.com/graphiql@4.1.2/graphiql.min.js"));
        let page = graphiql_page(Some("https://assets.example.com/graphiql"));
        for asset in [
            "/react@18.3.1/umd/react.production.min.js",
            "/react-dom@18.3.1/umd/react-dom.production.min.js",
            "/graphiql@4.1.2/graphiql.min.css",
            "/graphiql@4.1.2/graphiql.min.js",
        ] {
            let url = format!("https://assets.example.com/graphiql{asset}");
            assert!(page.contains(&url), "{url} missing from the page");
        }
        // Every absolute URL points at the configured base.
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
