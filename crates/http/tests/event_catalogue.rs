//! The event catalogue is one list in the domain; its table in docs/webhooks.md and the
//! OpenAPI document's `webhooks` section are checked against it.

use mandate_domain::events::EventType;

const WEBHOOKS_GUIDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/webhooks.md");
const BEGIN: &str = "<!-- event-types:begin (generated from the domain's event catalogue) -->";
const END: &str = "<!-- event-types:end -->";

/// The table as the catalogue makes it.
fn table() -> String {
    let mut table = String::from(
        "| type | who may subscribe | `data.object` | what happened |\n|---|---|---|---|\n",
    );
    for event_type in EventType::ALL {
        let subscribers: Vec<&str> = event_type
            .subscribers()
            .iter()
            .map(|kind| kind.as_str())
            .collect();
        table.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            event_type.as_str(),
            subscribers.join(", "),
            event_type.object().as_str(),
            event_type.description()
        ));
    }
    table
}

#[test]
fn the_webhooks_guide_lists_the_catalogue() {
    let guide = std::fs::read_to_string(WEBHOOKS_GUIDE).unwrap_or_default();
    let written = guide
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(table, _)| table.trim());
    let expected = table();
    assert!(
        written == Some(expected.trim()),
        "the event-type table of docs/webhooks.md differs from the catalogue \
         (mandate_domain::events); between the markers it should read:\n\n{BEGIN}\n{expected}{END}"
    );
}

#[test]
fn the_document_has_one_webhook_per_event_type() {
    let document = mandate_http::openapi::document("https://pay.example.com");
    let webhooks = document["webhooks"]
        .as_object()
        .unwrap_or_else(|| panic!("no webhooks"));
    let names: Vec<&str> = webhooks.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for event_type in EventType::ALL {
        let post = &webhooks[event_type.as_str()]["post"];
        let headers: Vec<&str> = post["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|parameter| parameter["in"] == "header" && parameter["required"] == true)
            .filter_map(|parameter| parameter["name"].as_str())
            .collect();
        assert_eq!(
            headers,
            ["webhook-id", "webhook-timestamp", "webhook-signature"],
            "{}",
            event_type.as_str()
        );
        let body = &post["requestBody"]["content"]["application/json"]["schema"]["allOf"][1];
        assert_eq!(
            body["properties"]["type"]["enum"][0],
            event_type.as_str(),
            "the body names its type"
        );
        assert!(
            body["properties"]["data"]["properties"]["object"]["$ref"]
                .as_str()
                .is_some_and(|reference| reference.starts_with("#/components/schemas/")),
            "{}: data.object has a schema",
            event_type.as_str()
        );
        assert_eq!(
            post["x-subscribers"].as_array().map(Vec::len),
            Some(event_type.subscribers().len())
        );
    }
}
