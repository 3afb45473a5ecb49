//! Standard output of the commands other programs read (`alknet admin tree |
//! head`). A reader that stops early closes the pipe: that ends the output,
//! it is not a failure — and never a panic, which is what `println!` makes
//! of it.

use std::io::{self, Write};

/// Whether the output is still being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// Written.
    Reading,
    /// The reader closed the pipe: write nothing more.
    Gone,
}

/// Writes `text` to standard output and flushes it.
pub fn write(text: &str) -> io::Result<Reader> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(Reader::Reading),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(Reader::Gone),
        Err(error) => Err(error),
    }
}

/// [`write`] with a newline.
pub fn line(text: &str) -> io::Result<Reader> {
    write(&format!("{text}\n"))
}
