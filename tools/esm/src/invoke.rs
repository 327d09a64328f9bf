//! How a mapping calls its function: any async function in-process (tests),
//! or the Lambda Invoke API over HTTP (`cargo lambda watch`, or anything
//! else that serves `POST /2015-03-31/functions/{name}/invocations`).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why an invocation did not return a response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    /// The function ran and failed (Lambda's `{errorType, errorMessage}`).
    /// Counts as an attempt against `MaximumRetryAttempts`.
    #[error("the function failed: {error_type}: {error_message}")]
    Function {
        error_type: String,
        error_message: String,
    },
    /// The function could not be reached or did not answer (endpoint down,
    /// still compiling, timeout). Retried with backoff until it answers and
    /// never counted as an attempt: nothing ran, so nothing is given up.
    #[error("could not invoke the function: {0}")]
    Unavailable(String),
}

impl InvokeError {
    pub fn function(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        Self::Function {
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }

    /// The error class put on records sent to the on-failure destination.
    pub fn error_type(&self) -> &str {
        match self {
            Self::Function { error_type, .. } => error_type,
            Self::Unavailable(_) => "Unavailable",
        }
    }
}

/// The target of a mapping. Implemented for every
/// `Fn(Value) -> impl Future<Output = Result<Value, InvokeError>>`, so a test
/// passes an async closure; [`HttpInvoker`] calls a served function.
pub trait Invoke: Send + Sync + 'static {
    /// Calls the function with the event and returns its response JSON.
    fn invoke(&self, payload: Value) -> impl Future<Output = Result<Value, InvokeError>> + Send;
}

impl<F, Fut> Invoke for F
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, InvokeError>> + Send,
{
    fn invoke(&self, payload: Value) -> impl Future<Output = Result<Value, InvokeError>> + Send {
        self(payload)
    }
}

/// Lambda's longest function timeout, plus room for a first `cargo lambda
/// watch` invoke that compiles the function.
const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Calls `POST {endpoint}/2015-03-31/functions/{name}/invocations` over
/// plain HTTP/1.1, one connection per invocation (local use only).
#[derive(Debug, Clone)]
pub struct HttpInvoker {
    authority: String,
    path: String,
    timeout: Duration,
}

