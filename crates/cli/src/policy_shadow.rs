//! `keyfold policy shadow`, `keyfold policy shadow-report` and `keyfold
//! policy shadow-remove`: a future policy version installed in shadow
//! (evaluated beside the version in force on every request, deciding
//! nothing), its difference report, and its removal (`docs/rollout.md`).
//!
//! The shadow is signed exactly like a policy update (`keyfold policy
//! sign` by the admin quorum of the policy in force); promoting it is an
//! ordinary `keyfold policy push` of the same files.

use std::path::{Path, PathBuf};

use keyfold_coordinator::policy::shadow::{ShadowReport, Verdict};
use keyfold_policy::{AdminSignature, SignedPolicy, MAX_DOCUMENT_BYTES};
use zeroize::Zeroizing;

use crate::http::Api;

/// Largest admin signature file read (one `keyfold policy sign` output).
const MAX_SIGNATURE_FILE: u64 = 64 * 1024;

/// Most signature files one install takes (the coordinator's bound too).
const MAX_SIGNATURES: usize = keyfold_coordinator::policy::shadow::MAX_SHADOW_SIGNATURES;

/// Where the coordinator's API is and the operator token to use.
#[derive(clap::Args)]
pub struct Target {
    /// The coordinator's API.
    #[arg(
        long = "coordinator",
        visible_alias = "api",
        default_value = "http://127.0.0.1:7100"
    )]
    coordinator: String,
    /// File holding an operator API token (else the KEYFOLD_TOKEN variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl Target {
    fn token(&self) -> Result<Zeroizing<String>, String> {
        let token = match &self.token_file {
            Some(f) => Zeroizing::new(read_bounded(f, 4096, "API token file")?.trim().to_string()),
            None => Zeroizing::new(
                std::env::var("KEYFOLD_TOKEN")
                    .map_err(|_| {
                        "no API token: pass --token-file FILE or set KEYFOLD_TOKEN".to_string()
                    })?
                    .trim()
                    .to_string(),
            ),
        };
        if token.is_empty() {
            return Err("the API token is empty".into());
        }
        Ok(token)
    }

    fn connect(&self) -> Result<Api, String> {
        Api::new(
            &self.coordinator,
            self.token()?,
            std::time::Duration::from_secs(120),
        )
    }
}

/// `keyfold policy shadow FILE --sig SIG...`.
#[derive(clap::Args)]
pub struct InstallArgs {
    /// The TOML document of the future version.
    file: PathBuf,
    /// Admin signature files of the document (from `keyfold policy sign`).
    #[arg(long = "sig", visible_alias = "signature", required = true, num_args = 1..)]
    sigs: Vec<PathBuf>,
    #[command(flatten)]
    target: Target,
}

/// `keyfold policy shadow-report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// Prints the coordinator's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
    /// Differences per page (1 to 500; 50 by default).
    #[arg(long)]
    limit: Option<usize>,
    /// The next page (the cursor the previous page printed).
    #[arg(long)]
    cursor: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `keyfold policy shadow-remove`.
