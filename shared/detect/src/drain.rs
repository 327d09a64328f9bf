//! Drain-style log template mining (He et al., 2017).
//!
//! Messages are tokenized on whitespace; numbers, hex, UUIDs, IPs,
//! `key=<number>` values, quoted strings, URLs and file paths are
//! pre-masked as `<*>`. A fixed-depth tree routes a message by token
//! count, then by its first `depth − 2` tokens (a node with
//! `max_children` children routes unknown tokens to `<*>`). In the leaf, the
//! most similar cluster with similarity ≥ `sim_threshold` absorbs the
//! message (differing tokens become `<*>`); otherwise a new cluster starts.
//! A cluster's id is a stable FNV-1a hash of its first template and does not
//! change as the template generalizes.
//!
//! At most `max_templates` clusters are kept per miner (one miner per
//! entity). When a new template arrives at the cap, the least recently
//! seen cluster is evicted and counted in [`TemplateMiner::evictions`].
//! Evicting rather than refusing new templates keeps novelty detection
//! working on a stream whose vocabulary drifts (deploys, new features): a
//! full miner that stopped learning would report every later unseen
//! message as new, or none. The price is that an evicted template that
//! comes back is reported as new again, which is what "not seen for the
//! longest time" means anyway.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Alert, Severity};

pub const DETECTOR: &str = "new_template";
pub const PARAM: &str = "<*>";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DrainConfig {
    pub depth: usize,
    pub sim_threshold: f64,
    pub max_children: usize,
    /// New templates are alerted only after this many messages.
    pub warmup_messages: u64,
    /// A template is rare when its count is below this …
    pub rare_count: u64,
    /// … once at least this many messages were seen.
    pub rare_after: u64,
    /// Clusters kept at most; the least recently seen is evicted for a new one.
    #[serde(default = "default_max_templates")]
    pub max_templates: usize,
}

/// Default of [`DrainConfig::max_templates`].
pub const DEFAULT_MAX_TEMPLATES: usize = 1000;

fn default_max_templates() -> usize {
    DEFAULT_MAX_TEMPLATES
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            depth: 4,
            sim_threshold: 0.5,
            max_children: 100,
            warmup_messages: 1000,
            rare_count: 5,
            rare_after: 10_000,
            max_templates: DEFAULT_MAX_TEMPLATES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub tokens: Vec<String>,
    pub count: u64,
    /// [`TemplateMiner::total`] when the cluster last matched (recency for eviction).
    #[serde(default)]
    pub last_seen: u64,
}

