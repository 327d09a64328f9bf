//! Mappings from the SAM template, so the local runner and AWS share one
//! source of truth.
//!
//! Read: `AWS::Lambda::EventSourceMapping` resources, and also SAM function
//! events of `Type: MSK` / `SelfManagedKafka`. Intrinsics are resolved as far
//! as a template can be without deploying it: `Ref` to a Parameter gives its
//! `Default`, to a resource its logical id; `Sub` substitutes parameter
//! defaults and pseudo parameters; `If` takes the first branch that has a
//! value (conditions are not evaluated); `GetAtt`, `Join`, `Split`, `Select`
//! as written. Both the short tags (`!Ref`) and the long forms (`Ref:`,
//! `Fn::If:`) are understood.
//!
//! Local meaning of the fields:
//! - the function's local name is its `Metadata.BuildProperties.Binary`,
//!   else its logical id lowercased without the `Function` suffix;
//! - mappings that differ only by their `Condition` (MSK vs self-managed)
//!   are one local mapping; the self-managed one is kept (the local broker
//!   is self-managed Kafka);
//! - `DestinationConfig.OnFailure.Destination` `kafka://topic` is that topic,
//!   anything else is `<first topic>.dlq` (see [`on_failure_topic`]);
//! - no `ConsumerGroupId` (AWS then uses the mapping's UUID): `<function>-esm`;
//! - `Enabled: false` mappings are skipped.

use std::path::Path;

use logpipe_kafka::EventSource;
use serde_norway::{Mapping, Value};

use crate::EsmError;
use crate::config::{
    MappingConfig, StartingPosition, on_failure_topic, reports_failures, retry_attempts, window,
};

pub fn load_template(path: &Path) -> Result<Vec<MappingConfig>, EsmError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EsmError::Config(format!("reading {}: {e}", path.display())))?;
    parse_template(&text).map_err(|e| match e {
        EsmError::Config(detail) => EsmError::Config(format!("{}: {detail}", path.display())),
        other => other,
    })
}

pub fn parse_template(text: &str) -> Result<Vec<MappingConfig>, EsmError> {
    let root: Value = serde_norway::from_str(text)
        .map_err(|e| EsmError::Config(format!("not a YAML template: {e}")))?;
    let empty = Mapping::new();
    let template = Template {
        parameters: root
            .get("Parameters")
            .and_then(Value::as_mapping)
            .unwrap_or(&empty),
        resources: root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| EsmError::Config("the template has no Resources".into()))?,
    };
    let mut mappings: Vec<MappingConfig> = Vec::new();
    for (id, resource) in template.resources {
        let id = id.as_str().unwrap_or_default();
        let kind = resource.get("Type").and_then(Value::as_str);
        let props = resource.get("Properties");
        match (kind, props) {
            (Some("AWS::Lambda::EventSourceMapping"), Some(props)) => {
                if let Some(m) = template.esm_resource(id, props)? {
                    merge(&mut mappings, m);
                }
            }
            (Some("AWS::Serverless::Function"), Some(props)) => {
                for m in template.function_events(id, props)? {
                    merge(&mut mappings, m);
                }
            }
            _ => {}
        }
    }
    Ok(mappings)
}

/// Adds a mapping unless one for the same function, topics and group exists
/// (the MSK/self-managed pair); the self-managed one wins.
fn merge(mappings: &mut Vec<MappingConfig>, m: MappingConfig) {
    let same = |o: &MappingConfig| {
        o.function_name == m.function_name
            && o.topics == m.topics
            && o.consumer_group_id == m.consumer_group_id
    };
    match mappings.iter_mut().find(|o| same(o)) {
        Some(existing) => {
            if existing.event_source == EventSource::Msk
                && m.event_source == EventSource::SelfManaged
            {
                *existing = m;
            }
        }
        None => mappings.push(m),
    }
}

struct Template<'a> {
    parameters: &'a Mapping,
    resources: &'a Mapping,
}

/// An intrinsic function: `!Name arg` or `{Name: arg}` / `{"Fn::Name": arg}`.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_string(),
            &t.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            let name = if k == "Ref" {
                "Ref"
            } else {
                k.strip_prefix("Fn::")?
            };
            Some((name.to_string(), arg))
        }
        _ => None,
    }
}

