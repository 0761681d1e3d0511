//! Golden tests: what dstcfg prints for fixed, synthesized netlink replies
//! and notifications, compared byte for byte with the files in
//! `tests/golden/`. The replies are built as the kernel sends them (netlink
//! header, genl header, attributes with `DST_A_PAD` before some u64s,
//! nested allow-list entries) and go through the same parsing as live ones.
//!
//! A change of the output fails these tests. If the change is meant,
//! regenerate the files and review the diff:
//!
//! ```text
//! DSTCFG_UPDATE_GOLDEN=1 cargo test golden
//! ```

use std::path::PathBuf;

use netlink_packet_core::NLA_F_NESTED;

use crate::json::{event_json, exists_json, list_json, status_json};
use crate::message::{DstMessage, Event, ListEntry, Status};
use crate::netlink::parse_datagram;
use crate::output::{
    check, event_line, exists_line, list_table, status_text, CheckResult, Timestamp,
};
use crate::uapi;

/// The family id the synthesized messages carry.
const FAMILY: u16 = 0x1b;

/// Compares `actual` with `tests/golden/<name>`, or writes it there when
/// DSTCFG_UPDATE_GOLDEN is set.
fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("DSTCFG_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with: DSTCFG_UPDATE_GOLDEN=1 cargo test golden",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "output differs from {} (first at line {}); if the change is meant, run \
             DSTCFG_UPDATE_GOLDEN=1 cargo test golden and review the diff\n--- expected\n{expected}\
             --- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

/// One attribute: header (length, type) and payload, padded to 4 bytes.
fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    out.resize((out.len() + 3) & !3, 0);
    out
}

fn u16a(kind: u16, v: u16) -> Vec<u8> {
    nla(kind, &v.to_ne_bytes())
}

fn u32a(kind: u16, v: u32) -> Vec<u8> {
    nla(kind, &v.to_ne_bytes())
}

/// A u64 as `nla_put_u64_64bit` puts it where the value would be
/// misaligned: after an empty `DST_A_PAD`.
fn u64a(kind: u16, v: u64) -> Vec<u8> {
    let mut out = nla(uapi::DST_A_PAD, &[]);
    out.extend(nla(kind, &v.to_ne_bytes()));
    out
}

fn stra(kind: u16, s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    nla(kind, &v)
}

fn addra(kind: u16, ip: &str) -> Vec<u8> {
    match ip.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V4(a) => nla(kind, &a.octets()),
        std::net::IpAddr::V6(a) => nla(kind, &a.octets()),
    }
}

/// A nested `DST_A_ALLOW` entry.
fn allow(prefix: &str, len: u8, read_only: bool) -> Vec<u8> {
    let mut inner = addra(uapi::DST_ALLOW_A_ADDR, prefix);
    inner.extend(nla(uapi::DST_ALLOW_A_PREFIX_LEN, &[len]));
    if read_only {
        inner.extend(nla(uapi::DST_ALLOW_A_READ_ONLY, &[]));
    }
    nla(uapi::DST_A_ALLOW | NLA_F_NESTED, &inner)
}

/// A netlink message of the family: nlmsghdr, genlmsghdr, `attrs`.
fn message(cmd: u8, flags: u16, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut out = (len as u32).to_ne_bytes().to_vec();
    out.extend(FAMILY.to_ne_bytes());
    out.extend(flags.to_ne_bytes());
    out.extend(7u32.to_ne_bytes()); // sequence number
    out.extend(0u32.to_ne_bytes()); // port id
    out.extend([cmd, uapi::DST_GENL_VERSION, 0, 0]);
    out.extend(attrs);
    out
}

/// Parses a datagram of `messages` as a socket would receive it.
fn receive(messages: &[Vec<u8>]) -> Vec<DstMessage> {
    let datagram: Vec<u8> = messages.concat();
    parse_datagram(&datagram, FAMILY).unwrap()
}

const NLM_F_MULTI: u16 = 2;

