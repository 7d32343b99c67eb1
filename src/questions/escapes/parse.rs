//! What the escape audit reads as text: /proc/PID/mountinfo lines, the mount
//! namespace link, and the container a cgroup path names. Pure functions.

use rustc_hash::FxHashMap as HashMap;

/// One mount of a mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub parent: u64,
    pub mount_point: Vec<u8>,
    pub fs_type: Vec<u8>,
    pub source: Vec<u8>,
}

/// The mounts of a mountinfo text by mount id; a line that does not parse is left
/// out (the kernel writes none such).
pub fn mountinfo(text: &[u8]) -> HashMap<u64, Mount> {
    text.split(|&b| b == b'\n').filter_map(mount_line).collect()
}

/// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": id, parent,
/// device, root, mount point, options, optional fields up to "-", fs type, source.
fn mount_line(line: &[u8]) -> Option<(u64, Mount)> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let number = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<u64>().ok();
    let id = number(fields.first()?)?;
    let parent = number(fields.get(1)?)?;
    let mount_point = unescape(fields.get(4)?);
    let dash = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    Some((
        id,
        Mount {
            parent,
            mount_point,
            fs_type: unescape(fields.get(dash + 1)?),
            source: unescape(fields.get(dash + 2).copied().unwrap_or_default()),
        },
    ))
}

