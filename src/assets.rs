//! The browser client, embedded into the binary so `tickcast` alone serves the demo page at `/`: the page,
//! its game script and style, and the SDK (`/tickcast.js`, an ES module game pages can import as is).
//! The files live in `web/`; `web/test/run.sh` tests them in headless Chromium against this binary.

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: HTML,
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/index.html",
        content_type: HTML,
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/tickcast.js",
        content_type: JS,
        body: include_bytes!("../web/tickcast.js"),
    },
    Asset {
        path: "/game.js",
        content_type: JS,
        body: include_bytes!("../web/game.js"),
    },
    Asset {
        path: "/style.css",
        content_type: CSS,
        body: include_bytes!("../web/style.css"),
    },
];

/// The live dashboard's page (`web/dashboard.html`: its script and style inline, nothing loaded from
/// elsewhere), served at `/dashboard` only where `--dashboard` allows (`server::dashboard`), so it is not
/// among the paths [`find`] knows.
pub const DASHBOARD: Asset = Asset {
    path: "/dashboard",
    content_type: HTML,
    body: include_bytes!("../web/dashboard.html"),
};

/// The asset served at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str) -> &'static str {
        std::str::from_utf8(find(path).expect(path).body).expect("assets are UTF-8")
    }

    #[test]
    fn paths_are_unique_and_typed() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(a.path.starts_with('/'), "{}", a.path);
            assert!(!a.body.is_empty(), "{} is empty", a.path);
            assert!(a.content_type.contains("charset=utf-8"), "{}", a.path);
            assert!(
                ASSETS[..i].iter().all(|b| b.path != a.path),
                "{} twice",
                a.path
            );
        }
    }

    /// The dashboard loads nothing (no script, style, font or image from anywhere: its own CSP says
    /// `default-src 'none'`) and puts server strings into text nodes only.
    #[test]
    fn the_dashboard_is_one_self_contained_file() {
        let page = std::str::from_utf8(DASHBOARD.body).unwrap();
        assert!(page.starts_with("<!doctype html>"));
        // Its one link: an empty icon, so the browser asks for no /favicon.ico.
        let page = page.replacen("<link rel=\"icon\" href=\"data:,\">", "", 1);
        for banned in [
            "src=",
            "href=",
            "@import",
            "url(",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!page.contains(banned), "dashboard.html has {banned}");
        }
        assert!(page.contains("/dashboard/data"));
    }

    /// Every local file the page and its scripts load or link is embedded (or is one of the server's own
    /// routes), or the page breaks only in a browser.
    #[test]
    fn what_the_page_loads_is_embedded() {
        let page = text("/");
        for attr in ["src=\"", "href=\""] {
            for (_, rest) in page
                .match_indices(attr)
                .map(|(i, _)| page.split_at(i + attr.len()))
            {
                let target = &rest[..rest.find('"').unwrap()];
                let route = ["/healthz", "/metrics", "/ws"].contains(&target);
                if target.starts_with('/') && !route {
                    assert!(
                        find(target).is_some(),
                        "index.html loads {target}, not embedded"
                    );
                }
            }
        }
        for script in ["/game.js", "/tickcast.js"] {
            for line in text(script).lines().filter(|l| l.starts_with("import ")) {
                let from = line.rsplit("from '").next().unwrap().trim_end_matches("';");
                let path = format!("/{}", from.trim_start_matches("./"));
                assert!(
                    find(&path).is_some(),
                    "{script} imports {from}, not embedded"
                );
            }
        }
    }
}
