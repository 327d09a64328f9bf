//! Schemas shipped with the function: a directory holding one file per
//! schema, named by its id and typed by its extension — `42.avsc` (Avro),
//! `42.proto` (Protobuf), `42.json` (JSON Schema) for Confluent id 42;
//! `<uuid>.avsc` / `<uuid>.json` for a Glue schema version id. A `.proto`
//! file may import the other `.proto` files of the directory by file name.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{RegistryConfigError, RegistryError};
use crate::schema::{SchemaText, SchemaType};

const EXTENSIONS: [(&str, SchemaType); 3] = [
    ("avsc", SchemaType::Avro),
    ("proto", SchemaType::Protobuf),
    ("json", SchemaType::Json),
];

pub struct SchemaDir {
    dir: PathBuf,
}

impl SchemaDir {
    /// The directory must exist (a typo would otherwise dead-letter every
    /// record as `schema_unknown`).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, RegistryConfigError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(RegistryConfigError(format!(
                "SCHEMA_REGISTRY_DIR={} is not a directory",
                dir.display()
            )));
        }
        Ok(Self { dir })
    }

    pub fn fetch(&self, id: &str) -> Result<SchemaText, RegistryError> {
        // An id is digits or a UUID: nothing that could leave the directory.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(RegistryError::Unknown {
                id: id.to_string(),
                detail: "not a schema id".into(),
            });
        }
        for (ext, schema_type) in EXTENSIONS {
            let path = self.dir.join(format!("{id}.{ext}"));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let mut schema = SchemaText::new(schema_type, text);
                    if schema_type == SchemaType::Protobuf {
                        schema.references = self.proto_files(&path);
                    }
                    return Ok(schema);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(RegistryError::Invalid {
                        id: id.to_string(),
                        detail: format!("{} cannot be read: {e}", path.display()),
                    });
                }
            }
        }
        Err(RegistryError::Unknown {
            id: id.to_string(),
            detail: format!(
                "{} has no {id}.avsc, {id}.proto or {id}.json",
                self.dir.display()
            ),
        })
    }

    /// The directory's other `.proto` files, by file name, for imports.
    fn proto_files(&self, main: &Path) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p != main && p.extension().is_some_and(|x| x == "proto"))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.to_string();
                Some((name, std::fs::read_to_string(&p).ok()?))
            })
            .collect()
    }
}
