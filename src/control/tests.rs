//! The listener in a temp state dir: creation, stale and planted files, and serving clients
//! (request, refusals, limits, deadlines) without the loop.

#[cfg(test)]
use super::*;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

fn fresh(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fleet-control-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn error_of(event: Option<Event>) -> String {
    let event = event.expect("an event");
    assert_eq!(event.name, "control_unavailable");
    event
        .field("error")
        .and_then(Value::as_str)
        .unwrap()
        .to_string()
}

#[test]
fn the_socket_is_private_and_removed_at_close() {
    let dir = fresh("life");
    let (mut server, event) = ControlServer::open(&dir);
    assert!(event.is_none(), "{event:?}");
    let meta = std::fs::symlink_metadata(dir.join(SOCKET_NAME)).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // A second one finds it live and leaves it alone.
    let (second, event) = ControlServer::open(&dir);
    assert!(!second.is_listening());
    assert!(error_of(event).contains("another fleet-init is listening"));
    assert!(dir.join(SOCKET_NAME).exists());
    server.close();
    assert!(!dir.join(SOCKET_NAME).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stale_sockets_and_planted_links_are_replaced_never_followed() {
    let dir = fresh("stale");
    drop(UnixListener::bind(dir.join(SOCKET_NAME)).unwrap());
    let (mut server, event) = ControlServer::open(&dir);
    assert!(event.is_none() && server.is_listening(), "{event:?}");
    server.close();
    let outside = dir.with_extension("outside");
    std::fs::write(&outside, b"precious").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join(SOCKET_NAME)).unwrap();
    let (mut server, event) = ControlServer::open(&dir);
    assert!(event.is_none() && server.is_listening(), "{event:?}");
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    server.close();
    std::fs::write(dir.join(SOCKET_NAME), b"mine").unwrap();
    let (server, event) = ControlServer::open(&dir);
    assert!(!server.is_listening());
    assert!(error_of(event).contains("not a socket"));
    assert_eq!(std::fs::read(dir.join(SOCKET_NAME)).unwrap(), b"mine");
    std::fs::remove_file(&outside).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_refused_state_dir_gives_no_socket() {
    let dir = fresh("refused");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (server, event) = ControlServer::open(&dir);
    assert!(!server.is_listening());
    assert!(error_of(event).contains("state dir refused"));
    // A missing dir is made, as the registry makes it; one that cannot be says why.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.join("file"), b"").unwrap();
    let (server, event) = ControlServer::open(&dir.join("file/state"));
    assert!(!server.is_listening());
    let error = error_of(event);
    assert!(
        error.contains("state dir unusable") && !error.contains("No such file"),
        "the cause, not ENOENT: {error}"
    );
    assert_eq!(server.next_deadline(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn connect(dir: &Path) -> UnixStream {
    UnixStream::connect(dir.join(SOCKET_NAME)).unwrap()
}

fn read_reply(stream: &mut UnixStream) -> Value {
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    serde_json::from_str(text.trim_end()).unwrap()
}

#[test]
fn requests_are_read_replies_written_and_limits_kept() {
    let dir = fresh("serve");
    let (mut server, _) = ControlServer::open(&dir);
    assert_eq!(server.next_deadline(), None, "no client, no deadline");
    let mut good = connect(&dir);
    good.write_all(b"{\"verb\":\"status\"}\n").unwrap();
    let mut bad = connect(&dir);
    bad.write_all(b"{\"verb\":\"fly\"}\n").unwrap();
    let mut huge = connect(&dir);
    huge.write_all(&vec![b'x'; MAX_REQUEST_BYTES + 10]).unwrap();
    let silent = connect(&dir);
    let received = server.serve(100);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].request.verb, protocol::Verb::Status);
    assert_eq!(received[0].peer_uid, nix::unistd::geteuid().as_raw());
    assert_eq!(server.next_deadline(), Some(100 + CLIENT_DEADLINE_MS));
    server.reply(received[0].client, &serde_json::json!({"ok": true}));
    assert_eq!(read_reply(&mut good)["ok"], true);
    let refused = read_reply(&mut bad);
    assert_eq!(refused["error"], "unknown verb \"fly\"");
    let too_large = read_reply(&mut huge);
    assert!(too_large["error"].as_str().unwrap().contains("larger than"));
    // The silent client holds its slot until its deadline, then is dropped.
    assert_eq!(server.clients.len(), 1);
    server.serve(100 + CLIENT_DEADLINE_MS);
    assert!(server.clients.is_empty());
    assert_eq!(server.next_deadline(), None);
    drop(silent);
    server.close();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn beyond_the_client_limit_the_next_is_told_busy() {
    let dir = fresh("busy");
    let (mut server, _) = ControlServer::open(&dir);
    let held: Vec<UnixStream> = (0..MAX_CLIENTS).map(|_| connect(&dir)).collect();
    assert!(server.serve(0).is_empty());
    assert_eq!(server.clients.len(), MAX_CLIENTS);
    let mut extra = connect(&dir);
    server.serve(1);
    assert_eq!(server.clients.len(), MAX_CLIENTS);
    assert!(read_reply(&mut extra)["error"]
        .as_str()
        .unwrap()
        .starts_with("busy"));
    drop(held);
    server.close();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_reply_nobody_reads_is_written_as_far_as_it_goes_then_dropped_at_the_deadline() {
    let dir = fresh("deaf");
    let (mut server, _) = ControlServer::open(&dir);
    let mut deaf = connect(&dir);
    deaf.write_all(b"{\"verb\":\"status\"}\n").unwrap();
    let received = server.serve(0);
    assert_eq!(received.len(), 1);
    // A reply far larger than the socket buffer: the send stops at EAGAIN, never blocks.
    let big = serde_json::json!({"ok": true, "pad": "x".repeat(8 << 20)});
    server.reply(received[0].client, &big);
    assert_eq!(server.clients.len(), 1, "still being written");
    assert_eq!(server.clients[0].stage, Stage::Writing);
    let written = server.clients[0].written;
    assert!(written > 0 && written < 8 << 20, "{written}");
    assert_eq!(
        server.poll_fds().len(),
        2,
        "the listener and the client's POLLOUT"
    );
    server.serve(CLIENT_DEADLINE_MS - 1);
    assert_eq!(server.clients.len(), 1);
    server.serve(CLIENT_DEADLINE_MS);
    assert!(server.clients.is_empty(), "dropped at its deadline");
    drop(deaf);
    server.close();
    std::fs::remove_dir_all(&dir).unwrap();
}
