//! Users and groups of an image (its /etc/passwd and /etc/group), and Kubernetes' rules for
//! which uid, gid and supplementary groups a container runs with.

use std::io;
use std::path::Path;

use super::SpecError;

/// One /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One /etc/group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The parsed user and group databases of an image. Empty when the image has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDb {
    pub users: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
}

/// The identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, without duplicates, in a stable order.
    pub additional_gids: Vec<u32>,
    /// The user's home directory from /etc/passwd, if the user is listed there.
    pub home: Option<String>,
}

impl UserDb {
    /// Parses the text of /etc/passwd and /etc/group. Malformed lines are skipped, as libc does.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let users = passwd
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() < 7 {
                    return None;
                }
                Some(PasswdEntry {
                    name: f[0].to_owned(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                    home: f[5].to_owned(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() < 4 {
                    return None;
                }
                Some(GroupEntry {
                    name: f[0].to_owned(),
                    gid: f[2].parse().ok()?,
                    members: f[3]
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect();
        Self { users, groups }
    }

    /// Reads `<rootfs>/etc/passwd` and `<rootfs>/etc/group`, resolving symlinks inside the
    /// rootfs (an image's `/etc/passwd -> /usr/lib/passwd` stays in the image; nothing outside
    /// the rootfs is read). Missing files give an empty database.
    pub fn load(rootfs: &Path) -> io::Result<Self> {
        let root = std::fs::File::open(rootfs)?;
        let passwd = read_in_root(&root, "etc/passwd")?;
        let group = read_in_root(&root, "etc/group")?;
        Ok(Self::parse(&passwd, &group))
    }

    fn user_by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.uid == uid)
    }

    fn group_by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Resolves the process identity the way containerd's CRI plugin does for Kubernetes:
    /// `run_as_user` wins over the image's `User`; a user name from the image is looked up in
    /// /etc/passwd (its primary group too); `run_as_group` overrides the group; supplementary
    /// groups are the user's groups in /etc/group plus `extra_gids` (supplementalGroups and
    /// fsGroup).
    pub fn resolve(
        &self,
        image_user: Option<&str>,
        run_as_user: Option<u32>,
        run_as_group: Option<u32>,
        extra_gids: &[u32],
    ) -> Result<ResolvedUser, SpecError> {
        let (uid, mut gid, entry) = match run_as_user {
            Some(uid) => {
                let entry = self.user_by_uid(uid);
                (uid, entry.map_or(0, |e| e.gid), entry)
            }
            None => self.resolve_image_user(image_user.unwrap_or(""))?,
        };
        if let Some(g) = run_as_group {
            gid = g;
        }
        let mut additional_gids = Vec::new();
        if let Some(entry) = entry {
            for g in &self.groups {
                if g.members.contains(&entry.name) && g.gid != gid {
                    additional_gids.push(g.gid);
                }
            }
        }
        for g in extra_gids {
            additional_gids.push(*g);
        }
        let mut seen = std::collections::BTreeSet::new();
        additional_gids.retain(|g| seen.insert(*g));
        Ok(ResolvedUser {
            uid,
            gid,
            additional_gids,
            home: entry.map(|e| e.home.clone()),
        })
    }

    fn resolve_image_user(
        &self,
        spec: &str,
    ) -> Result<(u32, u32, Option<&PasswdEntry>), SpecError> {
        let (user_part, group_part) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, default_gid, entry) = if user_part.is_empty() {
            (0, 0, self.user_by_uid(0))
        } else if let Ok(uid) = user_part.parse::<u32>() {
            let entry = self.user_by_uid(uid);
            (uid, entry.map_or(0, |e| e.gid), entry)
        } else {
            let entry = self
                .user_by_name(user_part)
                .ok_or_else(|| SpecError::UnknownUser {
                    user: user_part.to_owned(),
                })?;
            (entry.uid, entry.gid, Some(entry))
        };
        let gid = match group_part {
            None | Some("") => default_gid,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    self.group_by_name(g)
                        .ok_or_else(|| SpecError::UnknownGroup {
                            group: g.to_owned(),
                        })?
                        .gid
                }
            },
        };
        Ok((uid, gid, entry))
    }
}

