//! The page and what it loads, embedded at build time: the binary serves
//! them with no files beside it.

/// One served file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Path → file. uPlot 1.6.32 (MIT), unmodified from its npm package
/// (assets/vendor/uplot/README.md).
const ASSETS: &[(&str, Asset)] = &[
    (
        "/",
        Asset {
            body: include_str!("../assets/index.html").as_bytes(),
            content_type: "text/html; charset=utf-8",
        },
    ),
    (
        "/assets/dashboard.js",
        Asset {
            body: include_bytes!("../assets/dashboard.js"),
            content_type: JS,
        },
    ),
    (
        "/assets/dashboard.css",
        Asset {
            body: include_bytes!("../assets/dashboard.css"),
            content_type: CSS,
        },
    ),
    (
        "/assets/vendor/uplot/uPlot.iife.min.js",
        Asset {
            body: include_bytes!("../assets/vendor/uplot/uPlot.iife.min.js"),
            content_type: JS,
        },
    ),
    (
        "/assets/vendor/uplot/uPlot.min.css",
        Asset {
            body: include_bytes!("../assets/vendor/uplot/uPlot.min.css"),
            content_type: CSS,
        },
    ),
    (
        "/assets/vendor/uplot/LICENSE",
        Asset {
            body: include_bytes!("../assets/vendor/uplot/LICENSE"),
            content_type: "text/plain; charset=utf-8",
        },
    ),
];

pub fn lookup(path: &str) -> Option<Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_what_is_served() {
        let page = std::str::from_utf8(lookup("/").expect("index").body).expect("UTF-8");
        for src in page
            .split(['"', '\''])
            .filter(|s| s.starts_with("/assets/"))
        {
            assert!(
                lookup(src).is_some(),
                "the page loads {src}, which is not served"
            );
        }
        assert!(page.contains("/assets/vendor/uplot/uPlot.iife.min.js"));
        let uplot = lookup("/assets/vendor/uplot/uPlot.iife.min.js").expect("uPlot");
        assert!(
            uplot
                .body
                .starts_with(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
        );
        assert!(lookup("/assets/../Cargo.toml").is_none());
    }
}