impl HttpInvoker {
    /// `endpoint` is `http://host:port` (as `cargo lambda watch
    /// --invoke-address host --invoke-port port` serves it).
    pub fn new(endpoint: &str, function_name: &str) -> Result<Self, InvokeError> {
        let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
            InvokeError::Unavailable(format!(
                "endpoint {endpoint:?} must start with http:// (local Invoke API)"
            ))
        })?;
        let (authority, prefix) = match rest.split_once('/') {
            Some((a, p)) => (a, format!("/{}", p.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        let prefix = prefix.trim_end_matches('/');
        Ok(Self {
            authority: authority.to_string(),
            path: format!("{prefix}/2015-03-31/functions/{function_name}/invocations"),
            timeout: DEFAULT_INVOKE_TIMEOUT,
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn post(&self, body: Vec<u8>) -> Result<(u16, Option<String>, Bytes), String> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", self.authority))?;
        let connection = tokio::spawn(connection);
        let request = Request::post(self.path.as_str())
            .header("host", self.authority.as_str())
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("POST {}: {e}", self.path))?;
        let status = response.status().as_u16();
        let function_error = response
            .headers()
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes();
        connection.abort();
        Ok((status, function_error, body))
    }
}

impl Invoke for HttpInvoker {
    async fn invoke(&self, payload: Value) -> Result<Value, InvokeError> {
        let body = serde_json::to_vec(&payload)
            .map_err(|e| InvokeError::Unavailable(format!("serializing the event: {e}")))?;
        let (status, function_error, body) =
            match tokio::time::timeout(self.timeout, self.post(body)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(detail)) => return Err(InvokeError::Unavailable(detail)),
                Err(_) => {
                    return Err(InvokeError::Unavailable(format!(
                        "no answer within {} s",
                        self.timeout.as_secs()
                    )));
                }
            };
        interpret_response(status, function_error.as_deref(), &body)
    }
}

/// AWS answers a failed function with 200 and `X-Amz-Function-Error`;
/// `cargo lambda watch` (checked with 1.x) answers 500 with the same
/// `{errorType, errorMessage}` body and no header. Both are function errors.
/// Any other non-2xx answer (throttling, unknown function) is the service's.
pub fn interpret_response(
    status: u16,
    function_error: Option<&str>,
    body: &[u8],
) -> Result<Value, InvokeError> {
    let json: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Some(Value::Null)
    } else {
        serde_json::from_slice(body).ok()
    };
    let lambda_error = json.as_ref().and_then(|v| {
        let error_type = v.get("errorType")?.as_str()?;
        let message = v
            .get("errorMessage")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Some(InvokeError::function(error_type, message))
    });
    let text = || String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
    match (status, function_error) {
        (200..=299, None) => json.ok_or_else(|| {
            InvokeError::function("InvalidResponse", format!("not JSON: {}", text()))
        }),
        (200..=299, Some(kind)) => {
            Err(lambda_error.unwrap_or_else(|| InvokeError::function(kind, text())))
        }
        _ => Err(lambda_error
            .unwrap_or_else(|| InvokeError::Unavailable(format!("HTTP {status}: {}", text())))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_classified_like_lambda_does() {
        let ok = interpret_response(200, None, br#"{"batchItemFailures":[]}"#).unwrap();
        assert_eq!(ok["batchItemFailures"], serde_json::json!([]));
        assert_eq!(interpret_response(200, None, b"").unwrap(), Value::Null);
        let aws = interpret_response(
            200,
            Some("Unhandled"),
            br#"{"errorType":"RetryBatch","errorMessage":"db down"}"#,
        );
        assert_eq!(aws, Err(InvokeError::function("RetryBatch", "db down")));
        let watch = interpret_response(
            500,
            None,
            br#"{"errorType":"InvalidInput","errorMessage":"x"}"#,
        );
        assert_eq!(watch, Err(InvokeError::function("InvalidInput", "x")));
        assert!(matches!(
            interpret_response(
                404,
                None,
                br#"{"Type":"User","message":"Function not found"}"#
            ),
            Err(InvokeError::Unavailable(_))
        ));
    }

    /// A one-shot HTTP server that checks the request and gives a canned answer.
    async fn serve_once(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap();
                    if body.len() >= length {
                        break;
                    }
                }
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (endpoint, server)
    }

    #[tokio::test]
    async fn the_invoke_api_is_called_over_http() {
        let (endpoint, server) = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 24\r\n\r\n{\"batchItemFailures\":[]}",
        )
        .await;
        let invoker = HttpInvoker::new(&endpoint, "ingest").unwrap();
        let answer = invoker
            .invoke(serde_json::json!({"eventSource": "SelfManagedKafka"}))
            .await
            .unwrap();
        assert_eq!(answer, serde_json::json!({"batchItemFailures": []}));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /2015-03-31/functions/ingest/invocations HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with("{\"eventSource\":\"SelfManagedKafka\"}"),
            "{request}"
        );

        // cargo lambda watch's answer to a failed function.
        let body = r#"{"errorType":"RetryBatch","errorMessage":"3 records must be retried"}"#;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (endpoint, server) = serve_once(answer).await;
        let error = HttpInvoker::new(&endpoint, "ingest")
            .unwrap()
            .invoke(serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            InvokeError::function("RetryBatch", "3 records must be retried")
        );
        server.await.unwrap();

        // Nobody listening: unavailable, not a function error.
        let closed = HttpInvoker::new(&endpoint, "ingest").unwrap();
        assert!(matches!(
            closed.invoke(serde_json::json!({})).await,
            Err(InvokeError::Unavailable(_))
        ));
    }

    #[test]
    fn endpoints_become_invoke_paths() {
        let i = HttpInvoker::new("http://127.0.0.1:9000", "ingest").unwrap();
        assert_eq!(i.authority, "127.0.0.1:9000");
        assert_eq!(i.path, "/2015-03-31/functions/ingest/invocations");
        let i = HttpInvoker::new("http://localhost:9000/lambda/", "detect").unwrap();
        assert_eq!(i.path, "/lambda/2015-03-31/functions/detect/invocations");
        assert!(HttpInvoker::new("https://lambda.us-east-1.amazonaws.com", "x").is_err());
    }
}
