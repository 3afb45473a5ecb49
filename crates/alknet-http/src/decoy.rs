//! The stealth decoy (docs/protocol.md §11.7): whatever the node does not serve
//! answers like a stock nginx, so probing reveals nothing. Three variants: the
//! default 404, a static site (so the port looks like an ordinary web
//! server), and a redirect.

use std::path::{Component, Path, PathBuf};

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// What unserved requests get.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Decoy {
    /// nginx's default 404 page.
    #[default]
    NotFound,
    /// Files under `root` for GET and HEAD; anything else is the 404.
    StaticSite {
        /// The site's directory.
        root: PathBuf,
    },
    /// `302` to `to`.
    Redirect {
        /// The target URL.
        to: String,
    },
}

/// Answers one unserved request as `decoy` says.
pub async fn answer(decoy: &Decoy, method: &Method, uri: &Uri) -> Response {
    match decoy {
        Decoy::NotFound => not_found().await,
        Decoy::Redirect { to } => match HeaderValue::from_str(to) {
            Ok(location) => (
                StatusCode::FOUND,
                [
                    (header::SERVER, HeaderValue::from_static("nginx")),
                    (header::LOCATION, location),
                ],
            )
                .into_response(),
            Err(_) => not_found().await,
        },
        Decoy::StaticSite { root } => {
            if method != Method::GET && method != Method::HEAD {
                return not_found().await;
            }
            match site_file(root, uri.path()) {
                Some(file) => match read(file.clone()).await {
                    Some(bytes) => (
                        StatusCode::OK,
                        [
                            (header::SERVER, "nginx"),
                            (header::CONTENT_TYPE, content_type(&file)),
                        ],
                        bytes,
                    )
                        .into_response(),
                    None => not_found().await,
                },
                None => not_found().await,
            }
        }
    }
}

/// Reads a site file off the async threads.
async fn read(file: PathBuf) -> Option<Vec<u8>> {
    tokio::task::spawn_blocking(move || std::fs::read(file))
        .await
        .ok()?
        .ok()
}

/// The file a request path names under `root`: `/` and directories map to
/// `index.html`; `..`, absolute segments and anything outside `root` do not
/// resolve.
fn site_file(root: &Path, request_path: &str) -> Option<PathBuf> {
    let relative = request_path.trim_start_matches('/');
    let mut file = root.to_path_buf();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => file.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if file.is_dir() {
        file.push("index.html");
    }
    file.is_file().then_some(file)
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The 146-byte body of nginx's default 404 page.
pub const NOT_FOUND_BODY: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// The `NotFound` decoy.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (header::SERVER, "nginx"),
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        ],
        NOT_FOUND_BODY,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_nginxs_146_bytes() {
        assert_eq!(NOT_FOUND_BODY.len(), 146);
        assert!(!NOT_FOUND_BODY.contains("alknet"));
    }

    #[test]
    fn site_paths_stay_under_the_root() {
        let dir = std::env::temp_dir().join(format!("decoy-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("index.html"), "home").unwrap();
        std::fs::write(dir.join("docs/index.html"), "docs").unwrap();
        std::fs::write(dir.join("a.css"), "x").unwrap();
        assert_eq!(site_file(&dir, "/"), Some(dir.join("index.html")));
        assert_eq!(site_file(&dir, "/docs"), Some(dir.join("docs/index.html")));
        assert_eq!(site_file(&dir, "/a.css"), Some(dir.join("a.css")));
        assert_eq!(site_file(&dir, "/../etc/passwd"), None);
        assert_eq!(site_file(&dir, "/docs/../a.css"), None);
        assert_eq!(site_file(&dir, "/missing.html"), None);
        assert_eq!(content_type(Path::new("x.css")), "text/css");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