/// An export as a module before the security options reports it.
fn export_v1(
    path: &str,
    ip: &str,
    port: u16,
    size: u64,
    ro: bool,
    state: u32,
    sessions: u32,
) -> Vec<u8> {
    let mut b = u32a(uapi::DST_A_KIND, uapi::DST_KIND_EXPORT);
    b.extend(u32a(uapi::DST_A_STATE, state));
    b.extend(addra(uapi::DST_A_ADDR, ip));
    b.extend(u16a(uapi::DST_A_PORT, port));
    b.extend(u64a(uapi::DST_A_SIZE, size));
    if ro {
        b.extend(nla(uapi::DST_A_READ_ONLY, &[]));
    }
    b.extend(stra(uapi::DST_A_PATH, path));
    b.extend(u32a(uapi::DST_A_SESSIONS, sessions));
    b
}

/// The device attributes shared by every module: kind, state, address,
/// size, index, name, depth.
fn device_base(
    index: u32,
    ip: &str,
    port: u16,
    size: u64,
    ro: bool,
    state: u32,
    depth: u32,
) -> Vec<u8> {
    let mut b = u32a(uapi::DST_A_KIND, uapi::DST_KIND_DEVICE);
    b.extend(u32a(uapi::DST_A_STATE, state));
    b.extend(addra(uapi::DST_A_ADDR, ip));
    b.extend(u16a(uapi::DST_A_PORT, port));
    b.extend(u64a(uapi::DST_A_SIZE, size));
    if ro {
        b.extend(nla(uapi::DST_A_READ_ONLY, &[]));
    }
    b.extend(u32a(uapi::DST_A_INDEX, index));
    b.extend(stra(uapi::DST_A_DISK_NAME, &format!("dst{index}")));
    b.extend(u32a(uapi::DST_A_QUEUE_DEPTH, depth));
    b
}

/// The six settings: req timeout, max resends, reconnect delay, ping
/// interval, ping timeout, loss timeout.
fn settings(v: [u32; 6]) -> Vec<u8> {
    let kinds = [
        uapi::DST_A_REQ_TIMEOUT_MS,
        uapi::DST_A_MAX_RESENDS,
        uapi::DST_A_RECONNECT_DELAY_MS,
        uapi::DST_A_PING_INTERVAL_MS,
        uapi::DST_A_PING_TIMEOUT_MS,
        uapi::DST_A_LOSS_TIMEOUT_MS,
    ];
    kinds.iter().zip(v).flat_map(|(k, v)| u32a(*k, v)).collect()
}

const DEFAULTS: [u32; 6] = [15000, 10, 1000, 5000, 10000, 60000];

/// The dump of a module before the security options (the first dstcfg's
/// golden entries): two exports, a device with every counter, one from a
/// module without settings or counters, one past its loss timeout.
fn dump_v1() -> Vec<DstMessage> {
    let mut dev0 = device_base(
        0,
        "10.0.0.1",
        1025,
        1536 << 20,
        false,
        uapi::DST_STATE_CONNECTED,
        128,
    );
    dev0.extend(settings(DEFAULTS));
    dev0.extend(u32a(uapi::DST_A_IN_FLIGHT, 0));
    for (kind, v) in [
        (uapi::DST_A_RECONNECTS, 2),
        (uapi::DST_A_RESENDS, 0),
        (uapi::DST_A_TIMEOUTS, 1),
        (uapi::DST_A_IO_ERRORS, 0),
        (uapi::DST_A_BYTES_READ, 1 << 20),
        (uapi::DST_A_BYTES_WRITTEN, 2 << 20),
    ] {
        dev0.extend(u64a(kind, v));
    }
    let dev12 = device_base(
        12,
        "192.0.2.7",
        9000,
        4096,
        true,
        uapi::DST_STATE_RECONNECTING,
        64,
    );
    let mut dev3 = device_base(
        3,
        "10.9.0.1",
        1025,
        512 << 20,
        false,
        uapi::DST_STATE_FAILED,
        32,
    );
    dev3.extend(settings([15000, 10, 1000, 0, 10000, 5000]));
    dev3.extend(u64a(uapi::DST_A_RECONNECTS, 1));
    dev3.extend(u64a(uapi::DST_A_RESENDS, 17));
    dev3.extend(u64a(uapi::DST_A_IO_ERRORS, 4));
    receive(&[
        message(
            uapi::DST_CMD_LIST,
            NLM_F_MULTI,
            &export_v1(
                "/dev/sdb",
                "10.0.0.2",
                1025,
                512 << 20,
                false,
                uapi::DST_STATE_CONNECTED,
                2,
            ),
        ),
        message(
            uapi::DST_CMD_LIST,
            NLM_F_MULTI,
            &export_v1(
                "/dev/mapper/vg0-\"data\"",
                "2001:db8::2",
                2000,
                10 << 30,
                true,
                uapi::DST_STATE_CLOSING,
                1,
            ),
        ),
        message(uapi::DST_CMD_LIST, NLM_F_MULTI, &dev0),
        message(uapi::DST_CMD_LIST, NLM_F_MULTI, &dev12),
        message(uapi::DST_CMD_LIST, NLM_F_MULTI, &dev3),
    ])
}