fn pseudo(name: &str) -> Option<&'static str> {
    match name {
        "AWS::Region" => Some("us-east-1"),
        "AWS::AccountId" => Some("123456789012"),
        "AWS::Partition" => Some("aws"),
        "AWS::StackName" => Some("logpipe"),
        "AWS::URLSuffix" => Some("amazonaws.com"),
        _ => None,
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Template<'_> {
    /// A value as a string, or `None` when it has none here (`AWS::NoValue`,
    /// a parameter without default, an unknown construct).
    fn string(&self, v: &Value) -> Option<String> {
        if let Some(s) = scalar(v) {
            return Some(s);
        }
        let (name, arg) = intrinsic(v)?;
        match name.as_str() {
            "Ref" => self.reference(arg.as_str()?),
            "Sub" => {
                let (text, vars) = match arg {
                    Value::Sequence(s) => (s.first()?.as_str()?, s.get(1)),
                    other => (other.as_str()?, None),
                };
                Some(self.substitute(text, vars))
            }
            "If" => {
                let s = arg.as_sequence()?;
                s.get(1)
                    .and_then(|a| self.string(a))
                    .or_else(|| s.get(2).and_then(|b| self.string(b)))
            }
            "GetAtt" => match arg {
                Value::Sequence(s) => {
                    Some(format!("{}.{}", s.first()?.as_str()?, s.get(1)?.as_str()?))
                }
                other => other.as_str().map(str::to_string),
            },
            "Join" => {
                let s = arg.as_sequence()?;
                Some(self.list(s.get(1)?).join(s.first()?.as_str()?))
            }
            "Select" => {
                let s = arg.as_sequence()?;
                let index: usize = self.string(s.first()?)?.parse().ok()?;
                self.list(s.get(1)?).into_iter().nth(index)
            }
            _ => None,
        }
    }

    /// `Ref`: a parameter's default, a pseudo parameter, or a resource's id.
    fn reference(&self, name: &str) -> Option<String> {
        if name == "AWS::NoValue" {
            return None;
        }
        if let Some(p) = pseudo(name) {
            return Some(p.to_string());
        }
        if let Some(param) = self.parameters.get(name) {
            return param.get("Default").and_then(scalar);
        }
        self.resources.get(name).map(|_| name.to_string())
    }

    fn substitute(&self, text: &str, vars: Option<&Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else {
                let value = vars
                    .and_then(|v| v.get(name))
                    .and_then(|v| self.string(v))
                    .or_else(|| self.reference(name))
                    .unwrap_or_else(|| name.to_string());
                out.push_str(&value);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A list: a sequence, `Split`, or a (comma-delimited) string.
    fn list(&self, v: &Value) -> Vec<String> {
        if let Value::Sequence(items) = v {
            return items.iter().filter_map(|i| self.string(i)).collect();
        }
        if let Some((name, arg)) = intrinsic(v) {
            match (name.as_str(), arg.as_sequence()) {
                ("If", Some(s)) => {
                    let first = s.get(1).map(|a| self.list(a)).unwrap_or_default();
                    if !first.is_empty() {
                        return first;
                    }
                    return s.get(2).map(|b| self.list(b)).unwrap_or_default();
                }
                ("Split", Some(s)) => {
                    let (Some(delim), Some(source)) = (s.first().and_then(Value::as_str), s.get(1))
                    else {
                        return Vec::new();
                    };
                    return self
                        .string(source)
                        .map(|t| t.split(delim).map(str::to_string).collect())
                        .unwrap_or_default();
                }
                _ => {}
            }
        }
        self.string(v)
            .map(|s| {
                s.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The local name of the function a `FunctionName` points at.
    fn function_name(&self, v: &Value) -> Option<String> {
        let target = match intrinsic(v) {
            Some((name, arg)) if name == "GetAtt" => self
                .string(v)
                .map(|s| s.split('.').next().unwrap_or_default().to_string())
                .or_else(|| arg.as_str().map(str::to_string)),
            _ => self.string(v),
        }?;
        if let Some(resource) = self.resources.get(target.as_str()) {
            return Some(self.local_function_name(&target, resource));
        }
        // A literal name or ARN (`arn:aws:lambda:region:acct:function:NAME[:alias]`).
        match target.split_once(":function:") {
            Some((_, rest)) => rest.split(':').next().map(str::to_string),
            None => Some(target),
        }
    }

    fn local_function_name(&self, logical_id: &str, resource: &Value) -> String {
        resource
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(|b| self.string(b))
            .unwrap_or_else(|| {
                logical_id
                    .strip_suffix("Function")
                    .filter(|s| !s.is_empty())
                    .unwrap_or(logical_id)
                    .to_ascii_lowercase()
            })
    }

    fn esm_resource(&self, id: &str, props: &Value) -> Result<Option<MappingConfig>, EsmError> {
        if props.get("Enabled").and_then(|e| self.string(e)).as_deref() == Some("false") {
            return Ok(None);
        }
        // Only Kafka mappings (SQS, Kinesis, DynamoDB ones have no Topics).
        if props.get("Topics").is_none() {
            return Ok(None);
        }
        let function = props
            .get("FunctionName")
            .and_then(|f| self.function_name(f))
            .ok_or_else(|| EsmError::Config(format!("{id}: FunctionName does not resolve")))?;
        let self_managed = props.get("SelfManagedEventSource").is_some()
            || props.get("SelfManagedKafkaEventSourceConfig").is_some();
        let msk = !self_managed
            && (props.get("EventSourceArn").is_some()
                || props.get("AmazonManagedKafkaEventSourceConfig").is_some());
        let group = props
            .get("SelfManagedKafkaEventSourceConfig")
            .or_else(|| props.get("AmazonManagedKafkaEventSourceConfig"))
            .and_then(|c| c.get("ConsumerGroupId"))
            .and_then(|g| self.string(g));
        let arn = props.get("EventSourceArn").and_then(|a| self.string(a));
        self.mapping(id, &function, props, msk, group, arn)
            .map(Some)
    }

    /// SAM `Events` of `Type: MSK` (`Stream` is the cluster ARN) or
    /// `SelfManagedKafka`; both carry `ConsumerGroupId` directly.
    fn function_events(&self, id: &str, props: &Value) -> Result<Vec<MappingConfig>, EsmError> {
        let Some(events) = props.get("Events").and_then(Value::as_mapping) else {
            return Ok(Vec::new());
        };
        let resource = self.resources.get(id).unwrap_or(&Value::Null);
        let function = self.local_function_name(id, resource);
        let mut out = Vec::new();
        for (name, event) in events {
            let name = format!("{id}.Events.{}", name.as_str().unwrap_or_default());
            let (Some(kind), Some(p)) = (
                event.get("Type").and_then(Value::as_str),
                event.get("Properties"),
            ) else {
                continue;
            };
            let msk = match kind {
                "MSK" => true,
                "SelfManagedKafka" => false,
                _ => continue,
            };
            if p.get("Enabled").and_then(|e| self.string(e)).as_deref() == Some("false") {
                continue;
            }
            let group = p
                .get("ConsumerGroupId")
                .or_else(|| {
                    p.get("SelfManagedKafkaEventSourceConfig")
                        .or_else(|| p.get("AmazonManagedKafkaEventSourceConfig"))
                        .and_then(|c| c.get("ConsumerGroupId"))
                })
                .and_then(|g| self.string(g));
            let arn = p.get("Stream").and_then(|a| self.string(a));
            out.push(self.mapping(&name, &function, p, msk, group, arn)?);
        }
        Ok(out)
    }

    fn mapping(
        &self,
        id: &str,
        function: &str,
        props: &Value,
        msk: bool,
        group: Option<String>,
        arn: Option<String>,
    ) -> Result<MappingConfig, EsmError> {
        let err = |why: String| EsmError::Config(format!("{id}: {why}"));
        let get = |name: &str| props.get(name).and_then(|v| self.string(v));
        let topics = props
            .get("Topics")
            .map(|t| self.list(t))
            .unwrap_or_default();
        let group = group.unwrap_or_else(|| format!("{function}-esm"));
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let mut c = MappingConfig::new(function, &topic_refs, &group);
        if let Some(n) = get("BatchSize") {
            c.batch_size = n
                .parse()
                .map_err(|_| err(format!("BatchSize {n:?} is not a number")))?;
        }
        if let Some(w) = get("MaximumBatchingWindowInSeconds") {
            let seconds: f64 = w.parse().map_err(|_| {
                err(format!(
                    "MaximumBatchingWindowInSeconds {w:?} is not a number"
                ))
            })?;
            c.batching_window = window(seconds)?;
        }
        if let Some(p) = get("StartingPosition") {
            c.starting_position = StartingPosition::parse(&p).map_err(|e| err(e.to_string()))?;
        }
        let types = props
            .get("FunctionResponseTypes")
            .map(|t| self.list(t))
            .unwrap_or_default();
        c.report_batch_item_failures = reports_failures(&types);
        let retries = match get("MaximumRetryAttempts") {
            Some(n) => Some(
                n.parse::<i64>()
                    .map_err(|_| err(format!("MaximumRetryAttempts {n:?} is not a number")))?,
            ),
            None => None,
        };
        c.maximum_retry_attempts = retry_attempts(retries)?;
        if let Some(destination) = props
            .get("DestinationConfig")
            .and_then(|d| d.get("OnFailure"))
            .and_then(|o| o.get("Destination"))
        {
            let text = self.string(destination).unwrap_or_default();
            c.on_failure_topic = on_failure_topic(&text, &c.topics);
        }
        if msk {
            c.event_source = EventSource::Msk;
            c.event_source_arn = arn.filter(|a| a.starts_with("arn:"));
        }
        c.validate().map_err(|e| err(e.to_string()))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The contract's shape: a Condition picks MSK or self-managed, both map
    /// the same function, topic and group.
    const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  KafkaMode:
    Type: String
    Default: self-managed
    AllowedValues: [msk, self-managed]
  MskClusterArn:
    Type: String
    Default: ""
  IngestTopic:
    Type: String
    Default: log-ingestion
  IngestBatchSize:
    Type: Number
    Default: 100
Conditions:
  UseMsk: !Equals [!Ref KafkaMode, msk]
  UseSelfManaged: !Not [!Condition UseMsk]
Resources:
  IngestFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: ingest
    Properties:
      CodeUri: ../
      Handler: bootstrap
      Runtime: provided.al2023
  DetectFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ../
      Handler: bootstrap
  IngestMskMapping:
    Type: AWS::Lambda::EventSourceMapping
    Condition: UseMsk
    Properties:
      FunctionName: !Ref IngestFunction
      EventSourceArn: !Ref MskClusterArn
      Topics: [!Ref IngestTopic]
      BatchSize: !Ref IngestBatchSize
      MaximumBatchingWindowInSeconds: 0.5
      StartingPosition: TRIM_HORIZON
      FunctionResponseTypes: [ReportBatchItemFailures]
      AmazonManagedKafkaEventSourceConfig:
        ConsumerGroupId: logpipe-ingest
  IngestSelfManagedMapping:
    Type: AWS::Lambda::EventSourceMapping
    Condition: UseSelfManaged
    Properties:
      FunctionName: !Ref IngestFunction
      SelfManagedEventSource:
        Endpoints:
          KafkaBootstrapServers: !Split [",", !Sub "${AWS::NoValue}broker:9092"]
      Topics:
        - !Ref IngestTopic
      BatchSize: !Ref IngestBatchSize
      MaximumBatchingWindowInSeconds: 0.5
      StartingPosition: TRIM_HORIZON
      FunctionResponseTypes:
        - ReportBatchItemFailures
      MaximumRetryAttempts: 5
      DestinationConfig:
        OnFailure:
          Destination: !Sub "kafka://${IngestTopic}.dlq"
      SelfManagedKafkaEventSourceConfig:
        ConsumerGroupId: logpipe-ingest
  DetectMapping:
    Type: AWS::Lambda::EventSourceMapping
    Condition: UseMsk
    Properties:
      FunctionName:
        Fn::GetAtt: [DetectFunction, Arn]
      EventSourceArn: !If [UseMsk, !Ref MskClusterArn, !Ref "AWS::NoValue"]
      Topics: [log-processing]
      BatchSize: 500
      StartingPosition: LATEST
      DestinationConfig:
        OnFailure:
          Destination: !GetAtt FailureQueue.Arn
      AmazonManagedKafkaEventSourceConfig:
        ConsumerGroupId: logpipe-detect
  FailureQueue:
    Type: AWS::SQS::Queue
  OrdersQueueMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref DetectFunction
      EventSourceArn: !GetAtt FailureQueue.Arn
"#;

    #[test]
    fn the_contract_shape_becomes_one_mapping_per_function() {
        let mappings = parse_template(TEMPLATE).unwrap();
        assert_eq!(mappings.len(), 2, "{mappings:#?}");
        let ingest = &mappings[0];
        assert_eq!(ingest.function_name, "ingest");
        assert_eq!(ingest.topics, vec!["log-ingestion".to_string()]);
        assert_eq!(ingest.consumer_group_id, "logpipe-ingest");
        assert_eq!(
            ingest.event_source,
            EventSource::SelfManaged,
            "self-managed wins"
        );
        assert_eq!(ingest.batch_size, 100);
        assert_eq!(ingest.batching_window, Duration::from_millis(500));
        assert!(ingest.report_batch_item_failures);
        assert_eq!(ingest.maximum_retry_attempts, Some(5));
        assert_eq!(
            ingest.on_failure_topic.as_deref(),
            Some("log-ingestion.dlq")
        );

        let detect = &mappings[1];
        assert_eq!(
            detect.function_name, "detect",
            "logical id without Function"
        );
        assert_eq!(detect.topics, vec!["log-processing".to_string()]);
        assert_eq!(detect.consumer_group_id, "logpipe-detect");
        assert_eq!(detect.event_source, EventSource::Msk);
        assert_eq!(detect.event_source_arn, None, "empty default is no ARN");
        assert_eq!(detect.batch_size, 500);
        assert_eq!(detect.starting_position, StartingPosition::Latest);
        assert!(!detect.report_batch_item_failures);
        assert_eq!(detect.maximum_retry_attempts, Some(3), "local default");
        assert_eq!(
            detect.on_failure_topic.as_deref(),
            Some("log-processing.dlq"),
            "a non-Kafka destination maps to <topic>.dlq"
        );
    }

    #[test]
    fn sam_function_events_and_long_forms() {
        let mappings = parse_template(
            r#"
Parameters:
  Topics:
    Type: CommaDelimitedList
    Default: "a,b"
Resources:
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Kafka:
          Type: SelfManagedKafka
          Properties:
            Topics: {"Ref": "Topics"}
            ConsumerGroupId: {"Fn::Sub": "${AWS::StackName}-worker"}
            MaximumRetryAttempts: -1
            KafkaBootstrapServers: ["b:9092"]
        Timer:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 minute)
"#,
        )
        .unwrap();
        assert_eq!(mappings.len(), 1);
        let m = &mappings[0];
        assert_eq!(m.function_name, "worker");
        assert_eq!(m.topics, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(m.consumer_group_id, "logpipe-worker");
        assert_eq!(m.maximum_retry_attempts, None, "-1 retries forever");
    }

    /// The real template (written alongside) must stay readable here.
    #[test]
    fn the_project_template_parses_when_present() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
        if !path.exists() {
            return;
        }
        let mappings = load_template(&path).unwrap();
        for m in &mappings {
            eprintln!("{m:?}");
        }
        let ingest = mappings
            .iter()
            .find(|m| m.function_name == "ingest")
            .expect("a mapping for ingest");
        assert_eq!(ingest.topics, vec!["log-ingestion".to_string()]);
        assert_eq!(ingest.event_source, EventSource::SelfManaged);
    }

    #[test]
    fn bad_values_name_the_resource() {
        let err = parse_template(
            r#"
Resources:
  M:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: f
      Topics: [t]
      BatchSize: 20000
"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("M:"), "{err}");
        assert!(err.to_string().contains("BatchSize 20000"), "{err}");
    }
}
