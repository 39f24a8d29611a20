//! Where sessions are kept and how their ids and PINs are drawn.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Session store")]
pub struct StoreSettings {
    /// Directory of the session journal and of the generated development key.
    #[arg(long, env = "ISM_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Digits of generated session ids. Ids are never reused, so the id space bounds the
    /// sessions a deployment can ever create (90 % of 9·10^(n-1)).
    #[arg(long, env = "ISM_ID_LENGTH", default_value_t = 9,
          value_parser = clap::value_parser!(u64).range(1..=32))]
    pub id_length: u64,

    /// Accept the loss of the damaged session-journal range starting at this byte offset,
    /// which start-up refused because it may have held a close: every session open at that
    /// point is closed, to be safe. Only the offset named by that error has an effect.
    #[arg(long, env = "ISM_REPAIR_JOURNAL_AT")]
    pub repair_journal_at: Option<u64>,

    /// Digits of generated PINs (the original service used 3).
    #[arg(long, env = "ISM_PIN_LENGTH", default_value_t = 6,
          value_parser = clap::value_parser!(u64).range(3..=32))]
    pub pin_length: u64,
}
