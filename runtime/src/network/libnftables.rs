//! The few libnftables calls berth makes, loaded at run time from `libnftables.so.1` (the
//! library the `nft` binary itself is built on; Debian's `nftables` package depends on it).
//!
//! Why in-process rather than spawning `nft`: a run of the binary costs a process start and
//! dynamic linking (5-10 ms on a busy host, more for a delete), which was most of a pod's
//! hostPort setup and teardown; a context kept open answers a transaction in about 0.1 ms.
//! Loading the library with `dlopen` keeps it a run-time dependency only (no headers or
//! `-dev` package to build berth), and the API used here has been stable since nftables 0.9.
//!
//! libnftables keeps some process-wide state (a one-time initialisation in its first
//! `nft_ctx_new`, an interface cache), so every call goes through one process-wide lock.
//! A context talks to the kernel through a netfilter netlink socket it opens when created:
//! the socket, and so the context, stays in the network namespace of the thread that created
//! it (see [`super::netns`]).
//!
//! Not used, on purpose: `NFT_CTX_OUTPUT_ECHO` with JSON input. nftables 1.0.6 keeps the
//! echoed commands in a process-wide list that only a successful run frees; after a refused
//! transaction the next echo reads freed memory (a lost handle at best).

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The library's file name (its soname).
pub const LIBRARY: &str = "libnftables.so.1";

/// `NFT_CTX_OUTPUT_JSON`: read and print JSON (libnftables-json(5)).
pub const OUTPUT_JSON: c_uint = 1 << 4;

type CtxNew = unsafe extern "C" fn(flags: u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(ctx: *mut c_void);
type SetFlags = unsafe extern "C" fn(ctx: *mut c_void, flags: c_uint);
type Buffer = unsafe extern "C" fn(ctx: *mut c_void) -> c_int;
type GetBuffer = unsafe extern "C" fn(ctx: *mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(ctx: *mut c_void, buffer: *const c_char) -> c_int;

/// The functions of the loaded library.
struct Functions {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    output_set_flags: SetFlags,
    buffer_output: Buffer,
    buffer_error: Buffer,
    get_output_buffer: GetBuffer,
    get_error_buffer: GetBuffer,
    run_cmd_from_buffer: RunCmd,
}

static FUNCTIONS: OnceLock<Result<Functions, String>> = OnceLock::new();
/// Serialises every call into the library (see the module documentation).
static CALLS: Mutex<()> = Mutex::new(());

fn calls() -> MutexGuard<'static, ()> {
    CALLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The library could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The library or one of its functions is missing.
    #[error("cannot load {LIBRARY}: {reason}")]
    Load { reason: String },
    /// The kernel offers no netfilter netlink socket here (libnftables would exit the process).
    #[error("cannot open a netfilter netlink socket (is nf_tables available in this kernel?)")]
    Socket(#[source] io::Error),
    /// `nft_ctx_new` failed.
    #[error("libnftables could not create a context")]
    Context,
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl call on
    // this thread; it is copied at once.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-null, NUL-terminated (see above).
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}

fn load() -> Result<Functions, String> {
    let name = CString::new(LIBRARY).expect("no NUL in the library name");
    // SAFETY: dlopen with a valid C string; the handle is never closed, so the functions
    // taken from it stay valid for the life of the process.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(last_dl_error());
    }
    let symbol = |name: &str| -> Result<*mut c_void, String> {
        let c_name = CString::new(name).expect("no NUL in symbol names");
        // SAFETY: `handle` is a live handle from dlopen; `c_name` is a valid C string.
        let address = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
        if address.is_null() {
            Err(format!("{name}: {}", last_dl_error()))
        } else {
            Ok(address)
        }
    };
    // SAFETY (each transmute): the symbol is the libnftables function of that name, whose C
    // signature (nftables/libnftables.h, unchanged since 0.9) is exactly the function pointer
    // type it is turned into; a non-null data pointer from dlsym has a function pointer's size.
    unsafe {
        Ok(Functions {
            ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(symbol("nft_ctx_new")?),
            ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(symbol("nft_ctx_free")?),
            output_set_flags: std::mem::transmute::<*mut c_void, SetFlags>(symbol(
                "nft_ctx_output_set_flags",
            )?),
            buffer_output: std::mem::transmute::<*mut c_void, Buffer>(symbol(
                "nft_ctx_buffer_output",
            )?),
            buffer_error: std::mem::transmute::<*mut c_void, Buffer>(symbol(
                "nft_ctx_buffer_error",
            )?),
            get_output_buffer: std::mem::transmute::<*mut c_void, GetBuffer>(symbol(
                "nft_ctx_get_output_buffer",
            )?),
            get_error_buffer: std::mem::transmute::<*mut c_void, GetBuffer>(symbol(
                "nft_ctx_get_error_buffer",
            )?),
            run_cmd_from_buffer: std::mem::transmute::<*mut c_void, RunCmd>(symbol(
                "nft_run_cmd_from_buffer",
            )?),
        })
    }
}

fn functions() -> Result<&'static Functions, LibraryError> {
    FUNCTIONS
        .get_or_init(load)
        .as_ref()
        .map_err(|reason| LibraryError::Load {
            reason: reason.clone(),
        })
}

/// What one command produced.
#[derive(Debug)]
pub struct Outcome {
    /// Whether libnftables reported success.
    pub success: bool,
    /// What it printed (JSON with [`OUTPUT_JSON`]).
    pub output: String,
    /// Its error messages.
    pub errors: String,
}