/// The dump of a module with the security options, queues and client ids,
/// as `dst_genl_put_entry` builds it: protection, algorithm and integrity
/// errors for both kinds; index, refused and the allow-list for exports;
/// queues and the client id for devices.
fn dump_secure() -> Vec<DstMessage> {
    let entries: Vec<Vec<u8>> = secure_entries()
        .iter()
        .map(|b| message(uapi::DST_CMD_LIST, NLM_F_MULTI, b))
        .collect();
    receive(&entries)
}

/// The attributes of each entry of [`dump_secure`]: two exports, three
/// devices.
fn secure_entries() -> [Vec<u8>; 5] {
    let security = |prot: u32, alg: &str, integrity: u64| {
        let mut b = u32a(uapi::DST_A_PROTECTION, prot);
        if !alg.is_empty() {
            b.extend(stra(uapi::DST_A_ALG, alg));
        }
        b.extend(u64a(uapi::DST_A_INTEGRITY_ERRORS, integrity));
        b
    };
    let mut exp0 = export_v1(
        "/dev/ram0",
        "10.0.0.2",
        1025,
        512 << 20,
        false,
        uapi::DST_STATE_CONNECTED,
        1,
    );
    exp0.extend(security(uapi::DST_PROT_AEAD, "gcm(aes)", 0));
    exp0.extend(u32a(uapi::DST_A_INDEX, 0));
    exp0.extend(u64a(uapi::DST_A_REFUSED, 3));
    exp0.extend(allow("10.0.0.0", 24, false));
    exp0.extend(allow("2001:db8::", 32, true));
    let mut exp1 = export_v1(
        "/dev/ram1",
        "10.0.0.2",
        1026,
        512 << 20,
        true,
        uapi::DST_STATE_CONNECTED,
        0,
    );
    exp1.extend(security(uapi::DST_PROT_CRC32C, "", 2));
    exp1.extend(u32a(uapi::DST_A_INDEX, 1));
    exp1.extend(u64a(uapi::DST_A_REFUSED, 0));
    let counters = |c: [u64; 6], in_flight: u32| {
        let mut b = u32a(uapi::DST_A_IN_FLIGHT, in_flight);
        for (kind, v) in [
            uapi::DST_A_RECONNECTS,
            uapi::DST_A_RESENDS,
            uapi::DST_A_TIMEOUTS,
            uapi::DST_A_IO_ERRORS,
            uapi::DST_A_BYTES_READ,
            uapi::DST_A_BYTES_WRITTEN,
        ]
        .into_iter()
        .zip(c)
        {
            b.extend(u64a(kind, v));
        }
        b
    };
    let mut dev0 = device_base(
        0,
        "10.0.0.2",
        1025,
        512 << 20,
        false,
        uapi::DST_STATE_CONNECTED,
        128,
    );
    dev0.extend(security(uapi::DST_PROT_AEAD, "gcm(aes)", 0));
    dev0.extend(u32a(uapi::DST_A_QUEUES, 4));
    dev0.extend(u64a(uapi::DST_A_CLIENT_ID, 0x0123_4567_89ab_cdef));
    dev0.extend(counters([0, 0, 0, 0, 3 << 30, 1 << 30], 7));
    dev0.extend(settings(DEFAULTS));
    let mut dev1 = device_base(
        1,
        "10.0.0.3",
        1025,
        512 << 20,
        false,
        uapi::DST_STATE_RECONNECTING,
        64,
    );
    dev1.extend(security(uapi::DST_PROT_HMAC, "hmac(sha256)", 5));
    dev1.extend(u32a(uapi::DST_A_QUEUES, 1));
    dev1.extend(u64a(uapi::DST_A_CLIENT_ID, 0x1234));
    dev1.extend(counters([1, 12, 1, 0, 4096, 0], 12));
    dev1.extend(settings([15000, 10, 1000, 5000, 10000, 10000]));
    let mut dev2 = device_base(
        2,
        "fd00:9::1",
        1027,
        1 << 30,
        true,
        uapi::DST_STATE_CONNECTED,
        32,
    );
    dev2.extend(security(uapi::DST_PROT_NONE, "", 0));
    dev2.extend(u32a(uapi::DST_A_QUEUES, 2));
    // A random id (the module's default) is above 2^53 almost always.
    dev2.extend(u64a(uapi::DST_A_CLIENT_ID, 0xf00d_cafe_0000_0001));
    dev2.extend(counters([0, 0, 0, 0, 0, 0], 0));
    dev2.extend(settings(DEFAULTS));
    [exp0, exp1, dev0, dev1, dev2]
}

