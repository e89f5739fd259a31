//! Which election backends a binary links, and the step from `handover` to
//! `handover-etcd`.

use std::process::ExitCode;

use handover_std::{Config, Election, Handover};

#[cfg(feature = "etcd")]
type Boxed<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T>>>;
type Failure = Box<dyn std::error::Error>;

/// The election backends of a binary beyond multicast. Only the binary whose
/// `main` names [`Backends::WITH_ETCD`] references etcd's engine: in the other,
/// the linker finds nothing that calls it and leaves it out.
#[derive(Clone, Copy)]
pub struct Backends {
    etcd: Option<&'static Etcd>,
}

/// The etcd backend's entry points.
#[cfg(feature = "etcd")]
struct Etcd {
    start: fn(Config) -> Boxed<Result<Handover, handover_std::Error>>,
    watch: fn(handover_std::etcd::EtcdConfig, bool) -> Boxed<Result<ExitCode, Failure>>,
}

/// No etcd backend in a build without the `etcd` feature.
#[cfg(not(feature = "etcd"))]
enum Etcd {}

impl Backends {
    /// Multicast only: `handover`.
    pub const MULTICAST: Backends = Backends { etcd: None };

    /// Multicast and etcd: `handover-etcd`.
    #[cfg(feature = "etcd")]
    pub const WITH_ETCD: Backends = Backends {
        etcd: Some(&Etcd {
            start: |config| Box::pin(handover_std::etcd::start(config)),
            watch: |etcd, json| Box::pin(crate::watch::watch_etcd(etcd, json)),
        }),
    };

    /// Whether etcd is linked.
    pub(crate) fn etcd(&self) -> bool {
        self.etcd.is_some()
    }

    /// Starts the election `config` names.
    pub(crate) async fn start(&self, config: Config) -> Result<Handover, handover_std::Error> {
        match (&config.election, self.etcd) {
            (Election::Multicast, _) => Handover::start_multicast(config).await,
            #[cfg(feature = "etcd")]
            (_, Some(etcd)) => (etcd.start)(config).await,
            _ => Err(handover_std::Error::Failed(NOT_LINKED.into())),
        }
    }

    /// `handover watch` of an etcd election.
    #[cfg(feature = "etcd")]
    pub(crate) async fn watch_etcd(
        &self,
        etcd: handover_std::etcd::EtcdConfig,
        json: bool,
    ) -> Result<ExitCode, Failure> {
        match self.etcd {
            Some(backend) => (backend.watch)(etcd, json).await,
            None => Err(NOT_LINKED.into()),
        }
    }

    /// Without the `etcd` feature no etcd configuration can be made.
    #[cfg(not(feature = "etcd"))]
    pub(crate) async fn watch_etcd(
        &self,
        etcd: std::convert::Infallible,
        _json: bool,
    ) -> Result<ExitCode, Failure> {
        match etcd {}
    }
}

/// What a binary without etcd says if asked for it after all (`main` executes
/// `handover-etcd` before that can happen).
const NOT_LINKED: &str = "--election etcd: this binary has no etcd backend";

/// The executable that runs etcd elections: `handover-etcd`, installed next to
/// `handover` (`cargo install` and the release archives put both in one directory).
const ETCD_BINARY: &str = "handover-etcd";

/// Replaces this process by `handover-etcd` with the same arguments and
/// environment; returns only if that failed, with the reason on stderr.
pub(crate) fn exec_etcd() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(ETCD_BINARY)))
        .filter(|path| path.exists());
    let program = sibling.unwrap_or_else(|| ETCD_BINARY.into());
    let e = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    crate::say(format_args!(
        "--election etcd runs {}, which could not be started: {e} (it is built with \
         the command's default feature `etcd` and installed next to handover)",
        program.display()
    ));
    crate::run::Exit::NotStarted(e.kind()).into()
}
