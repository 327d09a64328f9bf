//! The Confluent REST client over real HTTP/1.1 on loopback, against a small
//! server that answers the way the Confluent Schema Registry API documents
//! (`GET /schemas/ids/{id}`, `GET /subjects/{subject}/versions/{version}`,
//! basic auth, `{"error_code": 40403, "message": …}` for an unknown id). No
//! real Confluent registry runs here; this pins the client's side of the
//! protocol: paths, percent-encoding, the Authorization header, reference
//! resolution and how each answer is classified.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use logpipe_registry::confluent::{ConfluentClient, Credentials};
use logpipe_registry::{RegistryError, SchemaType};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const AVRO: &str =
    r#"{"type":"record","name":"Log","fields":[{"name":"message","type":"string"}]}"#;
const AUTH: &str = "Basic cmVnaXN0cnk6czNjcjN0"; // registry:s3cr3t

/// Each request's path and Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves canned answers by path; records what each request asked.
async fn serve(seen: Seen) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut answers: BTreeMap<&str, (u16, String)> = BTreeMap::new();
    answers.insert(
        "/schemas/ids/7",
        (200, serde_json::json!({"schema": AVRO}).to_string()),
    );
    answers.insert(
        "/schemas/ids/8",
        (
            200,
            serde_json::json!({
                "schemaType": "PROTOBUF",
                "schema": "syntax = \"proto3\"; import \"common.proto\"; message Log { Common c = 1; }",
                "references": [{"name": "common.proto", "subject": "common value/v1", "version": 3}]
            })
            .to_string(),
        ),
    );
    answers.insert(
        "/subjects/common%20value%2Fv1/versions/3",
        (200, serde_json::json!({"schemaType": "PROTOBUF", "schema": "syntax = \"proto3\"; message Common { string s = 1; }"}).to_string()),
    );
    answers.insert(
        "/schemas/ids/404",
        (
            404,
            r#"{"error_code":40403,"message":"Schema 404 not found"}"#.into(),
        ),
    );
    answers.insert(
        "/schemas/ids/500",
        (
            500,
            r#"{"error_code":50001,"message":"store error"}"#.into(),
        ),
    );
    answers.insert("/schemas/ids/9", (200, "not json".into()));
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (seen, answers) = (seen.clone(), answers.clone());
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let Ok(Some(request_line)) = lines.next_line().await else {
                    return;
                };
                let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
                let mut auth = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("authorization")
                    {
                        auth = Some(value.trim().to_string());
                    }
                }
                seen.lock().unwrap().push((path.clone(), auth.clone()));
                let (status, body) = if auth.as_deref() != Some(AUTH) {
                    (
                        401,
                        r#"{"error_code":40101,"message":"Unauthorized"}"#.to_string(),
                    )
                } else {
                    answers
                        .get(path.as_str())
                        .cloned()
                        .unwrap_or((404, r#"{"error_code":404}"#.into()))
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = write.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

fn with_auth(url: &str) -> ConfluentClient {
    ConfluentClient::new(
        url,
        Credentials::Static {
            username: "registry".into(),
            password: "s3cr3t".into(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn the_client_speaks_the_registry_protocol() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = serve(seen.clone()).await;
    let client = with_auth(&format!("{url}/"));

    let avro = client.fetch(7).await.unwrap();
    assert_eq!(
        (avro.schema_type, avro.text.as_str()),
        (SchemaType::Avro, AVRO)
    );

    // Protobuf with a reference, fetched by subject (percent-encoded) and version.
    let proto = client.fetch(8).await.unwrap();
    assert_eq!(proto.schema_type, SchemaType::Protobuf);
    assert_eq!(proto.references.len(), 1);
    assert_eq!(proto.references[0].0, "common.proto");
    assert!(proto.references[0].1.contains("message Common"));

    let unknown = client.fetch(404).await.unwrap_err();
    assert!(
        matches!(unknown, RegistryError::Unknown { .. }),
        "{unknown}"
    );
    assert!(!unknown.is_transient());
    let down = client.fetch(500).await.unwrap_err();
    assert!(down.is_transient(), "a 5xx is an outage: {down}");
    let garbage = client.fetch(9).await.unwrap_err();
    assert!(
        matches!(garbage, RegistryError::Invalid { .. }),
        "{garbage}"
    );

    // Every request carried the credentials; the paths are the API's.
    let requests = seen.lock().unwrap().clone();
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/schemas/ids/7",
            "/schemas/ids/8",
            "/subjects/common%20value%2Fv1/versions/3",
            "/schemas/ids/404",
            "/schemas/ids/500",
            "/schemas/ids/9"
        ]
    );
    assert!(requests.iter().all(|(_, a)| a.as_deref() == Some(AUTH)));

    // Refused credentials wait for an operator (transient), never dead-letter.
    let wrong = ConfluentClient::new(&url, Credentials::None).unwrap();
    let refused = wrong.fetch(7).await.unwrap_err();
    assert!(refused.is_transient(), "{refused}");
}

#[tokio::test]
async fn an_unreachable_registry_is_transient() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let e = with_auth(&format!("http://{addr}"))
        .fetch(7)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
}