/// The dump of a module with identities: [`dump_secure`] with the
/// export's `DST_A_NAME` after its other attributes, and a device's
/// `DST_A_NAME` (the export it is pinned to) and `DST_A_CLIENT_NAME`; one
/// export and one device of an older module among them, and a device not
/// pinned yet (an empty `DST_A_NAME`, shown as not reported). Names use the
/// whole range a name may: `!`..`~`, up to 63 characters.
fn dump_named() -> Vec<DstMessage> {
    let mut e = secure_entries();
    let mut add = |i: usize, attrs: Vec<u8>| e[i].extend(attrs);
    // export0 with the module's default name; export1 of an older module.
    add(0, stra(uapi::DST_A_NAME, "store1:ram0"));
    // dst0: pinned on its first connection; its own name the host name.
    let mut dev0 = stra(uapi::DST_A_NAME, "store1:ram0");
    dev0.extend(stra(uapi::DST_A_CLIENT_NAME, "web1"));
    add(2, dev0);
    // dst1: given both, the longest and odd characters a name may have.
    let long = format!("{}~", "x".repeat(61));
    let mut dev1 = stra(uapi::DST_A_NAME, &format!("!{long}"));
    dev1.extend(stra(uapi::DST_A_CLIENT_NAME, "web-1.example.org/\\"));
    add(3, dev1);
    // dst2: not pinned yet.
    let mut dev2 = stra(uapi::DST_A_NAME, "");
    dev2.extend(stra(uapi::DST_A_CLIENT_NAME, "web1"));
    add(4, dev2);
    let entries: Vec<Vec<u8>> = e
        .iter()
        .map(|b| message(uapi::DST_CMD_LIST, NLM_F_MULTI, b))
        .collect();
    receive(&entries)
}

/// The dump of a module with the one-writer rule: [`dump_named`] whose
/// first export has a holder of its write access (`DST_A_WRITER_*` before
/// the index, as `dst_genl_put_entry` puts them) and whose second export is
/// shared (`DST_A_SHARED`, and no holder).
fn dump_writer() -> Vec<DstMessage> {
    let mut msgs = dump_named();
    let with = |msg: &DstMessage, front: Vec<u8>| {
        // Re-encode: the holder's attributes first, then the others.
        let mut attrs = front;
        let mut rest = vec![0u8; netlink_packet_core::Emitable::buffer_len(msg)];
        netlink_packet_core::Emitable::emit(msg, &mut rest);
        attrs.extend(rest);
        receive(&[message(uapi::DST_CMD_LIST, NLM_F_MULTI, &attrs)]).remove(0)
    };
    let mut holder = stra(uapi::DST_A_WRITER_NAME, "web1");
    holder.extend(addra(uapi::DST_A_WRITER_ADDR, "10.0.0.7"));
    holder.extend(u16a(uapi::DST_A_WRITER_PORT, 40112));
    msgs[0] = with(&msgs[0], holder);
    msgs[1] = with(&msgs[1], nla(uapi::DST_A_SHARED, &[]));
    msgs
}

fn entries(dump: &[DstMessage]) -> Vec<ListEntry> {
    ListEntry::from_dump(dump).unwrap()
}

fn status(crypto_threads: Option<u32>) -> Status {
    status_rekey(crypto_threads, None)
}