impl Cluster {
    pub fn template(&self) -> String {
        self.tokens.join(" ")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Node {
    children: BTreeMap<String, Node>,
    /// Indices into `TemplateMiner::clusters`.
    clusters: Vec<usize>,
}

impl Node {
    /// Drops cluster index `removed`, shifts the indices above it down by
    /// one (the cluster list closed the gap) and prunes empty children.
    fn forget(&mut self, removed: usize) {
        self.clusters.retain(|&i| i != removed);
        for i in &mut self.clusters {
            if *i > removed {
                *i -= 1;
            }
        }
        self.children.retain(|_, child| {
            child.forget(removed);
            !(child.clusters.is_empty() && child.children.is_empty())
        });
    }
}

/// Result of [`TemplateMiner::add`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateMatch {
    pub template_id: String,
    pub template: String,
    pub is_new: bool,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateMiner {
    pub config: DrainConfig,
    pub total: u64,
    pub clusters: Vec<Cluster>,
    /// Clusters evicted at the `max_templates` cap, ever.
    #[serde(default)]
    pub evictions: u64,
    root: Node,
}

impl TemplateMiner {
    pub fn new(config: DrainConfig) -> TemplateMiner {
        TemplateMiner {
            config,
            total: 0,
            clusters: Vec::new(),
            evictions: 0,
            root: Node::default(),
        }
    }

    pub fn add(&mut self, message: &str) -> TemplateMatch {
        self.total = self.total.saturating_add(1);
        let now = self.total;
        let tokens = mask_message(message);
        let prefix_len = self.config.depth.saturating_sub(2).min(tokens.len());
        let max_children = self.config.max_children.max(1);
        let sim_threshold = self.config.sim_threshold;

        // Walk (and grow) the tree: length layer, then prefix tokens. The
        // keys taken are kept so that the walk can be repeated after an
        // eviction pruned part of the path.
        let mut path: Vec<String> = Vec::with_capacity(prefix_len + 1);
        path.push(tokens.len().to_string());
        let mut node = self.root.children.entry(path[0].clone()).or_default();
        for tok in &tokens[..prefix_len] {
            let key = if node.children.contains_key(tok) || node.children.len() + 1 < max_children {
                tok.clone()
            } else {
                PARAM.to_string()
            };
            path.push(key.clone());
            node = node.children.entry(key).or_default();
        }

        let best = node
            .clusters
            .iter()
            .filter_map(|&i| {
                self.clusters
                    .get(i)
                    .map(|c| (i, similarity(&c.tokens, &tokens)))
            })
            .filter(|&(_, s)| s >= sim_threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1));

        if let Some((i, _)) = best
            && let Some(c) = self.clusters.get_mut(i)
        {
            for (t, m) in c.tokens.iter_mut().zip(&tokens) {
                if t != m {
                    *t = PARAM.to_string();
                }
            }
            c.count = c.count.saturating_add(1);
            c.last_seen = now;
            return TemplateMatch {
                template_id: c.id.clone(),
                template: c.template(),
                is_new: false,
                count: c.count,
            };
        }

        // Room for the new cluster (a lowered cap evicts down to it).
        while self.clusters.len() >= self.config.max_templates.max(1) {
            self.evict_least_recent();
        }

        let template = tokens.join(" ");
        let mut id = format!("{:016x}", fnv1a(&template));
        let mut salt = 0u32;
        while self.clusters.iter().any(|c| c.id == id) {
            salt += 1;
            id = format!("{:016x}", fnv1a(&format!("{template}#{salt}")));
        }
        let mut node = &mut self.root;
        for key in path {
            node = node.children.entry(key).or_default();
        }
        node.clusters.push(self.clusters.len());
        self.clusters.push(Cluster {
            id: id.clone(),
            tokens,
            count: 1,
            last_seen: now,
        });
        TemplateMatch {
            template_id: id,
            template,
            is_new: true,
            count: 1,
        }
    }

    /// Removes the least recently seen cluster (the oldest on a tie) and
    /// prunes the tree branches left empty.
    fn evict_least_recent(&mut self) {
        let Some(victim) = self
            .clusters
            .iter()
            .enumerate()
            .min_by_key(|(i, c)| (c.last_seen, *i))
            .map(|(i, _)| i)
        else {
            return;
        };
        self.clusters.remove(victim);
        self.root.forget(victim);
        self.evictions = self.evictions.saturating_add(1);
    }

    pub fn is_warm(&self) -> bool {
        self.total > self.config.warmup_messages
    }

    /// Alert for a template first seen after warm-up.
    pub fn new_template_alert(
        &self,
        m: &TemplateMatch,
        entity: &str,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        record_id: Option<String>,
    ) -> Option<Alert> {
        if !m.is_new || !self.is_warm() {
            return None;
        }
        let mut a = Alert::new(
            DETECTOR,
            Some(&m.template_id),
            Severity::Info,
            entity,
            window_start,
            window_end,
            1.0,
            format!(
                "new message template on {entity} after {} messages: \"{}\"",
                self.total, m.template
            ),
        );
        a.sample_record_ids.extend(record_id);
        Some(a)
    }

    pub fn is_rare(&self, template_id: &str) -> bool {
        self.total >= self.config.rare_after
            && self
                .clusters
                .iter()
                .any(|c| c.id == template_id && c.count < self.config.rare_count)
    }

    pub fn rare_templates(&self) -> Vec<&Cluster> {
        if self.total < self.config.rare_after {
            return Vec::new();
        }
        self.clusters
            .iter()
            .filter(|c| c.count < self.config.rare_count)
            .collect()
    }
}

/// Share of positions where template and message agree (a `<*>` in both
/// counts as agreement). Empty vs empty is 1.
fn similarity(template: &[String], tokens: &[String]) -> f64 {
    if template.len() != tokens.len() {
        return 0.0;
    }
    if tokens.is_empty() {
        return 1.0;
    }
    let same = template.iter().zip(tokens).filter(|(a, b)| a == b).count();
    same as f64 / tokens.len() as f64
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Splits a message into masked tokens: a quoted string (`"..."` or `'...'`
/// opening a token or a `key=` value, spaces included) becomes one `<*>`,
/// then every token goes through [`mask_token`].
pub fn mask_message(message: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut rest = message.trim_start();
    while !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        // where a quote may open: the token's start, or right after `key=`
        let open = match rest[..end].find('=') {
            Some(eq) if rest[eq + 1..].starts_with(['"', '\'']) => Some(eq + 1),
            _ if rest.starts_with(['"', '\'']) => Some(0),
            _ => None,
        };
        let closed = open.and_then(|at| {
            let quote = rest[at..].chars().next()?;
            let close = rest[at + 1..].find(quote)? + at + 1;
            Some((at, close))
        });
        let (token, used) = match closed {
            Some((at, close)) => {
                let after = rest[close + 1..]
                    .find(char::is_whitespace)
                    .map_or(rest.len(), |e| close + 1 + e);
                (
                    format!("{}{PARAM}{}", &rest[..at], &rest[close + 1..after]),
                    after,
                )
            }
            None => (mask_token(&rest[..end]), end),
        };
        tokens.push(token);
        rest = rest[used..].trim_start();
    }
    tokens
}

/// Masks variable-looking tokens: numbers (optionally with a short unit),
/// hex, UUIDs, IPv4/IPv6 (with port), URLs, file paths (a last segment
/// with an extension), and the value of `key=value`.
pub fn mask_token(token: &str) -> String {
    if token.contains("://") {
        // URLs: scheme, host, path and query all vary
        return PARAM.to_string();
    }
    if let Some((k, v)) = token.split_once('=')
        && !k.is_empty()
    {
        return if is_variable(v) {
            format!("{k}={PARAM}")
        } else {
            token.to_string()
        };
    }
    if is_variable(token) {
        PARAM.to_string()
    } else if token.contains('/')
        && token
            .rsplit('/')
            .next()
            .is_some_and(|last| last.len() > 2 && last[1..].contains('.'))
    {
        // file paths: /var/log/app-3.log, ./conf/site.yaml
        PARAM.to_string()
    } else if token.contains('/') {
        // paths: mask variable segments, /api/orders/123 → /api/orders/<*>;
        // a segment with a digit is an id (SKU-50192, v2 stays: too short)
        token
            .split('/')
            .map(|seg| {
                let id_like = seg.len() > 3 && seg.chars().any(|c| c.is_ascii_digit());
                if id_like || is_variable(seg) {
                    PARAM
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    } else if token.chars().any(|c| c.is_ascii_digit()) {
        // ids such as SKU-81827 or order#123: Drain masks any token with a digit
        PARAM.to_string()
    } else {
        token.to_string()
    }
}

fn is_variable(token: &str) -> bool {
    let t = token.trim_matches(|c: char| ",;()[]{}\"'".contains(c));
    if t.is_empty() || !t.chars().any(|c| c.is_ascii_digit()) {
        return false;
    }
    // hex, numbers, uuids, ipv4, ipv6, times: only hex digits and separators
    let hexish = t
        .chars()
        .all(|c| c.is_ascii_hexdigit() || "-+.:_/x%".contains(c));
    // number with a short unit suffix: 15ms, 3s, 10KB
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let unit = &t[digits_end..];
    let with_unit =
        digits_end > 0 && unit.len() <= 3 && unit.chars().all(|c| c.is_ascii_alphabetic());
    hexish || with_unit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Rng, t};

    fn clean_message(rng: &mut Rng) -> String {
        let users = ["alice", "bob", "carol", "dave", "erin"];
        let user = users[rng.below(5) as usize];
        let n = rng.below(100_000);
        match rng.below(5) {
            0 => format!("user {user} logged in from 10.0.{}.{}", n % 256, n % 200),
            1 => format!("GET /api/orders/{n} completed in {}ms", n % 900),
            2 => format!("cache miss key=order:{n} shard={}", n % 16),
            3 => format!(
                "payment {n:08x}{n:08x} authorized for {user} amount={}.{}",
                n % 500,
                n % 100
            ),
            _ => format!(
                "job 3f2a{:04x}-1b2c-4d5e-8f90-a1b2c3d4e5f6 finished status={}",
                n % 65536,
                n % 3
            ),
        }
    }

    #[test]
    fn masking() {
        assert_eq!(mask_token("10.0.0.1:8080"), PARAM);
        assert_eq!(mask_token("0xdeadbeef"), PARAM);
        assert_eq!(mask_token("550e8400-e29b-41d4-a716-446655440000"), PARAM);
        assert_eq!(mask_token("15ms"), PARAM);
        assert_eq!(mask_token("shard=3"), "shard=<*>");
        assert_eq!(mask_token("/api/orders/123"), "/api/orders/<*>");
        assert_eq!(mask_token("user"), "user");
        assert_eq!(mask_token("deadbeef"), "deadbeef"); // no digit: a word
        assert_eq!(mask_token("2001:db8::1"), PARAM);
        assert_eq!(mask_token("https://example.com/a?b=c"), PARAM);
        assert_eq!(mask_token("/var/log/nginx/error.log"), PARAM);
        assert_eq!(mask_token("/api/orders"), "/api/orders"); // a route: kept
        let m = |s: &str| mask_message(s).join(" ");
        assert_eq!(m(r#"open "my file.txt" failed"#), "open <*> failed");
        assert_eq!(m("user='bob smith' denied"), "user=<*> denied");
        assert_eq!(m(r#"said "hi","#), "said <*>,");
        assert_eq!(m("don't stop"), "don't stop"); // an apostrophe, not a quote
        assert_eq!(m(r#"unclosed "quote here"#), r#"unclosed "quote here"#);
    }

    #[test]
    fn templates_differing_only_in_variable_parts_do_not_alert_as_new() {
        let mut m = TemplateMiner::new(DrainConfig::default());
        let lines = [
            r#"GET https://a.example/x?id=1 failed reading "/etc/app one.conf" from 10.0.0.1"#,
            r#"GET http://b.example/y failed reading "/srv/two.conf" from 2001:db8::7"#,
            r#"GET https://c.example/ failed reading 'C:\x y.conf' from 192.168.1.9:443"#,
        ];
        // each line is already the masked template, before any merging
        let seen: Vec<TemplateMatch> = lines.iter().map(|l| m.add(l)).collect();
        for s in &seen {
            assert_eq!(s.template, "GET <*> failed reading <*> from <*>");
            assert_eq!(s.template_id, seen[0].template_id);
        }
        assert!(seen[1..].iter().all(|s| !s.is_new));
        assert_eq!(m.clusters.len(), 1);
        for file in ["/var/log/a.log", "/tmp/b-7.txt", "./c.yaml"] {
            assert_eq!(m.add(&format!("rotated {file}")).template, "rotated <*>");
        }
    }

    #[test]
    fn clean_stream_is_quiet_and_new_template_alerts() {
        let mut m = TemplateMiner::new(DrainConfig::default());
        let mut rng = Rng::new(11);
        let (ws, we) = (t("2026-11-22T10:00:00Z"), t("2026-11-22T10:01:00Z"));
        for _ in 0..1000 {
            m.add(&clean_message(&mut rng));
        }
        let templates: Vec<_> = m.clusters.iter().map(Cluster::template).collect();
        assert!(templates.len() <= 10, "{templates:#?}");
        // 0 new-template alerts over 5,000 clean messages after warm-up.
        for _ in 0..5000 {
            let msg = clean_message(&mut rng);
            let r = m.add(&msg);
            assert!(
                m.new_template_alert(&r, "api", ws, we, None).is_none(),
                "{msg}"
            );
        }
        let r = m.add("disk failure detected on /dev/sda1 controller 3");
        assert!(r.is_new);
        let a = m
            .new_template_alert(&r, "api", ws, we, Some("logs-0-1-0".into()))
            .unwrap();
        assert!(a.message.contains("new message template"));
        assert!(a.id.starts_with("new_template."));
        // rare templates, and state survives persistence
        let mut m2: TemplateMiner =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(m2, m);
        m2.config.rare_after = 0;
        assert!(m2.is_rare(&r.template_id));
        assert_eq!(m2.rare_templates().len(), 1);
        let again = m2.add("disk failure detected on /dev/sdb2 controller 7");
        assert_eq!(
            (again.template_id, again.is_new, again.count),
            (r.template_id, false, 2)
        );
    }

    #[test]
    fn merges_variable_words_and_keeps_id() {
        let mut m = TemplateMiner::new(DrainConfig::default());
        let a = m.add("connection closed by peer alice");
        let b = m.add("connection closed by peer bob");
        assert_eq!(a.template_id, b.template_id);
        assert_eq!(b.template, "connection closed by peer <*>");
        assert!(m.add("").is_new);
        assert!(!m.add("   ").is_new);
    }

    fn node_count(n: &Node) -> usize {
        1 + n.children.values().map(node_count).sum::<usize>()
    }

    /// Every cluster index in the tree points at a cluster, once.
    fn indices(n: &Node, out: &mut Vec<usize>) {
        out.extend(&n.clusters);
        for c in n.children.values() {
            indices(c, out);
        }
    }

    #[test]
    fn cap_evicts_the_least_recently_seen_template() {
        let mut m = TemplateMiner::new(DrainConfig {
            max_templates: 3,
            ..DrainConfig::default()
        });
        let a = m.add("alpha");
        let b = m.add("beta gamma");
        let c = m.add("delta epsilon zeta");
        assert_eq!(m.evictions, 0);
        // alpha is seen again: beta gamma is now the least recent
        assert!(!m.add("alpha").is_new);
        let d = m.add("eta theta iota kappa");
        assert!(d.is_new);
        assert_eq!((m.clusters.len(), m.evictions), (3, 1));
        let kept: Vec<&str> = m.clusters.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(kept, [&a.template_id, &c.template_id, &d.template_id]);
        // the survivors are still found through the tree
        for (msg, id) in [
            ("alpha", &a.template_id),
            ("delta epsilon zeta", &c.template_id),
            ("eta theta iota kappa", &d.template_id),
        ] {
            let r = m.add(msg);
            assert_eq!((&r.template_id, r.is_new), (id, false), "{msg}");
        }
        // the evicted one comes back as new, evicting the least recent (alpha)
        let b2 = m.add("beta gamma");
        assert!(b2.is_new);
        assert_eq!(b2.template_id, b.template_id, "same template, same id");
        assert_eq!(m.evictions, 2);
        assert!(m.clusters.iter().all(|c| c.id != a.template_id));
        let mut idx = Vec::new();
        indices(&m.root, &mut idx);
        idx.sort_unstable();
        assert_eq!(idx, [0, 1, 2]);
        // a lowered cap (settings changed) evicts down to it on the next new template
        m.config.max_templates = 1;
        assert!(m.add("lambda mu nu xi omicron").is_new);
        assert_eq!((m.clusters.len(), m.evictions), (1, 5));
        assert_eq!(
            node_count(&m.root),
            1 + 1 + 2,
            "root, length, two prefix nodes"
        );
    }

    #[test]
    fn high_cardinality_stream_stays_bounded() {
        let mut m = TemplateMiner::new(DrainConfig {
            max_templates: 50,
            ..DrainConfig::default()
        });
        let mut rng = Rng::new(3);
        let word = |rng: &mut Rng| -> String {
            (0..8)
                .map(|_| char::from(b'a' + rng.below(26) as u8))
                .collect()
        };
        let mut new = 0u64;
        for _ in 0..5000 {
            let msg = format!("{} {} {}", word(&mut rng), word(&mut rng), word(&mut rng));
            new += u64::from(m.add(&msg).is_new);
            assert!(m.clusters.len() <= 50);
        }
        assert_eq!(m.evictions, new - 50);
        assert!(node_count(&m.root) <= 2 + 50 * 2, "{}", node_count(&m.root));
        let mut idx = Vec::new();
        indices(&m.root, &mut idx);
        idx.sort_unstable();
        assert_eq!(idx, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn state_saved_before_the_cap_still_loads() {
        let mut m = TemplateMiner::new(DrainConfig::default());
        m.add("connection closed by peer alice");
        let mut v = serde_json::to_value(&m).unwrap();
        v.as_object_mut().unwrap().remove("evictions");
        v["config"].as_object_mut().unwrap().remove("max_templates");
        v["clusters"][0]
            .as_object_mut()
            .unwrap()
            .remove("last_seen");
        let back: TemplateMiner = serde_json::from_value(v).unwrap();
        assert_eq!(back.config.max_templates, DEFAULT_MAX_TEMPLATES);
        assert_eq!((back.evictions, back.clusters[0].last_seen), (0, 0));
    }
}
