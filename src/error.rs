use crate::gpu::GpuError;
use crate::model::ModelError;

/// The library's error: every variant reads as one sentence naming the thing and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
    #[error("{0}")]
    Input(String),
    /// A file or folder that could not be read or written, with the operating system's reason (in the message,
    /// not as a source, so that an error chain does not print it twice).
    #[error("cannot {action} {}: {reason}", path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        reason: std::io::Error,
    },
    /// A broken invariant inside vitune, not the user's input.
    #[error("internal error (a vitune bug; please report it): {0}")]
    Internal(String),
    /// Training diverged before any epoch was worth keeping (a loss not finite, or epochs above
    /// `train::DIVERGED_FACTOR` × ln C): the learning rate is too high for the data.
    #[error("training diverged at epoch {epoch} (step {step}): loss {loss:.3}; nothing was kept: try --auto or a smaller --lr than this run's {lr:.3e}")]
    Diverged {
        loss: f64,
        epoch: usize,
        step: usize,
        /// The run's (base) learning rate.
        lr: f32,
    },
    /// A job that needs a backbone, asked for before one was chosen (the app).
    #[error("choose a backbone first")]
    NoBackbone,
    /// A job that needs a trained model, asked for before there was one: the sentence says what for.
    #[error("{0}")]
    NoModel(&'static str),
    /// A file that does not decode as an image.
    #[error("{} is not a decodable image: {reason}", path.display())]
    NotAnImage {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A method name the registry does not hold.
    #[error("unknown method `{name}`; expected one of {expected}")]
    UnknownMethod { name: String, expected: String },
    /// A method option's value outside what the option takes.
    #[error("--{key} `{value}`: expected {expected}")]
    BadOption {
        key: &'static str,
        value: String,
        expected: String,
    },
    /// An option the chosen method does not offer.
    #[error("--{key} applies to {offered_by}, not {method}")]
    OptionNotOffered {
        key: String,
        method: String,
        offered_by: String,
    },
    /// The stop flag ended a job before it had anything to keep.
    #[error("{0}")]
    Stopped(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// For `map_err`: an I/O failure to `action` (read, write, create, ...) `path`.
    pub fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |reason| Error::Io {
            action,
            path,
            reason,
        }
    }
}