#[derive(clap::Args)]
pub struct RemoveArgs {
    /// Prints the coordinator's JSON answer (the last report) instead.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

/// Reads a text file of at most `max` bytes.
fn read_bounded(path: &Path, max: u64, what: &str) -> Result<String, String> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{what} {shown}: {e}"))?
        .len();
    if len > max {
        return Err(format!(
            "{what} {shown}: {len} bytes, at most {max} are accepted"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{what} {shown}: {e}"))
}

/// The signed update the files make.
fn signed_update(file: &Path, sigs: &[PathBuf]) -> Result<SignedPolicy, String> {
    if sigs.len() > MAX_SIGNATURES {
        return Err(format!(
            "{} signature files, at most {MAX_SIGNATURES} are accepted (the admin quorum is enough)",
            sigs.len()
        ));
    }
    let max_doc = u64::try_from(MAX_DOCUMENT_BYTES).unwrap_or(u64::MAX);
    let document_toml = read_bounded(file, max_doc, "policy document")?;
    let signatures = sigs
        .iter()
        .map(|s| {
            let text = read_bounded(s, MAX_SIGNATURE_FILE, "signature file")?;
            serde_json::from_str::<AdminSignature>(&text).map_err(|e| {
                format!(
                    "signature file {}: not an admin signature from `keyfold policy sign`: {e}",
                    s.display()
                )
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(SignedPolicy {
        document_toml,
        signatures,
    })
}

/// `keyfold policy shadow`: installs (or replaces) the shadow.
pub async fn install(args: InstallArgs) -> Result<String, String> {
    let update = signed_update(&args.file, &args.sigs)?;
    let report: ShadowReport = args
        .target
        .connect()?
        .post("/v1/policy/shadow", &update)
        .await?;
    Ok(format!(
        "policy version {} is installed in shadow: every request is also evaluated under it, version {} in force decides (see `keyfold policy shadow-report`)",
        report.version, report.in_force_version
    ))
}

/// `keyfold policy shadow-report`: the counts and a table of differences.
pub async fn report(args: ReportArgs) -> Result<String, String> {
    let mut query = Vec::new();
    if let Some(l) = args.limit {
        query.push(format!("limit={l}"));
    }
    if let Some(c) = &args.cursor {
        if !c.bytes().all(|b| b.is_ascii_digit()) || c.is_empty() || c.len() > 20 {
            return Err(format!(
                "--cursor {c:?} is not a cursor a report page printed (digits)"
            ));
        }
        query.push(format!("cursor={c}"));
    }
    let path = if query.is_empty() {
        "/v1/policy/shadow".to_string()
    } else {
        format!("/v1/policy/shadow?{}", query.join("&"))
    };
    let report: ShadowReport = args.target.connect()?.get(&path).await?;
    if args.json {
        return serde_json::to_string_pretty(&report).map_err(|e| e.to_string());
    }
    Ok(render(&report))
}

/// `keyfold policy shadow-remove`: removes the shadow; prints its last
/// report.
pub async fn remove(args: RemoveArgs) -> Result<String, String> {
    let token = args.target.token()?;
    let url = format!(
        "{}/v1/policy/shadow",
        args.target.coordinator.trim_end_matches('/')
    );
    let resp = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?
        .delete(&url)
        .bearer_auth(token.as_str())
        .send()
        .await
        .map_err(|e| format!("DELETE {url}: {e} (is the coordinator running?)"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("DELETE {url}: {e}"))?;
    if !status.is_success() {
        let msg = serde_json::from_str::<keyfold_proto::api::ApiError>(&text)
            .map(|e| format!("{}: {}", e.error.code, e.error.message))
            .unwrap_or(text);
        return Err(format!("DELETE {url}: HTTP {status}: {msg}"));
    }
    let report: ShadowReport =
        serde_json::from_str(&text).map_err(|e| format!("DELETE {url}: unreadable answer: {e}"))?;
    if args.json {
        return serde_json::to_string_pretty(&report).map_err(|e| e.to_string());
    }
    Ok(format!(
        "shadow version {} removed; its last report:\n{}",
        report.version,
        render(&report)
    ))
}

/// Text from the coordinator (rule names, reasons) made safe to print on a
/// terminal: control characters become `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn verdict(v: &Verdict) -> String {
    match &v.rule {
        Some(r) => format!("{} ({})", v.outcome, printable(r)),
        None => v.outcome.to_string(),
    }
}

/// The report as text: a summary, then one row per difference.
pub fn render(r: &ShadowReport) -> String {
    let mut out = vec![
        format!(
            "shadow version {}{} (document sha256 {}), installed at {} (Unix seconds); version {} in force decides",
            r.version,
            if r.installed { "" } else { ", removed" },
            r.document_hash,
            r.installed_at,
            r.in_force_version
        ),
        format!(
            "{} request(s) evaluated under it, {} differed",
            r.evaluated, r.differed
        ),
    ];
    if r.differences.is_empty() {
        out.push("no differences on this page".into());
        return out.join("\n");
    }
    let header = ["REQUEST", "TIME", "IN FORCE", "SHADOW", "SHADOW REASON"];
    let rows: Vec<[String; 5]> = r
        .differences
        .iter()
        .map(|d| {
            [
                printable(&d.request_id),
                d.at.to_string(),
                verdict(&d.in_force),
                verdict(&d.shadow),
                d.shadow
                    .reason
                    .as_deref()
                    .map(printable)
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    out.push(line(header));
    for row in &rows {
        out.push(line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    if let Some(c) = &r.next_cursor {
        out.push(format!(
            "more: keyfold policy shadow-report --cursor {}",
            printable(c)
        ));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfold_coordinator::policy::shadow::{OutcomeKind, ShadowDifference};

    fn report(differences: Vec<ShadowDifference>, next: Option<&str>) -> ShadowReport {
        ShadowReport {
            version: 3,
            document_hash: "ab".repeat(32),
            installed_at: 1_700_000_000,
            in_force_version: 2,
            installed: true,
            evaluated: 12,
            differed: differences.len() as u64,
            differences,
            next_cursor: next.map(str::to_string),
        }
    }

    #[test]
    fn the_report_prints_counts_and_one_aligned_row_per_difference() {
        let d = ShadowDifference {
            request_id: "sh-500".into(),
            at: 1_700_000_100,
            in_force: Verdict {
                outcome: OutcomeKind::Allow,
                rule: Some("small".into()),
                reason: None,
            },
            shadow: Verdict {
                outcome: OutcomeKind::Deny,
                rule: Some("cap".into()),
                reason: Some("above the\ncap".into()),
            },
        };
        let text = render(&report(vec![d], Some("17")));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("shadow version 3 ("), "{text}");
        assert!(lines[0].ends_with("version 2 in force decides"), "{text}");
        assert_eq!(lines[1], "12 request(s) evaluated under it, 1 differed");
        assert_eq!(
            lines[2],
            "REQUEST  TIME        IN FORCE       SHADOW      SHADOW REASON"
        );
        assert_eq!(
            lines[3],
            "sh-500   1700000100  allow (small)  deny (cap)  above the?cap"
        );
        assert_eq!(lines[4], "more: keyfold policy shadow-report --cursor 17");
        let empty = render(&report(Vec::new(), None));
        assert!(empty.ends_with("no differences on this page"), "{empty}");
    }

    #[test]
    fn oversized_or_malformed_inputs_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("p.toml");
        std::fs::write(&doc, "version = 2\n").unwrap();
        let big = dir.path().join("big.sig.json");
        std::fs::write(&big, vec![b' '; 70 * 1024]).unwrap();
        let e = signed_update(&doc, std::slice::from_ref(&big)).unwrap_err();
        assert!(
            e.contains("big.sig.json") && e.contains("at most 65536"),
            "{e}"
        );
        let bad = dir.path().join("bad.sig.json");
        std::fs::write(&bad, "{}").unwrap();
        let e = signed_update(&doc, &[bad]).unwrap_err();
        assert!(
            e.contains("bad.sig.json") && e.contains("keyfold policy sign"),
            "{e}"
        );
        let many = vec![doc.clone(); MAX_SIGNATURES + 1];
        assert!(signed_update(&doc, &many)
            .unwrap_err()
            .contains("at most 64"));
        let e = signed_update(&dir.path().join("missing.toml"), &[]).unwrap_err();
        assert!(e.contains("missing.toml"), "{e}");
    }
}
