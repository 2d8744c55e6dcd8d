//! User and group lookup from `/etc/passwd` and `/etc/group` text (no NSS: the binary is static).
//!
//! The rules follow Docker's `USER` instruction as runc implements it
//! (`libcontainer/user.GetExecUser`), with one deliberate difference for unknown numeric uids:
//! - `name` or `uid`: the passwd entry (a name match wins over a uid match); the primary group
//!   is the entry's gid and the supplementary groups are every `/etc/group` entry that lists the
//!   user name as a member.
//! - `name:group` or `uid:gid`: the group (a name, or a number that is always taken as a gid)
//!   replaces the primary group and is the only group: like runc, an explicit group means no
//!   supplementary groups from `/etc/group`.
//! - A numeric uid with no passwd entry is accepted with gid = the same number, groups = [gid]
//!   and no home. runc gives such a uid gid 0 instead; handing the root group to a uid nobody
//!   declared is a privilege nobody asked for, so we do not. Write `1000:0` to get runc's result.

use std::path::PathBuf;

use super::UserSpec;

const PASSWD_PATH: &str = "/etc/passwd";
const GROUP_PATH: &str = "/etc/group";

/// One well-formed line of `/etc/passwd`: `name:password:uid:gid:gecos:home:shell`.
#[derive(Debug, PartialEq, Eq)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// One well-formed line of `/etc/group`: `name:password:gid:member,member`.
#[derive(Debug, PartialEq, Eq)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// A uid or gid as written in the files or in a spec. `u32::MAX` is `(uid_t) -1`, which
/// setuid(2) and setgid(2) read as "leave unchanged", so it is never a valid id.
fn parse_id(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|id| *id != u32::MAX)
}

/// `None` for comments, blank lines, NIS `+`/`-` entries and anything with missing or
/// non-numeric fields: a malformed line is skipped, never fatal.
fn parse_passwd_line(line: &str) -> Option<PasswdEntry<'_>> {
    let mut fields = line.split(':');
    let name = fields.next()?;
    if name.is_empty() || name.starts_with(['#', '+', '-']) {
        return None;
    }
    let _password = fields.next()?;
    let uid = parse_id(fields.next()?)?;
    let gid = parse_id(fields.next()?)?;
    let _gecos = fields.next();
    let home = fields.next().unwrap_or("");
    Some(PasswdEntry {
        name,
        uid,
        gid,
        home,
    })
}

fn parse_group_line(line: &str) -> Option<GroupEntry<'_>> {
    let mut fields = line.split(':');
    let name = fields.next()?;
    if name.is_empty() || name.starts_with(['#', '+', '-']) {
        return None;
    }
    let _password = fields.next()?;
    let gid = parse_id(fields.next()?)?;
    let members = fields
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|member| !member.is_empty())
        .collect();
    Some(GroupEntry { name, gid, members })
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(parse_passwd_line)
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(parse_group_line)
}

/// A user part that is a name or a uid. A name match wins, so a user literally named `1000`
/// is found by name first, as runc does.
fn find_passwd_entry<'a>(user: &str, passwd: &'a str) -> Option<PasswdEntry<'a>> {
    if let Some(entry) = passwd_entries(passwd).find(|entry| entry.name == user) {
        return Some(entry);
    }
    let uid = parse_id(user)?;
    passwd_entries(passwd).find(|entry| entry.uid == uid)
}

/// A group part: a number is always a gid (present in `/etc/group` or not), as in runc;
/// anything else must be a group name.
fn find_group_id(group_spec: &str, group: &str) -> Option<u32> {
    if let Some(gid) = parse_id(group_spec) {
        return Some(gid);
    }
    group_entries(group)
        .find(|entry| entry.name == group_spec)
        .map(|entry| entry.gid)
}

/// The primary gid first, then every group listing `user_name` as a member, each gid once.
fn groups_of(user_name: &str, primary_gid: u32, group: &str) -> Vec<u32> {
    let mut groups = vec![primary_gid];
    for entry in group_entries(group) {
        if entry.members.contains(&user_name) && !groups.contains(&entry.gid) {
            groups.push(entry.gid);
        }
    }
    groups
}

