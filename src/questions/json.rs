//! The reports of `scan`, `holders` and the epoll sets as the JSON documents
//! `kcmp-rs scan`, `holders` and `epoll` print with `-J` / `-j`, written straight to an
//! output fd with serde_json: the memory needed follows the report, not its text. The
//! bytes are those of Python's `json.dumps(doc, ensure_ascii=False)` of the documents
//! the Python views give (`Scan.to_dict()`, `Holders.to_dict()`, the epoll command's
//! registrations; the separators `", "` and `": "`, the same escapes), and the JSON
//! Lines those of `cli._render.json_lines`, so either path prints the same text.

use std::io::{self, Write};
use std::os::fd::RawFd;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::ser::Formatter;

use rustc_hash::FxHashMap;

use super::channels::Channel;
use super::epoll::{EpollReport, Registration};
use super::holders::HoldersReport;
use super::scan::{Description, ScanReport};
use crate::sys::{self, Pid};

/// The version of every JSON document the package prints.
pub const SCHEMA_VERSION: u32 = 2;

/// Python's default separators: `", "` between items, `": "` after a key.
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// Writes to a borrowed fd (never closed here).
struct FdWriter(RawFd);

impl Write for FdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::write_all(self.0, buf).map_err(|e| io::Error::from_raw_os_error(e.0))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The standard base64 of `data`, with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `name: text` for a name /proc gave as bytes; a name that is not UTF-8 is given
/// with each invalid sequence replaced by U+FFFD, plus `NAME_bytes_b64` (the exact
/// bytes), as `_results._text_fields` does.
fn text_field<M: SerializeMap>(map: &mut M, name: &str, raw: &[u8]) -> Result<(), M::Error> {
    match std::str::from_utf8(raw) {
        Ok(text) => map.serialize_entry(name, text),
        Err(_) => {
            map.serialize_entry(name, &String::from_utf8_lossy(raw))?;
            map.serialize_entry(&format!("{name}_bytes_b64"), &base64(raw))
        }
    }
}

/// The st_mode of a /proc/PID/fd/N link as the fd's access mode.
pub fn mode_of(bits: Option<u32>) -> &'static str {
    let Some(bits) = bits else { return "?" };
    match (bits & libc::S_IRUSR != 0, bits & libc::S_IWUSR != 0) {
        (true, true) => "rw",
        (true, false) => "r",
        (false, true) => "w",
        (false, false) => "path",
    }
}

/// A short type for a description: from its target where that names it (sockets,
/// pipes, anon inodes), else from the file's st_mode; "?" when neither tells.
pub fn type_of(target: &[u8], file_mode: Option<u32>) -> String {
    if target.starts_with(b"socket:[") {
        return "SOCK".into();
    }
    if target.starts_with(b"pipe:[") {
        return "FIFO".into();
    }
    if let Some(name) = target.strip_prefix(b"anon_inode:") {
        let start = name.iter().position(|&b| b != b'[' && b != b']');
        let end = name.iter().rposition(|&b| b != b'[' && b != b']');
        return match (start, end) {
            (Some(s), Some(e)) => String::from_utf8_lossy(&name[s..=e]).into_owned(),
            _ => "anon".into(),
        };
    }
    let kind = match file_mode.map(|m| m & libc::S_IFMT) {
        Some(libc::S_IFREG) => "REG",
        Some(libc::S_IFDIR) => "DIR",
        Some(libc::S_IFCHR) => "CHR",
        Some(libc::S_IFBLK) => "BLK",
        Some(libc::S_IFIFO) => "FIFO",
        Some(libc::S_IFSOCK) => "SOCK",
        Some(libc::S_IFLNK) => "LNK",
        _ => "?",
    };
    kind.into()
}

/// One description: what it shows and its members, with the names of their processes.
struct DescriptionDoc<'a> {
    /// Type, mode and target (`None` once gone: every field "?").
    kind: &'a str,
    mode: &'a str,
    target: Option<&'a [u8]>,
    members: &'a [(Pid, i32)],
    names: &'a Names<'a>,
    boundaries: &'a [Vec<u8>],
    /// `Some("description")` for a JSON Lines record.
    record: Option<&'static str>,
}

