//! `keyfold risk`: checks a risk decision tree and describes it in plain
//! words, or prints the default tree (mirrors `keyfold policy check`).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use keyfold_risk::RiskTree;

/// Risk decision trees.
#[derive(Subcommand)]
pub enum RiskCmd {
    /// Validates a decision tree and prints each rule and threshold in plain
    /// words; with `--default`, prints the default tree (TOML) instead.
    Check {
        /// The TOML tree.
        #[arg(required_unless_present = "default", conflicts_with = "default")]
        file: Option<PathBuf>,
        /// Prints the built-in default tree, a starting point for your own.
        #[arg(long)]
        default: bool,
    },
}

/// Runs a `keyfold risk` command.
pub fn run(cmd: RiskCmd) -> Result<(), String> {
    match cmd {
        RiskCmd::Check { default: true, .. } => {
            print!("{}", keyfold_risk::DEFAULT_TREE_TOML);
            Ok(())
        }
        RiskCmd::Check {
            file: Some(file), ..
        } => {
            for l in check(&file)? {
                println!("{l}");
            }
            Ok(())
        }
        RiskCmd::Check { file: None, .. } => Err("name a tree file or pass --default".into()),
    }
}

/// `keyfold risk check FILE`: the tree's description, or the typed error.
pub fn check(file: &Path) -> Result<Vec<String>, String> {
    // Refuse an oversized file before reading it whole.
    let size = std::fs::metadata(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    if size > keyfold_risk::MAX_TREE_BYTES as u64 {
        return Err(format!(
            "{}: risk tree is {size} bytes, the limit is {}",
            file.display(),
            keyfold_risk::MAX_TREE_BYTES
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let tree = RiskTree::from_toml(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut out = vec![format!(
        "{}: valid risk tree version {}{}",
        file.display(),
        tree.version(),
        tree.document()
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    )];
    out.extend(keyfold_risk::describe(&tree));
    out.extend(keyfold_risk::describe_thresholds(&tree));
    Ok(out)
}
