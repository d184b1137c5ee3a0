//! The one error type of the primary: an errno with the syscall that failed,
//! or a protocol fault, turned into a Node-style error only at the binding.

use std::fmt;

use nix::errno::Errno;

/// Everything that can go wrong below the binding layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
  /// A system call failed; `context` names what it was for (a path, an address).
  Sys {
    errno: Errno,
    syscall: &'static str,
    context: String,
  },
  /// The worker's IPC channel is closed (Node's `ERR_IPC_CHANNEL_CLOSED`).
  ChannelClosed,
  /// A worker sent bytes that are not a valid message on its channel.
  BadMessage(String),
  /// The primary's engine thread is gone (it only stops when the process exits).
  EngineGone,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
  pub fn sys(errno: Errno, syscall: &'static str, context: impl Into<String>) -> Self {
    Error::Sys {
      errno,
      syscall,
      context: context.into(),
    }
  }

  pub fn from_io(err: &std::io::Error, syscall: &'static str, context: impl Into<String>) -> Self {
    let errno = Errno::from_raw(err.raw_os_error().unwrap_or(libc_eio()));
    Error::sys(errno, syscall, context)
  }

  /// The `code` a Node error would carry: `ENOENT`, `ERR_IPC_CHANNEL_CLOSED`, ...
  pub fn code(&self) -> String {
    match self {
      Error::Sys { errno, .. } => format!("{errno:?}"),
      Error::ChannelClosed => "ERR_IPC_CHANNEL_CLOSED".into(),
      Error::BadMessage(_) => "ERR_IPC_BAD_MESSAGE".into(),
      Error::EngineGone => "ERR_RCLUSTER_ENGINE_GONE".into(),
    }
  }

  /// libuv-style negative errno, as Node puts in `err.errno`.
  pub fn errno(&self) -> Option<i32> {
    match self {
      Error::Sys { errno, .. } => Some(-(*errno as i32)),
      _ => None,
    }
  }

  pub fn syscall(&self) -> Option<&'static str> {
    match self {
      Error::Sys { syscall, .. } => Some(syscall),
      _ => None,
    }
  }
}

fn libc_eio() -> i32 {
  Errno::EIO as i32
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Error::Sys {
        errno,
        syscall,
        context,
      } => {
        write!(f, "{syscall} {errno:?}")?;
        if !context.is_empty() {
          write!(f, " {context}")?;
        }
        Ok(())
      }
      Error::ChannelClosed => f.write_str("Channel closed"),
      Error::BadMessage(why) => write!(f, "Bad message on the IPC channel: {why}"),
      Error::EngineGone => f.write_str("The rcluster engine has stopped"),
    }
  }
}

impl std::error::Error for Error {}

/// An engine failure as JS gets it, shaped like a Node system error
/// (`code`, `errno`, `syscall`).
#[napi_derive::napi(object)]
#[derive(Debug, Clone, PartialEq)]
pub struct NativeError {
  pub code: String,
  pub message: String,
  pub errno: Option<i32>,
  pub syscall: Option<String>,
}

impl From<&Error> for NativeError {
  fn from(e: &Error) -> Self {
    NativeError {
      code: e.code(),
      message: e.to_string(),
      errno: e.errno(),
      syscall: e.syscall().map(str::to_string),
    }
  }
}

impl From<Error> for NativeError {
  fn from(e: Error) -> Self {
    NativeError::from(&e)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn sys_error_reads_like_node() {
    let e = Error::sys(Errno::EADDRINUSE, "bind", "0.0.0.0:80");
    assert_eq!(e.code(), "EADDRINUSE");
    assert_eq!(e.errno(), Some(-98));
    assert_eq!(e.to_string(), "bind EADDRINUSE 0.0.0.0:80");
  }
}