impl<'a> DescriptionDoc<'a> {
    /// A description of the scan's report.
    fn of_scan(
        d: &'a Description,
        names: &'a Names<'a>,
        kind: &'a str,
        record: Option<&'static str>,
    ) -> Self {
        let (target, link, _) = &d.described;
        DescriptionDoc {
            kind,
            mode: if target.is_some() {
                mode_of(*link)
            } else {
                "?"
            },
            target: target.as_deref(),
            members: &d.members,
            names,
            boundaries: &d.boundaries,
            record,
        }
    }
}

/// The type of a scan's description ("?" once its target is gone).
fn kind_of(d: &Description) -> String {
    match &d.described {
        (Some(t), _, file) => type_of(t, *file),
        (None, _, _) => "?".into(),
    }
}

impl Serialize for DescriptionDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(record) = self.record {
            map.serialize_entry("record", record)?;
        }
        map.serialize_entry("type", self.kind)?;
        map.serialize_entry("mode", self.mode)?;
        match self.target {
            Some(t) => text_field(&mut map, "target", t)?,
            None => map.serialize_entry("target", "?")?,
        }
        map.serialize_entry(
            "members",
            &Members {
                members: self.members,
                names: self.names,
            },
        )?;
        if !self.boundaries.is_empty() {
            map.serialize_entry("boundaries", &Texts(self.boundaries))?;
        }
        map.end()
    }
}

/// The names a member shows: its process's command and, in a boundary audit, its
/// process's boundary value.
struct Names<'a> {
    commands: FxHashMap<Pid, &'a Option<Vec<u8>>>,
    boundary_of: Option<&'a FxHashMap<Pid, Vec<u8>>>,
}

struct Members<'a> {
    members: &'a [(Pid, i32)],
    names: &'a Names<'a>,
}

impl Serialize for Members<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.members.len()))?;
        for &(pid, fd) in self.members {
            seq.serialize_element(&MemberDoc {
                pid,
                fd,
                names: self.names,
            })?;
        }
        seq.end()
    }
}

struct MemberDoc<'a> {
    pid: Pid,
    fd: i32,
    names: &'a Names<'a>,
}

impl Serialize for MemberDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("pid", &self.pid)?;
        map.serialize_entry("fd", &self.fd)?;
        match self.names.commands.get(&self.pid) {
            Some(Some(name)) => text_field(&mut map, "command", name)?,
            _ => map.serialize_entry("command", "?")?,
        }
        if let Some(value) = self.names.boundary_of.and_then(|b| b.get(&self.pid)) {
            text_field(&mut map, "boundary", value)?;
        }
        map.end()
    }
}

/// Byte strings as JSON strings (lossy where not UTF-8: boundary values are ASCII).
struct Texts<'a>(&'a [Vec<u8>]);

impl Serialize for Texts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|v| String::from_utf8_lossy(v)))
    }
}

struct Skipped<'a>(&'a [(Pid, String)], Option<&'static str>);

impl Serialize for Skipped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (pid, reason) in self.0 {
            seq.serialize_element(&SkippedDoc(*pid, reason, self.1))?;
        }
        seq.end()
    }
}

struct SkippedDoc<'a>(Pid, &'a str, Option<&'static str>);

impl Serialize for SkippedDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(record) = self.2 {
            map.serialize_entry("record", record)?;
        }
        map.serialize_entry("pid", &self.0)?;
        map.serialize_entry("reason", self.1)?;
        map.end()
    }
}

struct RefDoc(Pid, i32, Option<&'static str>);

impl Serialize for RefDoc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(record) = self.2 {
            map.serialize_entry("record", record)?;
        }
        map.serialize_entry("pid", &self.0)?;
        map.serialize_entry("fd", &self.1)?;
        map.end()
    }
}

struct ScanDoc<'a>(&'a ScanReport, &'a Names<'a>, Selection<'a>);

impl Serialize for ScanDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("schema_version", &SCHEMA_VERSION)?;
        map.serialize_entry("descriptions", &Descriptions(r, self.1, self.2))?;
        map.serialize_entry("skipped", &Skipped(&r.skipped, None))?;
        map.serialize_entry("processes_read", &r.processes_read)?;
        map.serialize_entry("fds_classified", &r.fds_classified)?;
        map.serialize_entry("undecided", &Undecided(&r.undecided))?;
        map.serialize_entry("fd_table_shared", &r.fd_table_shared)?;
        if r.with_channels {
            map.serialize_entry("channels", &Channels(&r.channels))?;
            map.serialize_entry("channel_notes", &r.channel_notes)?;
        }
        map.end()
    }
}