fn home_of(entry: &PasswdEntry<'_>) -> Option<PathBuf> {
    (!entry.home.is_empty()).then(|| PathBuf::from(entry.home))
}

/// Resolves `name`, `uid`, `name:group` or `uid:gid` against the text of `/etc/passwd` and
/// `/etc/group`. `None` when the user (or the group) does not exist; see the module doc for
/// the rules. Pure: the caller supplies the file contents.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Option<UserSpec> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user_part, group_part)) => (user_part, Some(group_part)),
        None => (spec, None),
    };
    if user_part.is_empty() {
        return None;
    }
    let explicit_gid = match group_part {
        Some(group_spec) => Some(find_group_id(group_spec, group)?),
        None => None,
    };
    match find_passwd_entry(user_part, passwd) {
        Some(entry) => {
            let (gid, groups) = match explicit_gid {
                Some(gid) => (gid, vec![gid]),
                None => (entry.gid, groups_of(entry.name, entry.gid, group)),
            };
            Some(UserSpec {
                name: entry.name.to_string(),
                uid: entry.uid,
                gid,
                groups,
                home: home_of(&entry),
            })
        }
        None => {
            let uid = parse_id(user_part)?;
            let gid = explicit_gid.unwrap_or(uid);
            Some(UserSpec {
                name: user_part.to_string(),
                uid,
                gid,
                groups: vec![gid],
                home: None,
            })
        }
    }
}

/// A file that cannot be read counts as empty: images without `/etc/group` exist, and then
/// numeric uids still work while names fail as "no such user".
fn read_or_empty(path: &str) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            log::warn!("cannot read {path}, treating it as empty: {error}");
            String::new()
        }
    }
}