/// A libnftables context: a netfilter netlink socket in the network namespace of the thread
/// that opened it, plus the library's cache of the ruleset (refreshed when the kernel's
/// ruleset generation changes, so other writers are seen).
#[derive(Debug)]
pub struct Context {
    ctx: NonNull<c_void>,
    functions: &'static Functions,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(LIBRARY)
    }
}

// SAFETY: a context is plain heap memory and a socket, used by one thread at a time (`&mut
// self`, and every call also holds the process-wide lock); libnftables has no thread
// affinity.
unsafe impl Send for Context {}

impl Context {
    /// Opens a context in the calling thread's network namespace, with output and errors
    /// captured in memory. The context's socket is made close-on-exec so that processes the
    /// agent starts (shims) do not inherit it.
    pub fn open() -> Result<Context, LibraryError> {
        let functions = functions()?;
        // libnftables ends the process when it cannot open its socket: check first.
        probe_netfilter_socket().map_err(LibraryError::Socket)?;
        let _calls = calls();
        // SAFETY: NFT_CTX_DEFAULT (0) is a valid flag set; the result is checked for null.
        let ctx = NonNull::new(unsafe { (functions.ctx_new)(0) }).ok_or(LibraryError::Context)?;
        let context = Context { ctx, functions };
        // SAFETY: `ctx` is a live context; both calls only redirect its output streams.
        let buffered = unsafe {
            (functions.buffer_output)(ctx.as_ptr()) == 0
                && (functions.buffer_error)(ctx.as_ptr()) == 0
        };
        if !buffered {
            return Err(LibraryError::Context);
        }
        close_netfilter_sockets_on_exec();
        Ok(context)
    }

    /// Runs `command` (JSON or nft syntax) with output `flags` (e.g. [`OUTPUT_JSON`]).
    pub fn run(&mut self, command: &str, flags: c_uint) -> Outcome {
        let text = match CString::new(command) {
            Ok(text) => text,
            Err(_) => {
                return Outcome {
                    success: false,
                    output: String::new(),
                    errors: "the command contains a NUL byte".into(),
                };
            }
        };
        let _calls = calls();
        let ctx = self.ctx.as_ptr();
        // SAFETY: `ctx` is a live context used by this thread alone (&mut self and the lock);
        // `text` outlives the call. The buffers returned are NUL-terminated and valid until
        // the next call on the context; they are copied at once.
        unsafe {
            (self.functions.output_set_flags)(ctx, flags);
            let rc = (self.functions.run_cmd_from_buffer)(ctx, text.as_ptr());
            let output = copy((self.functions.get_output_buffer)(ctx));
            let errors = copy((self.functions.get_error_buffer)(ctx));
            Outcome {
                success: rc == 0,
                output,
                errors,
            }
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _calls = calls();
        // SAFETY: `ctx` is live and dropped once; nothing uses it afterwards.
        unsafe { (self.functions.ctx_free)(self.ctx.as_ptr()) };
    }
}

/// Copies a C string from libnftables (null reads as empty).
///
/// # Safety
/// `text` is null or a valid NUL-terminated string.
unsafe fn copy(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated, as the caller promises.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

fn probe_netfilter_socket() -> io::Result<()> {
    // SAFETY: plain socket call; the descriptor is closed right below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened here and is closed once.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Sets close-on-exec on every netfilter netlink socket of the process that lacks it: the
/// ones libnftables opens (it does not ask for it). berth opens no other such sockets, and
/// none of them is meant to be inherited.
fn close_netfilter_sockets_on_exec() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<c_int>().ok())
        else {
            continue;
        };
        if is_netfilter_socket(fd) {
            // SAFETY: F_GETFD/F_SETFD only read and set the descriptor's flags; a descriptor
            // closed meanwhile makes them fail harmlessly.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }
}

fn is_netfilter_socket(fd: c_int) -> bool {
    let option = |name: c_int| -> Option<c_int> {
        let mut value: c_int = 0;
        let mut length = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: `value` and `length` are valid for writing an int; a descriptor that is not
        // a socket makes the call fail with ENOTSOCK.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut c_int).cast(),
                &mut length,
            )
        };
        (rc == 0).then_some(value)
    };
    option(libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
        && option(libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Netfilter netlink sockets of the process: (descriptor, close-on-exec).
    fn netfilter_sockets() -> Vec<(c_int, bool)> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<c_int>().ok())
            .filter(|fd| is_netfilter_socket(*fd))
            .map(|fd| {
                // SAFETY: F_GETFD only reads the descriptor's flags.
                let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
                (fd, flags >= 0 && flags & libc::FD_CLOEXEC != 0)
            })
            .collect()
    }

    #[test]
    fn a_context_socket_is_not_inherited_by_processes_the_agent_starts() {
        // A network namespace of this thread's own, gone when the thread ends.
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let context = Context::open().unwrap();
            // Holding the lock, no other test is between creating a context and sweeping.
            let calls = calls();
            let sockets = netfilter_sockets();
            drop(calls);
            assert!(!sockets.is_empty(), "the context has its socket");
            assert!(
                sockets.iter().all(|(_, cloexec)| *cloexec),
                "every netfilter socket is close-on-exec: {sockets:?}"
            );
            drop(context);
        })
        .join()
        .unwrap();
    }
}
