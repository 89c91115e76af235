//! What `host-example serve` prints when it starts: its base URL and the bearer token it
//! shows (one line each), read the same way by every test that starts a `serve`.

use std::io::BufRead;
use std::process::Child;

/// The start-up lines `serve` printed.
pub struct ServeBanner {
    /// The `SCIM base URL:` line's value; empty if serve ended before printing it.
    pub base_url: String,
    /// The `SCIM bearer token:` line's value (a token, or a note that one is in force).
    pub token_line: String,
}

/// Reads `child`'s piped stdout up to the token line, then keeps draining it on a thread
/// of its own, so serve never writes to a closed pipe.
pub fn read_serve_banner(child: &mut Child) -> ServeBanner {
    let stdout = child.stdout.take().expect("serve's stdout is piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (mut base_url, mut token_line) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(u) = line.strip_prefix("SCIM base URL:") {
            base_url = u.trim().to_string();
        } else if let Some(t) = line.strip_prefix("SCIM bearer token:") {
            token_line = t.trim().to_string();
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    ServeBanner {
        base_url,
        token_line,
    }
}
