//! The OpenAPI 3.1 document, generated from the handlers and the route table.

use std::sync::LazyLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::routes::{Operations, ROUTES};

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = Operations::openapi();
    document.info.title = "Mandate API".into();
    document.info.version = env!("CARGO_PKG_VERSION").into();
    document.info.description = Some(
        "Scoped, revocable access to payment destinations for orchestrators and their agents. \
         Each operation's `x-principals` lists the credential kinds it admits."
            .into(),
    );
    document.info.license = None;
    document.info.contact = None;
    let components = document.components.get_or_insert_with(Default::default);
    let bearer = Http::builder()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(
            "An API key (mnd_plat_…, mnd_dest_…, mnd_orch_…), an access token, or the admin token",
        ))
        .build();
    components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    for route in ROUTES {
        let principals: Vec<&str> = match route.admits {
            crate::pipeline::Admits::Public => vec!["public"],
            crate::pipeline::Admits::Kinds(kinds)
            | crate::pipeline::Admits::KindsSignedByAgent(kinds) => {
                kinds.iter().map(|kind| kind.as_str()).collect()
            }
        };
        let agent_signature =
            matches!(route.admits, crate::pipeline::Admits::KindsSignedByAgent(_));
        if let Some(operation) = document
            .paths
            .paths
            .get_mut(route.path)
            .and_then(|item| operation_mut(item, route.method))
        {
            let extensions = operation.extensions.get_or_insert_with(Default::default);
            let mut builder = utoipa::openapi::extensions::ExtensionsBuilder::new()
                .add("x-principals", serde_json::json!(principals));
            if agent_signature {
                builder = builder.add("x-agent-signature", serde_json::json!("required"));
            }
            extensions.merge(builder.build());
        }
    }
    document
}

fn operation_mut<'a>(
    item: &'a mut utoipa::openapi::PathItem,
    method: &str,
) -> Option<&'a mut utoipa::openapi::path::Operation> {
    match method {
        "GET" => item.get.as_mut(),
        "POST" => item.post.as_mut(),
        "PATCH" => item.patch.as_mut(),
        "PUT" => item.put.as_mut(),
        "DELETE" => item.delete.as_mut(),
        _ => None,
    }
}

/// utoipa keeps an operation's extensions in a `HashMap`, whose order changes from one run to
/// the next; going through `serde_json::Value` (sorted maps) makes the text reproducible.
fn render() -> String {
    serde_json::to_value(document())
        .and_then(|value| serde_json::to_string_pretty(&value))
        .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
}

static JSON: LazyLock<String> = LazyLock::new(render);

/// The document as pretty JSON, rendered once.
pub fn json() -> &'static str {
    &JSON
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_renders_to_the_same_text_every_time() {
        let first = super::render();
        for _ in 0..20 {
            assert_eq!(super::render(), first);
        }
    }
}