/// A status reply with the key-update limits (MiB, seconds) of a module
/// that reports them, after the crypto threads as the module sends them.
fn status_rekey(crypto_threads: Option<u32>, rekey: Option<(u32, u32)>) -> Status {
    let mut b = stra(uapi::DST_A_VERSION, "0.2.0");
    b.extend(u32a(uapi::DST_A_PROTO_VERSION, 1));
    if let Some(n) = crypto_threads {
        b.extend(u32a(uapi::DST_A_CRYPTO_THREADS, n));
    }
    if let Some((mib, seconds)) = rekey {
        b.extend(u32a(uapi::DST_A_REKEY_MIB, mib));
        b.extend(u32a(uapi::DST_A_REKEY_SECONDS, seconds));
    }
    Status::from_replies(&receive(&[message(uapi::DST_CMD_STATUS, 0, &b)])).unwrap()
}

#[test]
fn golden_list_empty() {
    golden("list_empty.txt", &list_table(&[]));
    golden("list_empty.json", &list_json(&[]));
}

#[test]
fn golden_list_v1() {
    let e = entries(&dump_v1());
    golden("list_v1.txt", &list_table(&e));
    golden("list_v1.json", &list_json(&e));
}

#[test]
fn golden_list_secure() {
    let e = entries(&dump_secure());
    golden("list_secure.txt", &list_table(&e));
    golden("list_secure.json", &list_json(&e));
}

#[test]
fn golden_list_named() {
    let e = entries(&dump_named());
    golden("list_named.txt", &list_table(&e));
    golden("list_named.json", &list_json(&e));
    let v: serde_json::Value = serde_json::from_str(&list_json(&e)).unwrap();
    assert_eq!(v[0]["name"], "store1:ram0");
    assert!(v[1].get("name").is_none());
    assert_eq!(v[2]["export"], "store1:ram0");
    assert_eq!(v[2]["client"], "web1");
    assert_eq!(v[3]["export"].as_str().unwrap().len(), 63);
    assert_eq!(v[3]["client"], "web-1.example.org/\\");
    assert!(v[4].get("export").is_none());
    assert_eq!(v[4]["client"], "web1");
    // Exports have no export or client key, devices no name key.
    assert!(v[0].get("export").is_none() && v[0].get("client").is_none());
    assert!(v[2].get("name").is_none());
    // Without identities, the output of an older module stays as it was.
    for (a, b) in entries(&dump_secure()).iter().zip(&e) {
        let mut b = b.clone();
        match &mut b.kind {
            crate::message::EntryKind::Export { name, .. } => *name = None,
            crate::message::EntryKind::Device {
                export_name,
                client_name,
                ..
            } => {
                *export_name = None;
                *client_name = None;
            }
        }
        assert_eq!(a, &b);
    }
}

/// An export's holder of the write access and a shared export, in the
/// table (DETAIL) and in JSON (`shared`, `writer`).
#[test]
fn golden_list_writer() {
    let e = entries(&dump_writer());
    golden("list_writer.txt", &list_table(&e));
    golden("list_writer.json", &list_json(&e));
    let v: serde_json::Value = serde_json::from_str(&list_json(&e)).unwrap();
    assert_eq!(v[0]["shared"], false);
    assert_eq!(v[0]["writer"]["name"], "web1");
    assert_eq!(v[0]["writer"]["address"], "10.0.0.7");
    assert_eq!(v[0]["writer"]["port"], 40112);
    assert_eq!(v[1]["shared"], true);
    assert!(v[1]["writer"].is_null());
    // Devices have neither key.
    assert!(v[2].get("shared").is_none() && v[2].get("writer").is_none());
    let table = list_table(&e);
    assert!(table.contains("writer web1 at 10.0.0.7:40112"), "{table}");
    assert!(table.contains(", shared,"), "{table}");
    // Apart from them, the entries are those of the module before.
    for (a, b) in entries(&dump_named()).iter().zip(&e) {
        let mut b = b.clone();
        if let crate::message::EntryKind::Export { shared, writer, .. } = &mut b.kind {
            *shared = false;
            *writer = None;
        }
        assert_eq!(a, &b);
    }
}

