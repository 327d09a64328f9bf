//! The HTTP side: the page, its assets and `/api/panels`, over hyper's
//! HTTP/1 server, for loopback clients only.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::assets;
use crate::query::{Dashboard, PanelQuery};

/// `DASHBOARD_PORT` when unset.
pub const DEFAULT_PORT: u16 = 8090;

/// `DASHBOARD_PORT`: a port number, `0` for any free one.
pub fn port_from_env() -> Result<u16, String> {
    match std::env::var("DASHBOARD_PORT") {
        Err(_) => Ok(DEFAULT_PORT),
        Ok(v) if v.trim().is_empty() => Ok(DEFAULT_PORT),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("DASHBOARD_PORT={v:?} is not a port number (0-65535)")),
    }
}

/// Serves until `shutdown` completes. Connections are served concurrently;
/// the database work of `/api/panels` requests is one at a time (one
/// connection).
pub async fn serve(
    listener: TcpListener,
    dashboard: Arc<Dashboard>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pass, then retry.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let dashboard = dashboard.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let dashboard = dashboard.clone();
                async move { Ok::<_, Infallible>(respond(&dashboard, request).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn until_stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

async fn respond(dashboard: &Dashboard, request: Request<Incoming>) -> Response<Full<Bytes>> {
    // A page on another site must not read the database through a browser
    // on this machine (DNS rebinding): only loopback names are served.
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !is_loopback_host(host) {
        return plain(StatusCode::FORBIDDEN, "only loopback host names are served");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    let path = request.uri().path();
    if path == "/api/panels" {
        return panels(dashboard, request.uri().query()).await;
    }
    match assets::lookup(path) {
        Some(asset) => {
            let mut response = Response::new(Full::new(Bytes::from_static(asset.body)));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            secure(response)
        }
        None => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn panels(dashboard: &Dashboard, query: Option<&str>) -> Response<Full<Bytes>> {
    let query = match PanelQuery::parse(query, dashboard.spec()) {
        Ok(q) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match dashboard.panels(&query, chrono::Utc::now()).await {
        Ok(report) => match serde_json::to_vec(&report) {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Err(e) => {
            tracing::warn!(error = %e, "panels unavailable");
            let status = if e.is_transient() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            json_error(status, &e.to_string())
        }
    }
}

/// `127.0.0.1:8090`, `localhost`, `[::1]:8090`, …
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(response)
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({ "error": message })
            .to_string()
            .into_bytes(),
    )
}

fn plain(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(response)
}

/// Everything the page loads is its own (no inline script, no other site).
fn secure(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1:8090",
            "127.0.0.1",
            "localhost:8090",
            "LOCALHOST",
            "[::1]:8090",
            "127.1.2.3:80",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "example.com",
            "evil.example:8090",
            "10.0.0.1:8090",
            "localhost.evil.example",
            "[2001:db8::1]:8090",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