fn read_in_root(root: &std::fs::File, path: &str) -> io::Result<String> {
    let fd = match crate::sys::open_in_root(root, Path::new(path), libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    io::Read::read_to_string(
        &mut io::Read::take(std::fs::File::from(fd), 4 << 20),
        &mut text,
    )?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        www:x:33:33:www:/var/www:/bin/false\n\
        app:x:1000:1001:app:/home/app:/bin/sh\n\
        broken-line\n";
    const GROUP: &str =
        "root:x:0:\nwww:x:33:\nappgrp:x:1001:\nextra:x:2000:app,www\nvideo:x:44:app\n";

    fn db() -> UserDb {
        UserDb::parse(PASSWD, GROUP)
    }

    fn user(uid: u32, gid: u32, additional: &[u32], home: Option<&str>) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
            home: home.map(str::to_owned),
        }
    }

    /// image user, runAsUser, runAsGroup, extra gids, expected identity.
    type UserCase<'a> = (
        Option<&'a str>,
        Option<u32>,
        Option<u32>,
        &'a [u32],
        ResolvedUser,
    );

    #[test]
    fn identities_resolve_as_kubernetes_does() {
        let cases: &[UserCase] = &[
            (None, None, None, &[], user(0, 0, &[], Some("/root"))),
            (Some(""), None, None, &[], user(0, 0, &[], Some("/root"))),
            (
                Some("app"),
                None,
                None,
                &[],
                user(1000, 1001, &[2000, 44], Some("/home/app")),
            ),
            (
                Some("1000"),
                None,
                None,
                &[],
                user(1000, 1001, &[2000, 44], Some("/home/app")),
            ),
            (
                Some("app:video"),
                None,
                None,
                &[],
                user(1000, 44, &[2000], Some("/home/app")),
            ),
            (
                Some("app:5"),
                None,
                None,
                &[],
                user(1000, 5, &[2000, 44], Some("/home/app")),
            ),
            (Some("4242"), None, None, &[], user(4242, 0, &[], None)),
            (Some("4242:7"), None, None, &[], user(4242, 7, &[], None)),
            // runAsUser overrides the image user, and takes the primary group from passwd.
            (
                Some("app"),
                Some(33),
                None,
                &[],
                user(33, 33, &[2000], Some("/var/www")),
            ),
            (Some("app"), Some(5000), None, &[], user(5000, 0, &[], None)),
            // runAsGroup overrides the group, also of an image user.
            (
                Some("app"),
                None,
                Some(9),
                &[],
                user(1000, 9, &[2000, 44], Some("/home/app")),
            ),
            (
                None,
                Some(5000),
                Some(6000),
                &[7, 7, 8],
                user(5000, 6000, &[7, 8], None),
            ),
            (
                Some("www"),
                None,
                None,
                &[3000],
                user(33, 33, &[2000, 3000], Some("/var/www")),
            ),
        ];
        for (image_user, run_as_user, run_as_group, extra, want) in cases {
            let got = db()
                .resolve(*image_user, *run_as_user, *run_as_group, extra)
                .unwrap();
            assert_eq!(
                &got, want,
                "image user {image_user:?} runAsUser {run_as_user:?}"
            );
        }
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let err = db().resolve(Some("nobody"), None, None, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "user \"nobody\" from the image is not in its /etc/passwd"
        );
        let err = db()
            .resolve(Some("app:nogroup"), None, None, &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "group \"nogroup\" from the image is not in its /etc/group"
        );
        // runAsUser makes the image user irrelevant.
        assert!(db().resolve(Some("nobody"), Some(1), None, &[]).is_ok());
    }

    #[test]
    fn loading_resolves_symlinks_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        let lib = root.path().join("usr/lib");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("passwd"), PASSWD).unwrap();
        // Absolute symlink: must resolve to <rootfs>/usr/lib/passwd, not the host's file.
        std::os::unix::fs::symlink("/usr/lib/passwd", etc.join("passwd")).unwrap();
        // A symlink climbing out stays inside too: the host's /etc/os-release exists, the
        // rootfs's does not, so the group database comes out empty.
        std::os::unix::fs::symlink("../../../../../etc/os-release", etc.join("group")).unwrap();
        let db = UserDb::load(root.path()).unwrap();
        assert_eq!(db.users.len(), 3);
        assert!(db.groups.is_empty(), "host /etc/group must not be read");
    }
}
