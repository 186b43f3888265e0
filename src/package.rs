//! Deterministic deployment packages.
//!
//! The same directory always yields the same zip bytes — sorted entries,
//! fixed timestamps (1980-01-01), normalised permissions (0644, or 0755 when
//! any execute bit is set), no extra fields — so its SHA-256 can be compared
//! with Lambda's `CodeSha256` and unchanged code is never uploaded.
//! Files are compressed on all cores, then written in order.
//!
//! Excluded everywhere: `.git`, `.hg`, `.svn`, `__pycache__`, `.DS_Store`,
//! `.slx`, `*.pyc`. A `.zip` path is uploaded exactly as it is.

use anyhow::{Context, Result, bail};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const EXCLUDED_NAMES: &[&str] = &[".git", ".hg", ".svn", "__pycache__", ".DS_Store", ".slx"];
const EXCLUDED_SUFFIXES: &[&str] = &[".pyc"];
/// Lambda's limit on unzipped code.
pub const MAX_UNZIPPED: u64 = 250 * 1024 * 1024;
/// Lambda's limit on a zip uploaded directly in the API call.
pub const MAX_DIRECT_UPLOAD: usize = 50 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Package {
    pub bytes: Vec<u8>,
    /// Base64 SHA-256, the form of Lambda's `CodeSha256`.
    pub sha256: String,
    pub files: usize,
}

impl Package {
    fn new(bytes: Vec<u8>, files: usize) -> Package {
        let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
        Package { bytes, sha256, files }
    }
}

/// Packages a directory, or reads a `.zip` file as is.
pub fn build(path: &Path) -> Result<Package> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read code at {}", path.display()))?;
    let pkg = if meta.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Package::new(bytes, 1)
    } else {
        let files = collect(path)?;
        let unzipped: u64 = files.iter().map(|f| f.size).sum();
        if unzipped > MAX_UNZIPPED {
            bail!("code at {} is {} MB unzipped; Lambda allows 250 MB", path.display(), unzipped / 1_048_576);
        }
        if files.len() >= 65_535 {
            bail!("code at {} has {} files; a package holds at most 65534", path.display(), files.len());
        }
        let count = files.len();
        Package::new(zip(&files)?, count)
    };
    if pkg.bytes.len() > MAX_DIRECT_UPLOAD {
        bail!(
            "code at {} is {} MB zipped; direct upload allows 50 MB (upload through S3 is not supported yet)",
            path.display(),
            pkg.bytes.len() / 1_048_576
        );
    }
    Ok(pkg)
}

struct FileEntry {
    path: PathBuf,
    /// Zip entry name: relative, `/`-separated.
    name: String,
    size: u64,
    executable: bool,
}

fn collect(root: &Path) -> Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if EXCLUDED_NAMES.contains(&file_name.as_str()) || EXCLUDED_SUFFIXES.iter().any(|s| file_name.ends_with(s))
            {
                continue;
            }
            let path = entry.path();
            let meta = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = format!("{prefix}{file_name}");
            if meta.is_dir() {
                stack.push((path, format!("{name}/")));
            } else if meta.is_file() {
                #[cfg(unix)]
                let executable = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
                #[cfg(not(unix))]
                let executable = false;
                out.push(FileEntry { path, name, size: meta.len(), executable });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

struct Compressed {
    crc: u32,
    size: u32,
    method: u16,
    data: Vec<u8>,
}

fn compress(f: &FileEntry) -> Result<Compressed> {
    let raw = std::fs::read(&f.path).with_context(|| format!("cannot read {}", f.path.display()))?;
    let crc = crc32fast::hash(&raw);
    let mut enc = flate2::write::DeflateEncoder::new(Vec::with_capacity(raw.len() / 2), flate2::Compression::new(6));
    enc.write_all(&raw)?;
    let deflated = enc.finish()?;
    let size = u32::try_from(raw.len()).context("file too large for a zip entry")?;
    Ok(if deflated.len() < raw.len() {
        Compressed { crc, size, method: 8, data: deflated }
    } else {
        Compressed { crc, size, method: 0, data: raw }
    })
}

/// DOS date for 1980-01-01, time 00:00.
const DOS_DATE: u16 = (1 << 5) | 1;

fn zip(files: &[FileEntry]) -> Result<Vec<u8>> {
    let slots: Vec<Mutex<Option<Result<Compressed>>>> = files.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= files.len() {
                        break;
                    }
                    *slots[i].lock().unwrap() = Some(compress(&files[i]));
                }
            });
        }
    });
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (f, slot) in files.iter().zip(slots) {
        let c = slot.into_inner().unwrap().expect("every file compressed")?;
        let offset = u32::try_from(out.len()).context("package larger than 4 GB")?;
        let name = f.name.as_bytes();
        let flags: u16 = if f.name.is_ascii() { 0 } else { 1 << 11 };
        let csize = c.data.len() as u32;
        let header = |buf: &mut Vec<u8>, central: bool| {
            if central {
                buf.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
                buf.extend_from_slice(&0x031eu16.to_le_bytes()); // made by: unix, zip 3.0
            } else {
                buf.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            }
            buf.extend_from_slice(&20u16.to_le_bytes()); // version needed
            buf.extend_from_slice(&flags.to_le_bytes());
            buf.extend_from_slice(&c.method.to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes()); // time
            buf.extend_from_slice(&DOS_DATE.to_le_bytes());
            buf.extend_from_slice(&c.crc.to_le_bytes());
            buf.extend_from_slice(&csize.to_le_bytes());
            buf.extend_from_slice(&c.size.to_le_bytes());
            buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        header(&mut out, false);
        out.extend_from_slice(name);
        out.extend_from_slice(&c.data);
        header(&mut central, true);
        let mode: u32 = if f.executable { 0o100755 } else { 0o100644 };
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    let cd_offset = u32::try_from(out.len()).context("package larger than 4 GB")?;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("pkg/__pycache__")).unwrap();
        std::fs::write(d.path().join("app.py"), "def handler(e, c):\n    return 1\n".repeat(50)).unwrap();
        std::fs::write(d.path().join("pkg/util.py"), "X = 1\n").unwrap();
        std::fs::write(d.path().join("pkg/__pycache__/util.cpython-312.pyc"), "junk").unwrap();
        std::fs::write(d.path().join("stale.pyc"), "junk").unwrap();
        d
    }

    #[test]
    fn same_tree_same_bytes_regardless_of_mtime() {
        let d = tree();
        let a = build(d.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(d.path().join("app.py"), "def handler(e, c):\n    return 1\n".repeat(50)).unwrap();
        let b = build(d.path()).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.files, 2, "excluded caches and .pyc files");
        std::fs::write(d.path().join("pkg/util.py"), "X = 2\n").unwrap();
        assert_ne!(build(d.path()).unwrap().sha256, a.sha256);
    }

    #[test]
    fn zip_is_readable_by_unzip() {
        let d = tree();
        let pkg = build(d.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let zip_path = out.path().join("p.zip");
        std::fs::write(&zip_path, &pkg.bytes).unwrap();
        let status = std::process::Command::new("unzip").arg("-tq").arg(&zip_path).output();
        let Ok(o) = status else {
            eprintln!("skipping unzip check: `unzip` is not installed");
            return;
        };
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let list = std::process::Command::new("unzip").arg("-Z1").arg(&zip_path).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&list.stdout), "app.py\npkg/util.py\n");
    }
}
