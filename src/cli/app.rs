//! `vitune app`: the desktop app.

use super::*;

#[derive(Args)]
pub(super) struct Args {
    /// A project file to open (else the last one, else the demo project).
    pub(super) project: Option<PathBuf>,
}

pub(super) fn exec(a: Args) -> Result<()> {
    Ok(vitune::app::run(a.project)?)
}
