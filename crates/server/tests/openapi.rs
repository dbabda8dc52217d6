//! The OpenAPI document tells a client what each operation takes and
//! answers: every request body and every response body has a schema that
//! names its fields (a bare `{"type": "object"}` says nothing).

mod support;

use serde_json::{Map, Value};

use support::App;

/// Why `schema` does not describe a body, or `None` when it does. A
/// `$ref` is followed into `components.schemas`; an array must describe
/// its items; an object needs `properties` or `additionalProperties`.
fn undescribed(schema: Option<&Value>, schemas: &Map<String, Value>) -> Option<String> {
    let Some(schema) = schema.and_then(Value::as_object) else {
        return Some("no schema".into());
    };
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return match schemas.get(name) {
            Some(target) => undescribed(Some(target), schemas).map(|why| format!("{name}: {why}")),
            None => Some(format!("{r} is not in components.schemas")),
        };
    }
    if ["allOf", "oneOf", "anyOf"]
        .iter()
        .any(|k| schema.contains_key(*k))
    {
        return None;
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.contains(&"array") {
        return undescribed(schema.get("items"), schemas).map(|why| format!("items: {why}"));
    }
    let is_object = types.is_empty() || types.contains(&"object");
    if is_object
        && !schema.contains_key("properties")
        && !schema.contains_key("additionalProperties")
    {
        return Some(format!(
            "a bare object without properties: {}",
            Value::Object(schema.clone())
        ));
    }
    None
}

#[tokio::test]
async fn every_request_and_response_body_has_a_described_schema() {
    let app = App::new().await;
    let (s, doc, _) = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert!(s.is_success(), "{s}");
    let empty = Map::new();
    let schemas = doc["components"]["schemas"].as_object().unwrap_or(&empty);
    let mut problems = Vec::new();
    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let name = format!(
                "{} ({} {path})",
                op["operationId"].as_str().unwrap_or("?"),
                method.to_uppercase()
            );
            let request = &op["requestBody"];
            if !request.is_null() {
                match request["content"].as_object() {
                    Some(c) if !c.is_empty() => {
                        for (media, content) in c {
                            bodies += 1;
                            if let Some(why) = undescribed(content.get("schema"), schemas) {
                                problems.push(format!("{name}: request body {media}: {why}"));
                            }
                        }
                    }
                    _ => problems.push(format!("{name}: request body without content")),
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                match response["content"].as_object() {
                    Some(c) if !c.is_empty() => {
                        for (media, content) in c {
                            bodies += 1;
                            if let Some(why) = undescribed(content.get("schema"), schemas) {
                                problems.push(format!("{name}: response {status} {media}: {why}"));
                            }
                        }
                    }
                    // An answer without a body: only a 204 (or an error,
                    // whose body is described as problem JSON elsewhere).
                    _ if status.starts_with('2') && status != "204" => {
                        problems.push(format!("{name}: response {status} has no body schema"));
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {bodies} bodies are not described:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(bodies >= 100, "only {bodies} bodies found");
}