/// The channels of a scan with `ipc`: each `{"kind", "ends": [{"side",
/// "descriptions": [index, ...]}]}`, indices into the document's descriptions.
struct Channels<'a>(&'a [Channel]);

impl Serialize for Channels<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|c| ChannelDoc(c, None)))
    }
}

struct ChannelDoc<'a>(&'a Channel, Option<&'static str>);

impl Serialize for ChannelDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(record) = self.1 {
            map.serialize_entry("record", record)?;
        }
        map.serialize_entry("kind", self.0.kind)?;
        let ends: Vec<EndDoc<'_>> = self.0.ends.iter().map(|(s, on)| EndDoc(s, on)).collect();
        map.serialize_entry("ends", &ends)?;
        map.end()
    }
}

struct EndDoc<'a>(&'a str, &'a [usize]);

impl Serialize for EndDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("side", self.0)?;
        map.serialize_entry("descriptions", self.1)?;
        map.end()
    }
}

/// The descriptions a document shows: every one of the report's, or those at the
/// given indices (the boundary audit's crossings), in the report's order.
#[derive(Clone, Copy)]
pub enum Selection<'a> {
    All,
    Only(&'a [usize]),
}

impl<'a> Selection<'a> {
    fn of(self, report: &'a ScanReport) -> impl Iterator<Item = &'a Description> + 'a {
        let all = &report.descriptions;
        let (every, only): (bool, &'a [usize]) = match self {
            Selection::All => (true, &[]),
            Selection::Only(only) => (false, only),
        };
        all.iter()
            .enumerate()
            .filter(move |(i, _)| every || only.binary_search(i).is_ok())
            .map(|(_, d)| d)
    }
}

struct Descriptions<'a>(&'a ScanReport, &'a Names<'a>, Selection<'a>);

impl Serialize for Descriptions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for d in self.2.of(self.0) {
            let kind = kind_of(d);
            seq.serialize_element(&DescriptionDoc::of_scan(d, self.1, &kind, None))?;
        }
        seq.end()
    }
}

struct Undecided<'a>(&'a [(Pid, i32)]);

impl Serialize for Undecided<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&(p, f)| RefDoc(p, f, None)))
    }
}

fn line<W: Write>(out: &mut W, value: &impl Serialize) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, PythonFormatter);
    // An I/O error comes back as it was (EPIPE stays EPIPE).
    value.serialize(&mut ser).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// The report as `-J` (one document) or `-j` (JSON Lines: a header, one record per
/// description, skipped process, undecided fd and shared fd table, a summary), with
/// the descriptions `selection` keeps (indices ascending).
pub fn write_scan<W: Write>(
    report: &ScanReport,
    selection: Selection<'_>,
    lines: bool,
    out: &mut W,
) -> io::Result<()> {
    write_scan_as("scan", report, selection, lines, out)
}

/// `write_scan` for the command `command` (`fds` prints a one-process scan): its name
/// in the JSON Lines header.
pub fn write_scan_as<W: Write>(
    command: &'static str,
    report: &ScanReport,
    selection: Selection<'_>,
    lines: bool,
    out: &mut W,
) -> io::Result<()> {
    let names = Names {
        commands: report.commands.iter().map(|(&p, c)| (p, c)).collect(),
        boundary_of: Some(&report.boundary_of),
    };
    if !lines {
        return line(out, &ScanDoc(report, &names, selection));
    }
    line(out, &Header(command))?;
    for d in selection.of(report) {
        let kind = kind_of(d);
        line(
            out,
            &DescriptionDoc::of_scan(d, &names, &kind, Some("description")),
        )?;
    }
    write_lists(
        out,
        &report.skipped,
        &report.undecided,
        &report.fd_table_shared,
    )?;
    for c in &report.channels {
        line(out, &ChannelDoc(c, Some("channel")))?;
    }
    let counts = [
        ("processes_read", report.processes_read as i64),
        ("fds_classified", report.fds_classified as i64),
    ];
    line(out, &Summary(&counts, &report.channel_notes))
}

/// The records every report's JSON Lines share, in the documents' order.
fn write_lists<W: Write>(
    out: &mut W,
    skipped: &[(Pid, String)],
    undecided: &[(Pid, i32)],
    fd_table_shared: &[Vec<Pid>],
) -> io::Result<()> {
    for (pid, reason) in skipped {
        line(out, &SkippedDoc(*pid, reason, Some("skipped")))?;
    }
    for &(pid, fd) in undecided {
        line(out, &RefDoc(pid, fd, Some("undecided")))?;
    }
    for pids in fd_table_shared {
        line(out, &SharedTable(pids))?;
    }
    Ok(())
}

