//! Schemas, compiled once, and payloads decoded with them into JSON.

use std::collections::HashMap;
use std::io::Cursor;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

use crate::error::RegistryError;
use crate::wire::message_indexes;

/// The kind of a schema, as registries name it (`schemaType` /
/// `DataFormat`; Confluent leaves it out for Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

impl SchemaType {
    /// `AVRO`, `PROTOBUF`, `JSON` (any case); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "AVRO" => Some(SchemaType::Avro),
            "PROTOBUF" => Some(SchemaType::Protobuf),
            "JSON" => Some(SchemaType::Json),
            _ => None,
        }
    }

    /// The name the ESM writes into `dataFormat`.
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
        }
    }
}

/// A schema as a registry returns it: its type, its text, and the texts of
/// the schemas it references (Protobuf imports by file name; Avro named
/// types by any name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaText {
    pub schema_type: SchemaType,
    pub text: String,
    pub references: Vec<(String, String)>,
}

impl SchemaText {
    pub fn new(schema_type: SchemaType, text: impl Into<String>) -> Self {
        Self {
            schema_type,
            text: text.into(),
            references: Vec::new(),
        }
    }
}

/// A schema ready to decode payloads.
#[derive(Debug)]
pub enum Schema {
    Avro {
        schema: apache_avro::Schema,
        /// Referenced named types.
        references: Vec<apache_avro::Schema>,
    },
    /// The message types of the main `.proto` file, in declaration order
    /// (the order Confluent's message indexes count in).
    Protobuf { messages: Vec<MessageDescriptor> },
    /// JSON Schema: the payload is JSON text. The schema is not validated
    /// against (the producer's serializer did that).
    Json,
}

/// The name the main Protobuf file gets while compiling (imports resolve
/// against the reference names).
const MAIN_PROTO: &str = "logpipe_registry_main.proto";

impl Schema {
    /// Compiles `text`; `id` only names the schema in errors.
    pub fn compile(id: &str, text: &SchemaText) -> Result<Self, RegistryError> {
        let invalid = |detail: String| RegistryError::Invalid {
            id: id.to_string(),
            detail,
        };
        match text.schema_type {
            SchemaType::Avro => {
                if text.references.is_empty() {
                    let schema = apache_avro::Schema::parse_str(&text.text)
                        .map_err(|e| invalid(format!("Avro schema does not parse: {e}")))?;
                    return Ok(Schema::Avro {
                        schema,
                        references: Vec::new(),
                    });
                }
                let (schema, references) = apache_avro::Schema::parse_str_with_list(
                    &text.text,
                    text.references.iter().map(|(_, t)| t.as_str()),
                )
                .map_err(|e| invalid(format!("Avro schema does not parse: {e}")))?;
                Ok(Schema::Avro { schema, references })
            }
            SchemaType::Protobuf => compile_proto(text).map_err(invalid),
            SchemaType::Json => {
                serde_json::from_str::<Value>(&text.text)
                    .map_err(|e| invalid(format!("JSON Schema is not JSON: {e}")))?;
                Ok(Schema::Json)
            }
        }
    }

    pub fn schema_type(&self) -> SchemaType {
        match self {
            Schema::Avro { .. } => SchemaType::Avro,
            Schema::Protobuf { .. } => SchemaType::Protobuf,
            Schema::Json => SchemaType::Json,
        }
    }