/// `resolve_user` against this system's `/etc/passwd` and `/etc/group`.
pub fn resolve_user_from_system(spec: &str) -> Option<UserSpec> {
    resolve_user(
        spec,
        &read_or_empty(PASSWD_PATH),
        &read_or_empty(GROUP_PATH),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment line
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

broken line without colons
short:x:12
baduid:x:abc:100:bad:/home/bad:/bin/sh
negative:x:-5:100::/home/neg:/bin/sh
toolarge:x:4294967296:100::/home/big:/bin/sh
minusone:x:4294967295:100::/home/m:/bin/sh
+nisuser::::::
app:x:1000:1000:App User:/home/app:/bin/sh
nohome:x:1001:1001:::/bin/sh
minimal:x:1002:1002
1500:x:2000:2000:numeric name:/home/n:/bin/sh
app:x:3000:3000:duplicate, first one wins:/x:/bin/sh
";

    const GROUP: &str = "\
root:x:0:
daemon:x:1:
app:x:1000:
nohome:x:1001:
staff:x:50:app,other
docker:x:999: other , app
bad:x:notanumber:app
# comment:x:7:app
short:x
again:x:1000:app
wheel:x:10:root,app,app
empty:x:60:
";

    fn user(
        name: &str,
        uid: u32,
        gid: u32,
        groups: &[u32],
        home: Option<&str>,
    ) -> Option<UserSpec> {
        Some(UserSpec {
            name: name.to_string(),
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.map(PathBuf::from),
        })
    }

    #[test]
    fn resolves_specs() {
        let cases: Vec<(&str, Option<UserSpec>)> = vec![
            ("root", user("root", 0, 0, &[0, 10], Some("/root"))),
            ("0", user("root", 0, 0, &[0, 10], Some("/root"))),
            // Supplementary groups in file order, primary first, duplicates (gid 1000
            // listed again, `app` twice in wheel) dropped, malformed lines skipped.
            (
                "app",
                user("app", 1000, 1000, &[1000, 50, 999, 10], Some("/home/app")),
            ),
            (
                "1000",
                user("app", 1000, 1000, &[1000, 50, 999, 10], Some("/home/app")),
            ),
            ("nohome", user("nohome", 1001, 1001, &[1001], None)),
            ("minimal", user("minimal", 1002, 1002, &[1002], None)),
            // A name match wins over a uid match.
            ("1500", user("1500", 2000, 2000, &[2000], Some("/home/n"))),
            ("2000", user("1500", 2000, 2000, &[2000], Some("/home/n"))),
            // Numeric uid without a passwd line: gid = uid, no home.
            ("4242", user("4242", 4242, 4242, &[4242], None)),
            // user:group, group by name or number; an explicit group is the only group.
            ("app:staff", user("app", 1000, 50, &[50], Some("/home/app"))),
            ("app:0", user("app", 1000, 0, &[0], Some("/home/app"))),
            (
                "app:7777",
                user("app", 1000, 7777, &[7777], Some("/home/app")),
            ),
            (
                "1000:docker",
                user("app", 1000, 999, &[999], Some("/home/app")),
            ),
            ("4242:staff", user("4242", 4242, 50, &[50], None)),
            ("4242:0", user("4242", 4242, 0, &[0], None)),
            ("bob", None),
            ("", None),
            (":staff", None),
            ("app:", None),
            ("app:nosuchgroup", None),
            ("app:bad", None),
            ("bob:staff", None),
            ("app:staff:extra", None),
            ("baduid", None),
            ("short", None),
            ("nisuser", None),
            ("+nisuser", None),
            ("-1", None),
            ("4294967295", None),
            ("4294967296", None),
            ("1e3", None),
            (" 1000", None),
        ];
        for (spec, want) in cases {
            assert_eq!(resolve_user(spec, PASSWD, GROUP), want, "spec {spec:?}");
        }
    }

    #[test]
    fn empty_files_allow_only_numeric_ids() {
        assert_eq!(resolve_user("root", "", ""), None);
        assert_eq!(
            resolve_user("0", "", ""),
            user("0", 0, 0, &[0], None),
            "uid 0 without passwd"
        );
        assert_eq!(resolve_user("5:6", "", ""), user("5", 5, 6, &[6], None));
        assert_eq!(resolve_user("5:staff", "", ""), None);
    }

    #[test]
    fn parses_lines() {
        assert_eq!(
            parse_passwd_line("app:x:1000:1000:App:/home/app:/bin/sh"),
            Some(PasswdEntry {
                name: "app",
                uid: 1000,
                gid: 1000,
                home: "/home/app"
            })
        );
        for line in [
            "",
            "app",
            "app:x",
            "app:x:1",
            "app:x:1:z",
            "app:x::1",
            ":x:1:1",
        ] {
            assert_eq!(parse_passwd_line(line), None, "{line:?}");
        }
        assert_eq!(
            parse_group_line("staff:x:50:a, b,,c"),
            Some(GroupEntry {
                name: "staff",
                gid: 50,
                members: vec!["a", "b", "c"]
            })
        );
        assert_eq!(
            parse_group_line("solo:x:51"),
            Some(GroupEntry {
                name: "solo",
                gid: 51,
                members: vec![]
            })
        );
        for line in ["", "staff", "staff:x", "staff:x:", "staff:x:-1:", "#c:x:1:"] {
            assert_eq!(parse_group_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn reads_this_system() {
        // uid 0 resolves whether or not /etc/passwd exists or lists it.
        let root = resolve_user_from_system("0").expect("uid 0");
        assert_eq!((root.uid, root.groups.first()), (0, Some(&root.gid)));
        assert_eq!(resolve_user_from_system("no-such-user-fleet-init"), None);
    }

    #[test]
    fn never_panics_on_garbage() {
        let garbage =
            "::::::::\n:\n\u{0}:\u{0}:\u{0}\n\u{fffd}:x:1:1\nx:x:99999999999999999999:1\n";
        let resolved: Vec<Option<UserSpec>> = ["", ":", "::", "x", "1", "\u{0}", "\u{fffd}", "1:1"]
            .iter()
            .map(|spec| resolve_user(spec, garbage, garbage))
            .collect();
        assert_eq!(resolved.len(), 8);
        assert_eq!(
            resolve_user("\u{fffd}", garbage, ""),
            user("\u{fffd}", 1, 1, &[1], None)
        );
    }
}
