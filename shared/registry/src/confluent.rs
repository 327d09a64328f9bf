//! A Confluent-compatible Schema Registry over its REST API:
//! `GET /schemas/ids/{id}` → `{"schema": "...", "schemaType": "AVRO|PROTOBUF|JSON",
//! "references": [{"name", "subject", "version"}]}` (`schemaType` absent
//! means Avro), references read with `GET /subjects/{subject}/versions/{version}`.
//! Basic auth credentials come from a Secrets Manager secret
//! `{"username": "...", "password": "..."}` (Confluent Cloud: the API key and
//! secret), re-read once when the registry refuses them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use logpipe_secrets::SecretsCache;
use serde::Deserialize;

use crate::error::{RegistryConfigError, RegistryError};
use crate::schema::{SchemaText, SchemaType};

/// How long one registry request may take before it counts as an outage.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Schemas larger than this are refused (a misbehaving server must not
/// exhaust memory).
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// References nest at most this deep (a cycle must end).
const MAX_REFERENCE_DEPTH: usize = 8;

/// Where the basic auth credentials come from.
pub enum Credentials {
    None,
    /// Fixed credentials (tests, or a URL with `user:password@`).
    Static {
        username: String,
        password: String,
    },
    /// A Secrets Manager secret `{"username", "password"}`.
    Secret {
        arn: String,
        cache: SecretsCache,
    },
}

#[derive(Deserialize)]
struct BasicAuth {
    username: String,
    password: String,
}

pub struct ConfluentClient {
    base: String,
    credentials: Credentials,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    name: String,
    subject: String,
    version: i64,
}

/// One response, read whole.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl ConfluentClient {
    /// `base_url` is the registry's root (`https://psrc-xxxx.region.aws.confluent.cloud`
    /// or `http://localhost:8081`); a trailing `/` is ignored.
    pub fn new(base_url: &str, credentials: Credentials) -> Result<Self, RegistryConfigError> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RegistryConfigError(format!(
                "SCHEMA_REGISTRY_URL={base_url:?} must start with http:// or https://"
            )));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| RegistryConfigError(format!("no TLS root certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base,
            credentials,
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The schema with this global id.
    pub async fn fetch(&self, id: u32) -> Result<SchemaText, RegistryError> {
        let id_text = id.to_string();
        let response = self
            .get_json(&format!("/schemas/ids/{id}"), &id_text)
            .await?;
        self.resolve(&id_text, response, 0).await
    }

    /// Turns a response into schema text, reading its references (and
    /// theirs) by subject and version.
    async fn resolve(
        &self,
        id: &str,
        response: SchemaResponse,
        depth: usize,
    ) -> Result<SchemaText, RegistryError> {
        let schema_type = match response.schema_type.as_deref() {
            None | Some("") => SchemaType::Avro,
            Some(name) => SchemaType::from_name(name).ok_or_else(|| RegistryError::Invalid {
                id: id.to_string(),
                detail: format!("schemaType {name:?} is not AVRO, PROTOBUF or JSON"),
            })?,
        };
        let mut text = SchemaText::new(schema_type, response.schema);
        for r in response.references {
            if depth >= MAX_REFERENCE_DEPTH {
                return Err(RegistryError::Invalid {
                    id: id.to_string(),
                    detail: format!("references nest deeper than {MAX_REFERENCE_DEPTH}"),
                });
            }
            let path = format!(
                "/subjects/{}/versions/{}",
                encode_path_segment(&r.subject),
                r.version
            );
            let referenced = self.get_json(&path, id).await?;
            let nested = Box::pin(self.resolve(id, referenced, depth + 1)).await?;
            // A reference's own references come first (Avro named types
            // must be known before they are used).
            text.references.extend(nested.references);
            text.references.push((r.name, nested.text));
        }
        Ok(text)
    }

    async fn get_json(&self, path: &str, id: &str) -> Result<SchemaResponse, RegistryError> {
        let mut answer = self.get(path, id, false).await?;
        if matches!(
            answer.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) && matches!(self.credentials, Credentials::Secret { .. })
        {
            // The secret may have been rotated since it was cached.
            answer = self.get(path, id, true).await?;
        }
        let body = String::from_utf8_lossy(&answer.body);
        let unavailable = |detail: String| RegistryError::Unavailable {
            id: id.to_string(),
            detail,
        };
        match answer.status {
            s if s.is_success() => {
                serde_json::from_slice(&answer.body).map_err(|e| RegistryError::Invalid {
                    id: id.to_string(),
                    detail: format!("the registry's answer to GET {path} is not a schema: {e}"),
                })
            }
            StatusCode::NOT_FOUND => Err(RegistryError::Unknown {
                id: id.to_string(),
                detail: format!("GET {path} answered 404: {}", truncate(&body)),
            }),
            // Refused credentials are an operator's problem, not the
            // record's: hand it back rather than dead-letter every record.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(unavailable(format!(
                "GET {path} answered {}: the registry refuses the credentials",
                answer.status
            ))),
            s if s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT
                || s.is_server_error() =>
            {
                Err(unavailable(format!(
                    "GET {path} answered {s}: {}",
                    truncate(&body)
                )))
            }
            s => Err(RegistryError::Unknown {
                id: id.to_string(),
                detail: format!("GET {path} answered {s}: {}", truncate(&body)),
            }),
        }
    }

    async fn get(&self, path: &str, id: &str, refresh: bool) -> Result<Answer, RegistryError> {
        let unavailable = |detail: String| RegistryError::Unavailable {
            id: id.to_string(),
            detail,
        };
        let mut request = Request::get(format!("{}{path}", self.base)).header(
            "accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some(auth) = self.authorization(refresh).await? {
            request = request.header("authorization", auth);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| unavailable(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unavailable(format!("GET {path} failed: {e}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| unavailable(format!("reading the answer to GET {path} failed: {e}")))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unavailable(format!("GET {path} took longer than {REQUEST_TIMEOUT:?}")))?
    }

    async fn authorization(&self, refresh: bool) -> Result<Option<String>, RegistryError> {
        let (username, password) = match &self.credentials {
            Credentials::None => return Ok(None),
            Credentials::Static { username, password } => (username.clone(), password.clone()),
            Credentials::Secret { arn, cache } => {
                let auth: BasicAuth = cache.get_json(arn, refresh).await.map_err(|e| {
                    // An unreadable secret leaves every schema unreadable:
                    // the records wait for an operator, never dead-lettered.
                    RegistryError::Unavailable {
                        id: "-".into(),
                        detail: format!("registry credentials: {e}"),
                    }
                })?;
                (auth.username, auth.password)
            }
        };
        Ok(Some(format!(
            "Basic {}",
            BASE64.encode(format!("{username}:{password}"))
        )))
    }
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Percent-encodes a subject name for a URL path (subjects may hold `/`,
/// `:` or spaces).
fn encode_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_percent_encoded() {
        assert_eq!(encode_path_segment("logs-value"), "logs-value");
        assert_eq!(encode_path_segment("a/b c:d"), "a%2Fb%20c%3Ad");
    }

    #[test]
    fn the_url_must_be_http() {
        assert!(ConfluentClient::new("localhost:8081", Credentials::None).is_err());
        assert!(ConfluentClient::new("http://localhost:8081/", Credentials::None).is_ok());
    }
}