    /// Decodes a payload (after the framing) into a JSON value's text; a
    /// payload that is a string becomes that string itself, so text logs
    /// carried in a schema reach the text parsers. `confluent_protobuf`
    /// says whether message indexes precede a Protobuf message (Confluent
    /// framing) or not (Glue: the first message of the file).
    pub fn decode(
        &self,
        payload: &[u8],
        confluent_protobuf: bool,
    ) -> Result<Vec<u8>, RegistryError> {
        match self {
            Schema::Avro { schema, references } => {
                let mut reader = Cursor::new(payload);
                let builder = apache_avro::reader::datum::GenericDatumReader::builder(schema);
                let datum_reader = if references.is_empty() {
                    builder.build()
                } else {
                    builder
                        .writer_schemata(references.iter().collect())
                        .and_then(|b| b.build())
                };
                let value = datum_reader
                    .and_then(|r| r.read_value(&mut reader))
                    .map_err(|e| {
                        RegistryError::decode(format!(
                            "Avro payload does not match its schema: {e}"
                        ))
                    })?;
                // apache-avro reads a value cut short as nulls: a value
                // that no longer fits its schema was truncated.
                // (Checked for schemas without references.)
                let fits = !references.is_empty() || value.validate(schema);
                if !fits {
                    return Err(RegistryError::decode(
                        "Avro payload is cut short (the record does not fit its schema)",
                    ));
                }
                let read = reader.position() as usize;
                if read != payload.len() {
                    return Err(RegistryError::decode(format!(
                        "Avro payload has {} bytes after the record",
                        payload.len() - read
                    )));
                }
                let json = Value::try_from(value).map_err(|e| {
                    RegistryError::decode(format!("Avro value has no JSON form: {e}"))
                })?;
                Ok(json_text(json))
            }
            Schema::Protobuf { messages } => {
                let (indexes, body) = if confluent_protobuf {
                    message_indexes(payload)?
                } else {
                    (vec![0], payload)
                };
                let descriptor = message_at(messages, &indexes)?;
                let message = DynamicMessage::decode(descriptor, body).map_err(|e| {
                    RegistryError::decode(format!(
                        "Protobuf payload does not match its schema: {e}"
                    ))
                })?;
                let mut out = Vec::new();
                let mut serializer = serde_json::Serializer::new(&mut out);
                // Field names as written in the .proto file (`service_name`,
                // not `serviceName`): what the log's producer called them.
                let options = SerializeOptions::new().use_proto_field_name(true);
                message
                    .serialize_with_options(&mut serializer, &options)
                    .map_err(|e| {
                        RegistryError::decode(format!("Protobuf message has no JSON form: {e}"))
                    })?;
                Ok(out)
            }
            Schema::Json => {
                let text = std::str::from_utf8(payload).map_err(|e| {
                    RegistryError::decode(format!("JSON Schema payload is not UTF-8: {e}"))
                })?;
                match serde_json::from_str::<Value>(text) {
                    Ok(Value::String(s)) => Ok(s.into_bytes()),
                    Ok(_) => Ok(payload.to_vec()),
                    Err(e) => Err(RegistryError::decode(format!(
                        "JSON Schema payload is not JSON: {e}"
                    ))),
                }
            }
        }
    }
}

fn json_text(value: Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.into_bytes(),
        // Serializing a Value cannot fail (its keys are strings).
        other => serde_json::to_vec(&other).unwrap_or_default(),
    }
}

/// The message a Confluent index path names: top-level message, then
/// nested ones.
fn message_at(
    messages: &[MessageDescriptor],
    indexes: &[usize],
) -> Result<MessageDescriptor, RegistryError> {
    let missing = || {
        RegistryError::decode(format!(
            "Protobuf message index {indexes:?} names no message of the schema"
        ))
    };
    let (first, nested) = indexes.split_first().ok_or_else(missing)?;
    let mut current = messages.get(*first).cloned().ok_or_else(missing)?;
    for &i in nested {
        let child = current.child_messages().nth(i).ok_or_else(missing)?;
        current = child;
    }
    Ok(current)
}

/// Resolves imports against the schema's references and Google's
/// well-known types.
struct References(HashMap<String, String>);

impl protox::file::FileResolver for References {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.0.get(name) {
            Some(source) => protox::file::File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

fn compile_proto(text: &SchemaText) -> Result<Schema, String> {
    let mut files: HashMap<String, String> = text.references.iter().cloned().collect();
    files.insert(MAIN_PROTO.to_string(), text.text.clone());
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(References(files));
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler
        .open_file(MAIN_PROTO)
        .map_err(|e| format!("Protobuf schema does not compile: {e}"))?;
    let pool: DescriptorPool = compiler.descriptor_pool();
    let file = pool
        .get_file_by_name(MAIN_PROTO)
        .ok_or_else(|| "Protobuf schema compiled to no file".to_string())?;
    let messages: Vec<MessageDescriptor> = file.messages().collect();
    if messages.is_empty() {
        return Err("Protobuf schema declares no message".into());
    }
    Ok(Schema::Protobuf { messages })
}
