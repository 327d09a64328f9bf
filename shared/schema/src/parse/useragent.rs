//! A cheap user-agent reading for web access logs: browser or client name
//! and version, operating system, device class. Substring rules in the order
//! that matters (Edge and Chrome both say "Safari"), no regular expressions.

use serde_json::Value;

use crate::record::LogRecord;

/// Adds `ua_name`, `ua_version`, `ua_os`, `ua_device` from `http.user_agent`.
pub(crate) fn annotate(r: &mut LogRecord) {
    let Some(ua) = r.http.as_ref().and_then(|h| h.user_agent.as_deref()) else {
        return;
    };
    let Some(parsed) = parse(ua) else {
        return;
    };
    let fields = [
        ("ua_name", Some(parsed.name)),
        ("ua_version", parsed.version),
        ("ua_os", parsed.os.map(str::to_owned)),
        ("ua_device", Some(parsed.device.to_owned())),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            r.attributes.insert(k.into(), Value::from(v));
        }
    }
}

#[derive(Debug, PartialEq)]
pub(crate) struct UserAgent {
    pub name: String,
    pub version: Option<String>,
    pub os: Option<&'static str>,
    pub device: &'static str,
}

const BROWSERS: [(&str, &str); 9] = [
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
    ("MSIE ", "Internet Explorer"),
    ("Trident/", "Internet Explorer"),
];

const BOTS: [&str; 6] = [
    "bot",
    "crawler",
    "spider",
    "slurp",
    "bingpreview",
    "facebookexternalhit",
];

const OSES: [(&str, &str); 8] = [
    ("Windows", "Windows"),
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
];

pub(crate) fn parse(ua: &str) -> Option<UserAgent> {
    let ua = ua.trim();
    if ua.is_empty() || ua == "-" || ua.len() > 1024 {
        return None;
    }
    let lower = ua.to_ascii_lowercase();
    let os = OSES.iter().find(|(k, _)| ua.contains(k)).map(|(_, v)| *v);
    let bot = BOTS.iter().any(|b| lower.contains(b));
    let device = if bot {
        "bot"
    } else if ua.contains("iPad") || ua.contains("Tablet") {
        "tablet"
    } else if ua.contains("Mobile") || ua.contains("iPhone") || ua.contains("Android") {
        "mobile"
    } else if ua.starts_with("Mozilla/") {
        "desktop"
    } else {
        "other"
    };
    if ua.starts_with("Mozilla/") && !bot {
        for (marker, name) in BROWSERS {
            if let Some(i) = ua.find(marker) {
                let after = ua.get(i + marker.len()..).unwrap_or("");
                let version = after
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
                    .next()
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned);
                return Some(UserAgent {
                    name: name.to_owned(),
                    version,
                    os,
                    device,
                });
            }
        }
    }
    // `curl/7.46.0`, `Googlebot/2.1`, `python-requests/2.31.0`: the product
    // token (for a bot inside a Mozilla string, the token naming the bot).
    let token = if bot {
        ua.split([' ', ';', '(', ')', '+'])
            .find(|t| BOTS.iter().any(|b| t.to_ascii_lowercase().contains(b)))
            .unwrap_or(ua)
    } else {
        ua.split(' ').next().unwrap_or(ua)
    };
    let (name, version) = match token.split_once('/') {
        Some((n, v)) => (n, Some(v.to_owned()).filter(|v| !v.is_empty())),
        None => (token, None),
    };
    Some(UserAgent {
        name: name.to_owned(),
        version,
        os,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_agents() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
                "Chrome",
                "124.0.0.0",
                Some("Windows"),
                "desktop",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
                "Edge",
                "124.0.2478.67",
                Some("Windows"),
                "desktop",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
                "Safari",
                "17.4",
                Some("iOS"),
                "mobile",
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
                "Firefox",
                "125.0",
                Some("Linux"),
                "desktop",
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "Googlebot",
                "2.1",
                None,
                "bot",
            ),
            ("curl/7.46.0", "curl", "7.46.0", None, "other"),
        ];
        for (ua, name, version, os, device) in cases {
            let p = parse(ua).unwrap();
            assert_eq!(p.name, name, "{ua}");
            assert_eq!(p.version.as_deref(), Some(version), "{ua}");
            assert_eq!(p.os, os, "{ua}");
            assert_eq!(p.device, device, "{ua}");
        }
        assert_eq!(parse("-"), None);
        assert_eq!(parse(""), None);
    }
}