/// A mountinfo field with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        let digits = field
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match digits {
            Some(d) if b == b'\\' => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The inode of a namespace link text (`mnt:[4026531841]`).
pub fn namespace_inode(link: &[u8]) -> Option<u64> {
    let start = link.iter().position(|&b| b == b'[')? + 1;
    let end = link.iter().rposition(|&b| b == b']')?;
    std::str::from_utf8(link.get(start..end)?)
        .ok()?
        .parse()
        .ok()
}

/// The container runtimes a cgroup path can name.
pub const PODMAN: &str = "podman";
pub const DOCKER: &str = "docker";
pub const CONTAINERD: &str = "containerd";
pub const CRIO: &str = "cri-o";
pub const NSPAWN: &str = "systemd-nspawn";

/// The container (runtime, id) a /proc/PID/cgroup text places its process in: the
/// v2 line's path first, then the v1 `name=systemd` line's, then the other v1 lines'
/// in order (a hybrid host may leave the v2 path at "/" while a v1 hierarchy has the
/// container's); `None` when no path names one.
pub fn container_of(cgroup: &[u8]) -> Option<(&'static str, String)> {
    let mut paths: Vec<(u8, &[u8])> = Vec::new();
    for line in cgroup.split(|&b| b == b'\n') {
        let mut parts = line.splitn(3, |&b| b == b':');
        let (Some(number), Some(controllers), Some(path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rank = if number == b"0" && controllers.is_empty() {
            0
        } else if controllers == b"name=systemd" {
            1
        } else {
            2
        };
        paths.push((rank, path));
    }
    paths.sort_by_key(|&(rank, _)| rank);
    paths
        .into_iter()
        .find_map(|(_, path)| container_of_path(path))
}

/// The innermost container a cgroup path names.
pub fn container_of_path(path: &[u8]) -> Option<(&'static str, String)> {
    let path = std::str::from_utf8(path).ok()?;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    parts.iter().enumerate().rev().find_map(|(i, part)| {
        let parent = i.checked_sub(1).and_then(|p| parts.get(p)).copied();
        in_component(part, parent)
    })
}

fn in_component(part: &str, parent: Option<&str>) -> Option<(&'static str, String)> {
    let scope = |prefix: &str| {
        part.strip_prefix(prefix)
            .map(|rest| rest.strip_suffix(".scope").unwrap_or(rest))
            .filter(|id| !id.is_empty())
            .map(str::to_string)
    };
    if part.starts_with("libpod-conmon-") || part.starts_with("crio-conmon-") {
        return None;
    }
    if let Some(id) = scope("libpod-") {
        return Some((PODMAN, id));
    }
    if let Some(id) = scope("docker-") {
        return Some((DOCKER, id));
    }
    if let Some(id) = scope("cri-containerd-") {
        return Some((CONTAINERD, id));
    }
    if let Some(id) = scope("crio-") {
        return Some((CRIO, id));
    }
    if parent == Some("machine.slice") {
        if let Some(name) = part
            .strip_prefix("machine-")
            .and_then(|p| p.strip_suffix(".scope"))
        {
            return Some((NSPAWN, unit_unescape(name)));
        }
    }
    if let Some(name) = part
        .strip_prefix("systemd-nspawn@")
        .and_then(|p| p.strip_suffix(".service"))
    {
        return Some((NSPAWN, unit_unescape(name)));
    }
    let hex_id = part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit());
    match parent {
        Some("docker") if hex_id => Some((DOCKER, part.to_string())),
        Some(p) if hex_id && (p.starts_with("kubepods") || p.starts_with("pod")) => {
            Some((CONTAINERD, part.to_string()))
        }
        _ => None,
    }
}

/// A systemd unit name part with its `\xNN` escapes decoded (`a\x2db` is `a-b`).
fn unit_unescape(name: &str) -> String {
    let mut out = Vec::with_capacity(name.len());
    let bytes = name.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) if b == b'\\' && bytes.get(i + 1) == Some(&b'x') => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2a7d9e8b4c6a5f0e1d2c3b4a59687766554433221100ffeeddccbbaa9988";

    fn found(text: &str) -> Option<(&'static str, String)> {
        container_of(text.as_bytes())
    }

    #[test]
    fn mountinfo_lines_with_optional_fields_and_escapes() {
        let text = b"22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n\
                     27 22 0:4 / /tmp/a\\040b rw master:1 shared:2 - tmpfs tmp\\040fs rw\n\
                     garbage\n";
        let m = mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&22].mount_point, b"/proc");
        assert_eq!(m[&22].fs_type, b"proc");
        assert_eq!(m[&27].parent, 22);
        assert_eq!(m[&27].mount_point, b"/tmp/a b");
        assert_eq!(m[&27].source, b"tmp fs");
    }

    #[test]
    fn namespace_links() {
        assert_eq!(namespace_inode(b"mnt:[4026531841]"), Some(4_026_531_841));
        assert_eq!(namespace_inode(b"mnt:[]"), None);
        assert_eq!(namespace_inode(b"nothing"), None);
    }

    #[test]
    fn podman_systemd_cgroupfs_and_not_conmon() {
        let want = Some((PODMAN, ID.to_string()));
        assert_eq!(
            found(&format!("0::/machine.slice/libpod-{ID}.scope\n")),
            want
        );
        assert_eq!(
            found(&format!("0::/machine.slice/libpod-{ID}.scope/container\n")),
            want
        );
        assert_eq!(found(&format!("0::/libpod_parent/libpod-{ID}\n")), want);
        // Hybrid cgroups with --cgroup-manager cgroupfs: the v2 line stays at "/".
        let hybrid = format!(
            "12:memory:/libpod_parent/libpod-{ID}\n1:name=systemd:/libpod_parent/libpod-{ID}\n0::/\n"
        );
        assert_eq!(found(&hybrid), want);
        assert_eq!(
            found(&format!("0::/machine.slice/libpod-conmon-{ID}.scope\n")),
            None
        );
    }

    #[test]
    fn docker_both_drivers() {
        let want = Some((DOCKER, ID.to_string()));
        assert_eq!(
            found(&format!("0::/system.slice/docker-{ID}.scope\n")),
            want
        );
        assert_eq!(found(&format!("12:cpu,cpuacct:/docker/{ID}\n")), want);
        assert_eq!(found("0::/docker/notanid\n"), None);
    }

    #[test]
    fn kubernetes_containerd_and_crio() {
        let want = Some((CONTAINERD, ID.to_string()));
        assert_eq!(
            found(&format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{ID}.scope\n"
            )),
            want
        );
        assert_eq!(
            found(&format!("0::/kubepods/burstable/pod0a1b2c3d-4e5f/{ID}\n")),
            want
        );
        assert_eq!(found(&format!("0::/kubepods/{ID}\n")), want);
        assert_eq!(
            found(&format!("0::/kubepods.slice/crio-{ID}.scope\n")),
            Some((CRIO, ID.to_string()))
        );
        assert_eq!(
            found(&format!("0::/kubepods.slice/crio-conmon-{ID}.scope\n")),
            None
        );
    }

    #[test]
    fn nspawn_machines() {
        let want = Some((NSPAWN, "my-box".to_string()));
        assert_eq!(
            found("0::/machine.slice/machine-my\\x2dbox.scope/payload\n"),
            want
        );
        assert_eq!(
            found("0::/machine.slice/systemd-nspawn@my-box.service/payload\n"),
            want
        );
        assert_eq!(found("0::/system.slice/machine-x.scope\n"), None);
    }

    #[test]
    fn no_container() {
        assert_eq!(found("0::/user.slice/user-0.slice/session-1.scope\n"), None);
        assert_eq!(found("0::/\n"), None);
        assert_eq!(found(""), None);
    }
}