#[test]
fn golden_status() {
    golden("status_v1_empty.txt", &status_text(&status(None), &[]));
    golden("status_v1_empty.json", &status_json(&status(None), &[]));
    golden(
        "status_v1.txt",
        &status_text(&status(None), &entries(&dump_v1())),
    );
    let s = status(Some(4));
    golden(
        "status_secure.txt",
        &status_text(&s, &entries(&dump_secure())),
    );
    // Every counter of every export and device.
    golden(
        "status_secure.json",
        &status_json(&s, &entries(&dump_secure())),
    );
    golden(
        "status_inline.txt",
        &status_text(&status(Some(0)), &entries(&dump_secure())[..2]),
    );
    golden(
        "status_named.txt",
        &status_text(&s, &entries(&dump_named())),
    );
    // Names of the exports only: the device table keeps its columns.
    let mut e = entries(&dump_named());
    e.truncate(2);
    e.extend(entries(&dump_secure()).split_off(2));
    golden("status_named_exports.txt", &status_text(&s, &e));
}

#[test]
fn golden_status_rekey() {
    // The module's defaults: 64 GiB, an hour.
    let s = status_rekey(Some(4), Some((65536, 3600)));
    golden(
        "status_rekey.txt",
        &status_text(&s, &entries(&dump_named())),
    );
    golden(
        "status_rekey.json",
        &status_json(&s, &entries(&dump_named())),
    );
    // Limits that are no whole GiB, inline crypto, nothing else.
    let small = status_rekey(Some(0), Some((1536, 1)));
    golden("status_rekey_small.txt", &status_text(&small, &[]));
    golden("status_rekey_small.json", &status_json(&small, &[]));
    let v: serde_json::Value = serde_json::from_str(&status_json(&s, &[])).unwrap();
    assert_eq!(v["rekey_mib"], 65536);
    assert_eq!(v["rekey_seconds"], 3600);
    // Without them, the output of an older module stays as it was.
    let old = status(Some(4));
    assert_eq!(
        Status {
            rekey_mib: None,
            rekey_seconds: None,
            ..s.clone()
        },
        old
    );
    assert!(!status_json(&old, &[]).contains("rekey"));
    assert!(!status_text(&old, &[]).contains("rekey"));
}

/// Notifications of every event, as `dst_shim_event` sends them (device
/// events of the first modules lack `DST_A_KIND`), in one datagram.
fn events() -> Vec<Event> {
    let device = |index: u32, event: u32, with_kind: bool| {
        let mut b = Vec::new();
        if with_kind {
            b.extend(u32a(uapi::DST_A_KIND, uapi::DST_KIND_DEVICE));
        }
        b.extend(u32a(uapi::DST_A_INDEX, index));
        b.extend(u32a(uapi::DST_A_EVENT, event));
        message(uapi::DST_CMD_EVENT, 0, &b)
    };
    let export = |index: u32, event: u32, peer: Option<(&str, u16)>, why: Option<&str>| {
        let mut b = u32a(uapi::DST_A_KIND, uapi::DST_KIND_EXPORT);
        b.extend(u32a(uapi::DST_A_INDEX, index));
        b.extend(u32a(uapi::DST_A_EVENT, event));
        if let Some((ip, port)) = peer {
            b.extend(addra(uapi::DST_A_PEER_ADDR, ip));
            b.extend(u16a(uapi::DST_A_PEER_PORT, port));
        }
        if let Some(why) = why {
            b.extend(stra(uapi::DST_A_MESSAGE, why));
        }
        message(uapi::DST_CMD_EVENT, 0, &b)
    };
    let msgs = receive(&[
        device(0, uapi::DST_EVENT_CONNECTED, false),
        device(0, uapi::DST_EVENT_LOST, true),
        device(0, uapi::DST_EVENT_RECONNECTED, true),
        device(7, uapi::DST_EVENT_FAILED, true),
        device(7, uapi::DST_EVENT_DELETED, true),
        export(
            0,
            uapi::DST_EVENT_SESSION_OPENED,
            Some(("10.0.0.5", 40212)),
            None,
        ),
        export(
            0,
            uapi::DST_EVENT_SESSION_CLOSED,
            Some(("10.0.0.5", 40212)),
            None,
        ),
        export(
            2,
            uapi::DST_EVENT_SESSION_REFUSED,
            Some(("2001:db8::9", 51000)),
            Some("this address is not on the allow-list"),
        ),
        export(
            1,
            uapi::DST_EVENT_SESSION_REFUSED,
            None,
            Some("authentication failed: \"the keys differ\""),
        ),
        device(3, 42, true),
    ]);
    msgs.iter()
        .map(|m| Event::from_message(m).unwrap().unwrap())
        .collect()
}

