//! `keyfold risk`: checks a risk decision tree and describes it in plain
//! words, or prints the default tree (mirrors `keyfold policy check`);
//! signs a tree with an admin key and submits it with the admins'
//! signatures (mirrors `keyfold policy sign|push`).

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
    /// Signs a tree with an admin key; prints the signature JSON.
    Sign {
        /// The TOML tree.
        file: PathBuf,
        /// The admin's key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Submits a tree with its admin signatures to the coordinator, which
    /// verifies them against the policy's admins and puts it in force.
    Push {
        /// The TOML tree.
        file: PathBuf,
        /// Admin signature files (from `keyfold risk sign`).
        #[arg(long = "signature", required = true)]
        signatures: Vec<PathBuf>,
        #[command(flatten)]
        api: crate::ApiArgs,
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
        RiskCmd::Sign { file, key } => {
            check(&file)?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let key = crate::officer::load_key(&key)?;
            let sig = keyfold_risk::TreeSignature::sign(&key, &text);
            println!(
                "{}",
                serde_json::to_string(&sig).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        RiskCmd::Push {
            file,
            signatures,
            api,
        } => {
            let tree_toml =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut sigs = Vec::new();
            for s in &signatures {
                let text =
                    std::fs::read_to_string(s).map_err(|e| format!("{}: {e}", s.display()))?;
                sigs.push(
                    serde_json::from_str::<keyfold_risk::TreeSignature>(&text)
                        .map_err(|e| format!("{}: {e}", s.display()))?,
                );
            }
            let update = keyfold_risk::SignedTree {
                tree_toml,
                signatures: sigs,
            };
            let target = api.target();
            let answer: serde_json::Value = crate::runtime()?
                .block_on(async { target.connect()?.post("/v1/risk/tree", &update).await })?;
            println!(
                "risk tree version {} is in force at the coordinator",
                answer["version"]
            );
            Ok(())
        }
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