/// `holders()`'s answer as `kcmp-rs holders -J` (the document of `Holders.to_dict()`)
/// or `-j` prints it.
pub fn write_holders<W: Write>(report: &HoldersReport, lines: bool, out: &mut W) -> io::Result<()> {
    let names = Names {
        commands: report.commands.iter().map(|(p, c)| (*p, c)).collect(),
        boundary_of: None,
    };
    let (target, mode, kind) = &report.shown;
    let description = |record| DescriptionDoc {
        kind,
        mode,
        target: target.as_deref(),
        members: &report.holders,
        names: &names,
        boundaries: &[],
        record,
    };
    if !lines {
        return line(out, &HoldersDoc(report, description(None)));
    }
    line(out, &Header("holders"))?;
    line(out, &description(Some("description")))?;
    write_lists(
        out,
        &report.skipped,
        &report.undecided,
        &report.fd_table_shared,
    )?;
    line(
        out,
        &Summary(
            &[
                ("pid", i64::from(report.target.0)),
                ("fd", i64::from(report.target.1)),
                ("processes_read", report.processes_read as i64),
                ("fds_compared", report.fds_compared as i64),
            ],
            &[],
        ),
    )
}

/// The epoll sets' answer as `kcmp-rs epoll -J` (one document: `schema_version`, `pid`,
/// `registrations`, each an `EpollTarget.to_dict()` with its `epfd` first) or `-j` (a
/// header, one `registration` record each, a summary with the pid) prints it.
pub fn write_epoll<W: Write>(report: &EpollReport, lines: bool, out: &mut W) -> io::Result<()> {
    let names = Names {
        commands: report.commands.iter().map(|(p, c)| (*p, c)).collect(),
        boundary_of: None,
    };
    let registrations = report
        .sets
        .iter()
        .flat_map(|(epfd, regs)| regs.iter().map(move |r| (*epfd, r)));
    if !lines {
        let all: Vec<RegistrationDoc> = registrations
            .map(|(epfd, r)| RegistrationDoc {
                epfd,
                r,
                names: &names,
                record: None,
            })
            .collect();
        return line(out, &EpollDoc(report.pid, &all));
    }
    line(out, &Header("epoll"))?;
    for (epfd, r) in registrations {
        line(
            out,
            &RegistrationDoc {
                epfd,
                r,
                names: &names,
                record: Some("registration"),
            },
        )?;
    }
    line(out, &Summary(&[("pid", i64::from(report.pid))], &[]))
}

struct EpollDoc<'a>(Pid, &'a [RegistrationDoc<'a>]);

impl Serialize for EpollDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("schema_version", &SCHEMA_VERSION)?;
        map.serialize_entry("pid", &self.0)?;
        map.serialize_entry("registrations", self.1)?;
        map.end()
    }
}

struct RegistrationDoc<'a> {
    epfd: i32,
    r: &'a Registration,
    names: &'a Names<'a>,
    record: Option<&'static str>,
}

impl Serialize for RegistrationDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.r;
        let mut map = s.serialize_map(None)?;
        if let Some(record) = self.record {
            map.serialize_entry("record", record)?;
        }
        map.serialize_entry("epfd", &self.epfd)?;
        map.serialize_entry("tfd", &r.tfd)?;
        map.serialize_entry("index", &r.index)?;
        map.serialize_entry("events", &r.events)?;
        map.serialize_entry("data", &r.data)?;
        map.serialize_entry("ino", &r.ino)?;
        map.serialize_entry("status", r.status.as_str())?;
        map.serialize_entry(
            "holders",
            &Members {
                members: &r.holders,
                names: self.names,
            },
        )?;
        map.end()
    }
}

struct HoldersDoc<'a>(&'a HoldersReport, DescriptionDoc<'a>);

impl Serialize for HoldersDoc<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("schema_version", &SCHEMA_VERSION)?;
        map.serialize_entry("pid", &r.target.0)?;
        map.serialize_entry("fd", &r.target.1)?;
        map.serialize_entry("description", &self.1)?;
        map.serialize_entry("skipped", &Skipped(&r.skipped, None))?;
        map.serialize_entry("undecided", &Undecided(&r.undecided))?;
        map.serialize_entry("processes_read", &r.processes_read)?;
        map.serialize_entry("fds_compared", &r.fds_compared)?;
        map.serialize_entry("fd_table_shared", &r.fd_table_shared)?;
        map.end()
    }
}

