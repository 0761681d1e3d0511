//! `dstcfg save`: the running state written as a configuration file that
//! `dstcfg apply` accepts and finds in sync.
//!
//! The kernel reports every export and device with its address, block
//! device, identities, protection, allow-list, queues and timeouts, but
//! not where keys came from, nor `max_io_pages` or an export's clients:
//! those come from the record of what `apply` set up (`record.rs`); where
//! they are unknown, the file says so in a comment, and a protection that
//! needs a key then fails `apply` until the key is filled in.

use std::fmt::Write;

use crate::config::format_ms;
use crate::message::{EntryKind, ListEntry, ModuleSettings};
use crate::plan::{device_of, export_of, Running};
use crate::record::{ManagedDevice, ManagedExport, Record};
use crate::uapi;

/// A TOML string: quoted, escaped.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A size in MiB as `rekey_after` takes it: `"64G"`, `"1536M"`.
fn mib_text(mib: u32) -> String {
    match mib {
        m if m % (1 << 20) == 0 => format!("{}T", m >> 20),
        m if m % (1 << 10) == 0 => format!("{}G", m >> 10),
        m => format!("{m}M"),
    }
}

/// The protection and algorithm lines, or a note that the key is unknown.
fn security_lines(
    out: &mut String,
    entry: &ListEntry,
    key_file: Option<&std::path::Path>,
    key_desc: Option<&str>,
    has_clients: bool,
) {
    let protection = entry.protection.unwrap_or(uapi::DST_PROT_NONE);
    if protection != uapi::DST_PROT_NONE {
        let _ = writeln!(
            out,
            "protection = {}",
            quote(&crate::output::protection_name(protection))
        );
    }
    if let Some(alg) = &entry.alg {
        let _ = writeln!(out, "alg = {}", quote(alg));
    }
    match (key_file, key_desc) {
        (Some(path), _) => {
            let _ = writeln!(out, "key_file = {}", quote(&path.display().to_string()));
        }
        (None, Some(desc)) => {
            let _ = writeln!(out, "key_desc = {}", quote(desc));
        }
        (None, None) => {
            let keyed = matches!(protection, uapi::DST_PROT_HMAC | uapi::DST_PROT_AEAD);
            if keyed && !has_clients {
                out.push_str(
                    "# The kernel does not report keys: give the pre-shared key here.\n\
                     # key_file = \"/etc/dst/psk\"\n",
                );
            }
        }
    }
}