#[test]
fn golden_monitor() {
    let events = events();
    let mut text = String::new();
    let mut json = String::new();
    for (i, event) in events.iter().enumerate() {
        // 2026-11-24T10:15:02+01:00, then one event every 1.5 s.
        let ms = 1_795_511_702_000i64 + 1500 * i as i64;
        let time = Timestamp {
            secs: ms / 1000,
            millis: (ms % 1000) as u32,
            utc_offset: 3600,
        };
        text.push_str(&event_line(event, &time));
        text.push('\n');
        json.push_str(&event_json(event, &time));
        json.push('\n');
    }
    golden("monitor.txt", &text);
    golden("monitor.jsonl", &json);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["time"].is_string() && v["event"].is_string(), "{line}");
    }
}

#[test]
fn golden_check() {
    let mut e = entries(&dump_v1());
    e.extend(entries(&dump_secure()));
    let mut out = String::new();
    for index in [0, 12, 3, 1, 99] {
        let (status, line) = match check(index, &e) {
            CheckResult::Connected(l) => (0, l),
            CheckResult::NotConnected(l) => (1, l),
            CheckResult::Missing(l) => (2, l),
        };
        out.push_str(&format!("-d dst{index}: exit {status}: {line}\n"));
    }
    golden("check.txt", &out);
}

/// The JSON keys of the first dstcfg stay, in their order, in front.
#[test]
fn json_keys_are_stable() {
    let first_export = [
        "kind",
        "path",
        "address",
        "port",
        "size",
        "read_only",
        "state",
        "sessions",
    ];
    let first_device = [
        "kind",
        "device",
        "index",
        "address",
        "port",
        "size",
        "read_only",
        "state",
        "queue_depth",
        "req_timeout_ms",
        "max_resends",
        "reconnect_delay_ms",
        "ping_interval_ms",
        "ping_timeout_ms",
        "loss_timeout_ms",
        "in_flight",
        "reconnects",
        "resends",
        "timeouts",
        "io_errors",
        "bytes_read",
        "bytes_written",
    ];
    let json = list_json(&entries(&dump_secure()));
    let named = list_json(&entries(&dump_named()));
    for line in json
        .lines()
        .chain(named.lines())
        .filter(|l| l.trim_start().starts_with('{'))
    {
        let line = line.trim().trim_end_matches(',');
        // Keys in order of appearance.
        let mut order = Vec::new();
        let mut rest = line;
        while let Some(start) = rest.find('"') {
            let after = &rest[start + 1..];
            let end = after.find('"').unwrap();
            let word = &after[..end];
            let tail = &after[end + 1..];
            if tail.starts_with(": ") && !order.contains(&word.to_string()) {
                order.push(word.to_string());
            }
            rest = tail;
        }
        let want: &[&str] = if line.contains("\"kind\": \"export\"") {
            &first_export
        } else {
            &first_device
        };
        assert_eq!(&order[..want.len()], want, "{line}");
    }
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["allow"][1]["prefix"], "2001:db8::/32");
    assert_eq!(v[0]["allow"][1]["read_only"], true);
    assert_eq!(v[0]["index"], 0);
    assert_eq!(v[0]["refused"], 3);
    assert_eq!(v[2]["queues"], 4);
    assert_eq!(v[3]["protection"], "hmac");
    assert_eq!(v[3]["alg"], "hmac(sha256)");
    assert_eq!(v[3]["integrity_errors"], 5);
    assert!(v[4].get("alg").is_none());
    assert_eq!(v[4]["protection"], "none");
    // Client ids are exact strings, even above 2^53; exports have none.
    assert_eq!(v[2]["client_id"], "0x0123456789abcdef");
    assert_eq!(v[3]["client_id"], "0x0000000000001234");
    assert_eq!(v[4]["client_id"], "0xf00dcafe00000001");
    assert!(v[0].get("client_id").is_none());
    let v1: serde_json::Value = serde_json::from_str(&list_json(&entries(&dump_v1()))).unwrap();
    assert!(v1[2].get("client_id").is_none());
}

