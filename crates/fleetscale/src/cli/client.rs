//! The CLI's REST client: where the server is and how to authenticate
//! (`Conn`), list paging, API error answers, and the request helpers that
//! show an answer in the chosen output format.

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use super::output::{print_json, print_table, Output};

/// Which page of a list to fetch: the server's default size (100) and the
/// first page unless given.
#[derive(Args, Debug, Clone, Default)]
pub struct PageArgs {
    /// At most this many items (1-1000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// The page after this one: the `next_cursor` of the previous page (a
    /// table prints it as `more: --cursor ...`).
    #[arg(long)]
    pub cursor: Option<String>,
}

impl PageArgs {
    /// These arguments as query parameters.
    pub fn params(&self) -> [(&'static str, Option<String>); 2] {
        [
            ("limit", self.limit.map(|l| l.to_string())),
            ("cursor", self.cursor.clone()),
        ]
    }
}

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
#[error("{status} {title}: {detail}{fields}")]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// Problem title.
    pub title: String,
    /// Problem detail.
    pub detail: String,
    /// Field errors, formatted.
    pub fields: String,
}

/// Where the server is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "FLEETSCALE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Bearer token (else FLEETSCALE_TOKEN, else FLEETSCALE_ADMIN_TOKEN).
    #[arg(long, global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `path?k=v&...` for the parameters that are set.
pub fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let set: Vec<(&str, &str)> = params
        .iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
        .collect();
    if set.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = set
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Conn {
    fn token(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| std::env::var("FLEETSCALE_TOKEN").ok())
            .or_else(|| std::env::var("FLEETSCALE_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let req = match self.token() {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        let status = res.status();
        let text = res.text().await.context("cannot read the answer")?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the server answered with invalid JSON");
        }
        let p: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"detail": text}));
        let fields = p["errors"]
            .as_array()
            .map(|errs| {
                errs.iter()
                    .map(|e| {
                        format!(
                            "\n  {}: {}",
                            e["field"].as_str().unwrap_or("?"),
                            e["rule"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<String>()
            })
            .unwrap_or_default();
        Err(ApiFailure {
            status: status.as_u16(),
            title: p["title"]
                .as_str()
                .unwrap_or(status.canonical_reason().unwrap_or("error"))
                .to_string(),
            detail: p["detail"].as_str().unwrap_or_default().to_string(),
            fields,
        }
        .into())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.trim_end_matches('/'), path)
    }

    /// GET a JSON document.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Client::new().get(self.url(path))).await
    }

    /// POST a JSON body, returning the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Client::new().post(self.url(path)).json(body))
            .await
    }

    /// Sends `body` (unless null) with any method, returning the JSON answer.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let req = reqwest::Client::new().request(method, self.url(path));
        let req = if body.is_null() { req } else { req.json(body) };
        self.send(req).await
    }

    /// DELETEs `path` and reports it: `{"<done>": id}` as JSON, `<done> id`
    /// as text (e.g. done = "deleted").
    pub async fn delete_show(&self, path: &str, done: &str, id: &str) -> anyhow::Result<()> {
        self.send_json(reqwest::Method::DELETE, path, &Value::Null)
            .await?;
        match self.output {
            Output::Json => print_json(&json!({ done: id })),
            Output::Table => println!("{done} {id}"),
        }
        Ok(())
    }

    /// Prints one object as a one-row table or as JSON.
    pub fn show(&self, v: &Value, cols: &[&str]) {
        match self.output {
            Output::Json => print_json(v),
            Output::Table => print_table(std::slice::from_ref(v), cols),
        }
    }

    /// POSTs and shows the answer.
    pub async fn post_show(&self, path: &str, body: &Value, cols: &[&str]) -> anyhow::Result<()> {
        let v = self.post_json(path, body).await?;
        self.show(&v, cols);
        Ok(())
    }

    /// GETs and shows the answer.
    pub async fn get_show(&self, path: &str, cols: &[&str]) -> anyhow::Result<()> {
        let v = self.get_json(path).await?;
        self.show(&v, cols);
        Ok(())
    }

    /// GETs the list page `page` asks for and shows its items (JSON: the
    /// whole page, with `next_cursor`).
    pub async fn list(
        &self,
        path: &str,
        params: &[(&str, Option<String>)],
        page: &PageArgs,
        cols: &[&str],
    ) -> anyhow::Result<()> {
        let mut all = params.to_vec();
        all.extend(page.params());
        let v = self.get_json(&with_query(path, &all)).await?;
        match self.output {
            Output::Json => print_json(&v),
            Output::Table => {
                print_table(
                    v["items"].as_array().map(Vec::as_slice).unwrap_or(&[]),
                    cols,
                );
                if let Some(c) = v["next_cursor"].as_str() {
                    println!("more: --cursor {c}");
                }
            }
        }
        Ok(())
    }
}
