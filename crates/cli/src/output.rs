//! Standard output for the commands' results.
//!
//! A command prints through `out!` / `outln!`, which write here and return the error instead
//! of panicking as `print!` does. A write that finds the reading end of a pipe closed
//! (`strata compare ... | head -3`) is recorded, and `main` then ends quietly with status 0,
//! as Unix filters do. SIGPIPE is left ignored (Rust's default), so that `strata serve` and
//! the LLM labeler see a closed socket as an error rather than dying of the signal.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// The process's standard output, locked; see the module documentation.
pub struct Stdout(io::StdoutLock<'static>);

/// Standard output for one write or a series of writes.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// Whether a write to standard output found its reader gone.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

fn note(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).inspect_err(note)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().inspect_err(note)
    }
}

/// `print!` to [`stdout`], returning an I/O error from the enclosing function.
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        write!($crate::output::stdout(), $($arg)*)?;
    }};
}

/// `println!` to [`stdout`], returning an I/O error from the enclosing function.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        writeln!($crate::output::stdout(), $($arg)*)?;
    }};
}