/// `monitor --now`: one line per export and device as it is, text and
/// JSON, exports of a module without indexes named by their path.
#[test]
fn golden_monitor_now() {
    let mut e = entries(&dump_v1());
    e.extend(entries(&dump_secure()));
    let time = Timestamp {
        secs: 1_795_511_702,
        millis: 0,
        utc_offset: 3600,
    };
    let text: String = e.iter().map(|x| exists_line(x, &time) + "\n").collect();
    let json: String = e.iter().map(|x| exists_json(x, &time) + "\n").collect();
    golden("monitor_now.txt", &text);
    golden("monitor_now.jsonl", &json);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["event"], "exists", "{line}");
        assert!(v["state"].is_string() && v["port"].is_u64(), "{line}");
    }
}

/// A loss timeout without end (`--loss-timeout infinite`, u32::MAX ms on
/// the wire) reads `infinite` in the table and in JSON.
#[test]
fn golden_infinite_loss_timeout() {
    let mut e = entries(&dump_secure());
    for entry in &mut e {
        if let crate::message::EntryKind::Device {
            index: 1, settings, ..
        } = &mut entry.kind
        {
            settings.loss_timeout_ms = Some(crate::args::LOSS_TIMEOUT_INFINITE);
        }
    }
    golden("list_infinite.txt", &list_table(&e));
    golden("list_infinite.json", &list_json(&e));
    let v: serde_json::Value = serde_json::from_str(&list_json(&e)).unwrap();
    assert_eq!(v[3]["loss_timeout_ms"], "infinite");
    assert_eq!(v[2]["loss_timeout_ms"], 60000);
}

/// The help of dstcfg and of each subcommand, as `--help` prints it (the
/// long help; clap wraps nothing, as it is built without `wrap_help`).
#[test]
fn golden_help() {
    use clap::CommandFactory;
    let mut cli = crate::args::Cli::command();
    cli.build();
    golden("help/dstcfg.txt", &cli.render_long_help().to_string());
    for sub in cli.get_subcommands_mut() {
        let name = format!("help/{}.txt", sub.get_name());
        golden(&name, &sub.render_long_help().to_string());
    }
}

/// The bash completion build.rs generated; and each subcommand's part of
/// it offers that subcommand's options only.
#[test]
fn golden_completion() {
    let bash = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/dstcfg.bash")).unwrap();
    golden("completion.bash", &bash);
    // clap_complete's bash script: `opts="..."` after `dstcfg__<sub>)`.
    let opts = |sub: &str| {
        let case = format!("dstcfg__subcmd__{sub})");
        let at = bash.find(&case).unwrap_or_else(|| panic!("no {case}"));
        let rest = &bash[at..];
        let start = rest.find("opts=\"").unwrap() + 6;
        let end = rest[start..].find('"').unwrap();
        rest[start..start + end]
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let has = |sub: &str, opt: &str| opts(sub).iter().any(|o| o == opt);
    for (sub, yes, no) in [
        (
            "local",
            &["--wait", "--loss-timeout", "--key-file", "-r"][..],
            &["--size", "--force", "--json", "-f"][..],
        ),
        (
            "export",
            &["-f", "--size", "--allow", "--key-file"][..],
            &["--wait", "--loss-timeout", "-d"][..],
        ),
        ("list", &["--json"][..], &["-r", "--count", "--now"][..]),
        (
            "monitor",
            &["--json", "--now", "--count"][..],
            &["-r", "-d"][..],
        ),
        (
            "set",
            &["-d", "--loss-timeout", "--crypto-threads"][..],
            &["-r", "--queues"][..],
        ),
        ("delete", &["-d", "--force"][..], &["--json", "-r"][..]),
        ("genkey", &["-f"][..], &["-r", "--size"][..]),
    ] {
        for opt in yes {
            assert!(has(sub, opt), "{sub} lacks {opt}: {:?}", opts(sub));
        }
        for opt in no {
            assert!(!has(sub, opt), "{sub} offers {opt}: {:?}", opts(sub));
        }
    }
}