/// Writes `write(out)` to `fd`, buffered, flushed at the end.
fn write_to_fd(
    fd: RawFd,
    write: impl FnOnce(&mut io::BufWriter<FdWriter>) -> io::Result<()>,
) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 16, FdWriter(fd));
    write(&mut out)?;
    out.flush()
}

/// Writes the report to `fd` (see `write_scan`), buffered, flushed at the end.
pub fn write_scan_to_fd(
    command: &'static str,
    report: &ScanReport,
    selection: Selection<'_>,
    lines: bool,
    fd: RawFd,
) -> io::Result<()> {
    write_to_fd(fd, |out| {
        write_scan_as(command, report, selection, lines, out)
    })
}

/// Writes the answer to `fd` (see `write_epoll`), buffered, flushed at the end.
pub fn write_epoll_to_fd(report: &EpollReport, lines: bool, fd: RawFd) -> io::Result<()> {
    write_to_fd(fd, |out| write_epoll(report, lines, out))
}

/// Writes the answer to `fd` (see `write_holders`), buffered, flushed at the end.
pub fn write_holders_to_fd(report: &HoldersReport, lines: bool, fd: RawFd) -> io::Result<()> {
    write_to_fd(fd, |out| write_holders(report, lines, out))
}

struct Header(&'static str);

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("record", "header")?;
        map.serialize_entry("schema_version", &SCHEMA_VERSION)?;
        map.serialize_entry("command", self.0)?;
        map.end()
    }
}

struct SharedTable<'a>(&'a [Pid]);

impl Serialize for SharedTable<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("record", "fd_table_shared")?;
        map.serialize_entry("pids", self.0)?;
        map.end()
    }
}

/// The last JSON Lines record: the document's scalars, in its order.
/// The last JSON Lines record: the counts, and a scan's channel notes when it has some
/// (a list of strings goes in the summary, as the Python writer puts it).
struct Summary<'a>(&'a [(&'static str, i64)], &'a [String]);

impl Serialize for Summary<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("record", "summary")?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        if !self.1.is_empty() {
            map.serialize_entry("channel_notes", self.1)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"\xff\xfe/a"), "//4vYQ==");
    }

    #[test]
    fn types_and_modes_as_the_tables_say_them() {
        assert_eq!(type_of(b"anon_inode:[eventpoll]", None), "eventpoll");
        assert_eq!(type_of(b"anon_inode:inotify", None), "inotify");
        assert_eq!(type_of(b"anon_inode:[]", None), "anon");
        assert_eq!(type_of(b"pipe:[12]", None), "FIFO");
        assert_eq!(type_of(b"/dev/null", Some(libc::S_IFCHR | 0o666)), "CHR");
        assert_eq!(type_of(b"/x", None), "?");
        assert_eq!(mode_of(Some(0o500)), "r");
        assert_eq!(mode_of(Some(0o300)), "w");
        assert_eq!(mode_of(Some(0o700)), "rw");
        assert_eq!(mode_of(Some(0)), "path");
        assert_eq!(mode_of(None), "?");
    }

    #[test]
    fn a_document_has_pythons_separators_and_escapes() {
        let mut report = ScanReport::default();
        report.descriptions.push(Description {
            members: vec![(7, 3)],
            described: (
                Some(b"/tmp/a\nb\xff".to_vec()),
                Some(0o500),
                Some(libc::S_IFREG),
            ),
            boundaries: vec![],
        });
        report.commands.insert(7, Some(b"sh\t".to_vec()));
        report.skipped.push((9, "exited".into()));
        let mut out = Vec::new();
        write_scan(&report, Selection::All, false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"schema_version\": 2, \"descriptions\": [{\"type\": \"REG\", \"mode\": \"r\", \
             \"target\": \"/tmp/a\\nb\u{fffd}\", \"target_bytes_b64\": \"L3RtcC9hCmL/\", \
             \"members\": [{\"pid\": 7, \"fd\": 3, \"command\": \"sh\\t\"}]}], \
             \"skipped\": [{\"pid\": 9, \"reason\": \"exited\"}], \"processes_read\": 0, \
             \"fds_classified\": 0, \"undecided\": [], \"fd_table_shared\": []}\n"
        );
    }
}