/// The file text of the running state; `record` gives what the kernel does
/// not report.
pub fn render(module: &ModuleSettings, running: &Running, record: &Record) -> String {
    let recorded_export = |i: usize| -> Option<&ManagedExport> {
        record
            .files
            .values()
            .flat_map(|m| m.exports.iter())
            .find(|rec| export_of(running, rec) == Some(i))
    };
    let recorded_device = |i: usize| -> Option<&ManagedDevice> {
        record
            .files
            .values()
            .flat_map(|m| m.devices.iter())
            .find(|rec| device_of(running, rec) == Some(i))
    };
    let mut out = String::from(
        "# DST configuration, written by `dstcfg save` from the running state.\n\
         # `dstcfg apply` makes the running state match it; see dstcfg(8).\n",
    );
    if module.crypto_threads.is_some()
        || module.rekey_mib.is_some()
        || module.rekey_seconds.is_some()
    {
        out.push_str("\n[module]\n");
        if let Some(n) = module.crypto_threads {
            let _ = writeln!(out, "crypto_threads = {n}");
        }
        if let Some(mib) = module.rekey_mib {
            let _ = writeln!(out, "rekey_after = {}", quote(&mib_text(mib)));
        }
        if let Some(s) = module.rekey_seconds {
            let _ = writeln!(
                out,
                "rekey_interval = {}",
                quote(&format_ms(s.saturating_mul(1000), false))
            );
        }
    }
    for (i, entry) in running.entries.iter().enumerate() {
        let EntryKind::Export {
            path,
            allow,
            name,
            shared,
            ..
        } = &entry.kind
        else {
            continue;
        };
        let rec = recorded_export(i);
        out.push_str("\n[[export]]\n");
        let _ = writeln!(out, "listen = {}", quote(&entry.addr.to_string()));
        let _ = writeln!(out, "path = {}", quote(path));
        if let Some(name) = name {
            let _ = writeln!(out, "name = {}", quote(name));
        }
        if entry.read_only {
            out.push_str("read_only = true\n");
        }
        if *shared {
            out.push_str("shared = true\n");
        }
        if let Some(size) = rec.and_then(|r| r.size) {
            let _ = writeln!(out, "size = {size}");
        }
        if let Some(pages) = rec.and_then(|r| r.max_io_pages) {
            let _ = writeln!(out, "max_io_pages = {pages}");
        }
        let clients = rec.map(|r| r.clients.as_slice()).unwrap_or_default();
        security_lines(
            &mut out,
            entry,
            rec.and_then(|r| r.key_file.as_deref()),
            rec.and_then(|r| r.key_desc.as_deref()),
            !clients.is_empty(),
        );
        if !allow.is_empty() {
            let rules: Vec<String> = allow.iter().map(|a| quote(&a.to_string())).collect();
            let _ = writeln!(out, "allow = [{}]", rules.join(", "));
        }
        if rec.is_none_or(|r| !r.known) {
            out.push_str(
                "# Not made by dstcfg apply: its max_io_pages and clients with keys of their\n\
                 # own, if any, are not known; add [[export.client]] entries as needed.\n",
            );
        }
        for client in clients {
            out.push_str("\n[[export.client]]\n");
            let _ = writeln!(out, "name = {}", quote(&client.name));
            if let Some(path) = &client.key_file {
                let _ = writeln!(out, "key_file = {}", quote(&path.display().to_string()));
            }
            if let Some(desc) = &client.key_desc {
                let _ = writeln!(out, "key_desc = {}", quote(desc));
            }
            if client.read_only {
                out.push_str("read_only = true\n");
            }
        }
    }
    for (i, entry) in running.entries.iter().enumerate() {
        let EntryKind::Device {
            index,
            queue_depth,
            settings,
            queues,
            client_id,
            export_name,
            client_name,
            ..
        } = &entry.kind
        else {
            continue;
        };
        let rec = recorded_device(i);
        out.push_str("\n[[device]]\n");
        let _ = writeln!(out, "remote = {}", quote(&entry.addr.to_string()));
        let export_name = rec.map(|r| &r.export_name).unwrap_or(export_name);
        if let Some(name) = export_name {
            let _ = writeln!(out, "export_name = {}", quote(name));
        }
        if let Some(name) = client_name {
            let _ = writeln!(out, "client_name = {}", quote(name));
        }
        // A read-only device asked for reads only, as far as anyone knows:
        // made so again, it does not take the export's write access
        // (if the export granted only reads, it could not anyway).
        if rec.map_or(entry.read_only, |r| {
            r.read_only || (entry.read_only && !r.known)
        }) {
            out.push_str("read_only = true\n");
        }
        let _ = writeln!(out, "index = {index}");
        if let Some(n) = queues {
            let _ = writeln!(out, "queues = {n}");
        }
        let depth = rec.and_then(|r| r.queue_depth).unwrap_or(*queue_depth);
        if depth != 0 {
            let _ = writeln!(out, "queue_depth = {depth}");
        }
        if let Some(pages) = rec.and_then(|r| r.max_io_pages) {
            let _ = writeln!(out, "max_io_pages = {pages}");
        }
        if let Some(id) = client_id {
            let _ = writeln!(out, "client_id = {}", quote(&format!("{id:#018x}")));
        }
        security_lines(
            &mut out,
            entry,
            rec.and_then(|r| r.key_file.as_deref()),
            rec.and_then(|r| r.key_desc.as_deref()),
            false,
        );
        let keys = [
            "req_timeout",
            "max_resends",
            "reconnect_delay",
            "ping_interval",
            "ping_timeout",
            "loss_timeout",
        ];
        for (key, (_, value)) in keys.iter().zip(settings.named()) {
            let Some(value) = value else { continue };
            if *key == "max_resends" {
                let _ = writeln!(out, "{key} = {value}");
            } else {
                let text = format_ms(value, *key == "loss_timeout");
                let _ = writeln!(out, "{key} = {}", quote(&text));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;
    use crate::plan::tests::{desired, device, export, simulate, FILE};
    use crate::plan::{plan_apply, Running};

    /// The running state of `text` applied to `hand` (objects made by
    /// hand), and the record.
    fn applied(text: &str, hand: Vec<ListEntry>) -> (Running, Record) {
        let before = Running {
            module: ModuleSettings {
                crypto_threads: Some(0),
                rekey_mib: Some(64 << 10),
                rekey_seconds: Some(3600),
            },
            entries: hand,
        };
        let d = desired(text);
        let plan = plan_apply(&d, &before, &Record::default(), FILE);
        simulate(&plan, &d, &before, &Record::default())
    }

    #[test]
    fn a_saved_file_applies_as_in_sync() {
        let text = "\
[module]
rekey_after = \"16G\"
rekey_interval = \"10m\"

[[export]]
listen = \"127.0.0.1\"
path = \"/dev/ram0\"
read_only = true
size = \"1G\"
max_io_pages = 64
protection = \"aead\"
allow = [\"127.0.0.0/8\", \"10.0.0.0/8:ro\"]

[[export.client]]
name = \"web \\\"1\\\"\"
key_file = \"/etc/dst/web1.key\"
read_only = true

[[device]]
remote = \"127.0.0.1\"
queues = 2
client_id = \"0x1234\"
protection = \"hmac\"
key_desc = \"dst:pair1\"
loss_timeout = \"infinite\"
ping_interval = 0
";
        let text = text.replace("web \\\"1\\\"", "web1");
        let hand = vec![device("127.0.0.1:1026", 5, 77)];
        let (running, record) = applied(&text, hand);
        let saved = render(&running.module, &running, &record);
        for line in [
            "rekey_after = \"16G\"",
            "rekey_interval = \"10m\"",
            "listen = \"127.0.0.1:1025\"",
            "read_only = true\nsize = 1073741824\nmax_io_pages = 64\nprotection = \"aead\"",
            "allow = [\"127.0.0.0/8:rw\", \"10.0.0.0/8:ro\"]",
            "[[export.client]]\nname = \"web1\"\nkey_file = \"/etc/dst/web1.key\"\nread_only = true",
            "queue_depth = 128",
            "client_id = \"0x0000000000001234\"",
            "key_desc = \"dst:pair1\"",
            "loss_timeout = \"infinite\"",
            "ping_interval = \"0\"",
            // The device made by hand: what the kernel reports.
            "remote = \"127.0.0.1:1026\"\nexport_name = \"node1:ram0\"\nclient_name = \"node1\"\nindex = 5",
        ] {
            assert!(saved.contains(line), "{line:?} not in:\n{saved}");
        }
        // The saved file parses, and applying it changes nothing.
        let d = parse(&saved, Path::new("saved.toml"), &crate::cli::parse_remote)
            .unwrap_or_else(|e| panic!("{e}\n{saved}"));
        let plan = plan_apply(&d, &running, &record, FILE);
        assert!(plan.in_sync(), "{plan:#?}\n{saved}");
    }

    /// `shared` of an export; `read_only` of a device that asked for it,
    /// or of a read-only device apply did not make (it may have asked);
    /// not of one apply made read-write that the export made read-only.
    #[test]
    fn shared_and_read_only_are_saved() {
        let text = "\
[[export]]
listen = \"127.0.0.1\"
path = \"/dev/ram0\"
shared = true

[[device]]
remote = \"127.0.0.1\"
read_only = true

[[device]]
remote = \"127.0.0.1:1027\"
";
        let mut hand = device("127.0.0.1:1026", 5, 77);
        hand.read_only = true;
        let (mut running, record) = applied(text, vec![hand]);
        // The export on 1027 grants only reads.
        for e in &mut running.entries {
            if e.addr.port() == 1027 {
                e.read_only = true;
            }
        }
        let saved = render(&running.module, &running, &record);
        assert!(
            saved.contains("path = \"/dev/ram0\"\nname = \"node1:ram0\"\nshared = true\n"),
            "{saved}"
        );
        let devices: Vec<&str> = saved.split("[[device]]").skip(1).collect();
        let by_port = |port: &str| {
            devices
                .iter()
                .find(|d| d.contains(&format!(":{port}\"")))
                .unwrap()
                .contains("read_only = true")
        };
        assert!(
            by_port("1025") && by_port("1026") && !by_port("1027"),
            "{saved}"
        );
        let d = parse(&saved, Path::new("saved.toml"), &crate::cli::parse_remote)
            .unwrap_or_else(|e| panic!("{e}\n{saved}"));
        let plan = plan_apply(&d, &running, &record, FILE);
        assert!(plan.in_sync(), "{plan:#?}\n{saved}");
    }

    #[test]
    fn what_the_kernel_does_not_report_is_a_comment() {
        let mut exp = export("127.0.0.1:1025", "/dev/ram0");
        exp.protection = Some(uapi::DST_PROT_AEAD);
        exp.alg = Some("gcm(aes)".into());
        let running = Running {
            module: ModuleSettings::default(),
            entries: vec![exp],
        };
        let saved = render(&running.module, &running, &Record::default());
        assert!(!saved.contains("[module]"), "{saved}");
        assert!(
            saved.contains(
                "protection = \"aead\"\nalg = \"gcm(aes)\"\n# The kernel does not report keys"
            ),
            "{saved}"
        );
        assert!(saved.contains("# Not made by dstcfg apply"), "{saved}");
        // Applying it as it is fails at the missing key, naming the line.
        let err = parse(&saved, Path::new("saved.toml"), &crate::cli::parse_remote)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("export #1: protection: aead needs key_file"),
            "{err}"
        );
    }
}
