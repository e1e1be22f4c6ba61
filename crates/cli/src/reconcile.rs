//! `keyfold reconcile`: a merchant's reconciliation report for a period,
//! every section and every page of `GET /v1/reconciliation`, as JSON or CSV.

use std::path::PathBuf;

use keyfold_proto::api::{ReconciliationItem, ReconciliationReport};

use crate::officer::ApiTarget;

/// What to reconcile.
pub(crate) struct Request {
    /// The API and its token (a merchant key, or an operator token with
    /// `merchant`).
    pub target: ApiTarget,
    /// The merchant (operators must name one).
    pub merchant: Option<String>,
    /// Period, Unix seconds, `[from, to)`.
    pub from: i64,
    /// End.
    pub to: i64,
    /// CSV rather than JSON.
    pub csv: bool,
    /// Where to write (stdout if `None`).
    pub out: Option<PathBuf>,
}

/// Fetches every page and writes the report; the number of differences.
pub(crate) async fn run(r: Request) -> Result<usize, String> {
    let api = r.target.connect()?;
    let mut items: Vec<ReconciliationItem> = Vec::new();
    let mut merchant_id = String::new();
    for section in keyfold_coordinator::reconcile::SECTIONS {
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!(
                "/v1/reconciliation?section={section}&from={}&to={}&limit=500",
                r.from, r.to
            );
            if let Some(m) = &r.merchant {
                path.push_str(&format!("&merchant_id={m}"));
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page: ReconciliationReport = api.get(&path).await?;
            merchant_id = page.merchant_id.clone();
            items.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    let report = keyfold_coordinator::reconcile::report(
        merchant_id,
        (r.from, r.to),
        "all".into(),
        items,
        None,
    );
    let text = if r.csv {
        keyfold_coordinator::reconcile::to_csv(&report).map_err(|e| e.to_string())?
    } else {
        serde_json::to_string_pretty(&report).map_err(|e| format!("cannot encode: {e}"))? + "\n"
    };
    match &r.out {
        Some(p) => std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?,
        None => print!("{text}"),
    }
    eprintln!(
        "reconciliation of {}: {} line(s), {} matched, {} difference(s), {} alert(s)",
        report.merchant_id,
        report.items.len(),
        report.matched,
        report.differences,
        report.alerts
    );
    Ok(report.differences)
}
