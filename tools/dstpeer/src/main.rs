// SPDX-License-Identifier: GPL-2.0

//! `dstpeer`: the userspace side of the DST wire protocol.
//!
//! It compiles the protocol definition of the kernel module (`dst/proto.rs`)
//! as its own module, so the unit tests here exercise the very code the module
//! runs, and implements the handshake's cryptography on its own (`sec.rs`),
//! so that it checks the module's. The binary prints example messages as hex
//! dumps (the examples of `Documentation/protocol.md` come from it), acts as a
//! local node (`client.rs`) or an export (`server.rs`), well-behaved or
//! hostile (`attack.rs`, `fuzz.rs`), and helps tests look at the wire: a
//! recording TCP forwarder (`proxy.rs`) and a decrypter of what it recorded
//! (`capture.rs`).

use std::process::ExitCode;

// The module's code, kept buildable by the oldest Rust the kernel takes: a
// newer clippy's `is_multiple_of` is not for it.
#[allow(clippy::manual_is_multiple_of)]
#[path = "../../../dst/proto.rs"]
mod proto;

mod attack;
mod capture;
mod client;
mod examples;
mod fuzz;
mod proxy;
mod sec;
mod server;
mod wire;

#[cfg(test)]
mod proto_tests;

use proto::Name;
use sec::SecConfig;

const USAGE: &str = "\
usage: dstpeer <command>

commands:
  encode-hello      print the example HELLO message (header + body) as a hex dump
  encode-write      print the example WRITE header (without its data) as a hex dump
  encode-handshake  print the example CHALLENGE, AUTH and HELLO_REPLY, and the
                    session keys, of the example HELLO
  encode-sealed     print the example PINGs protected with crc32c, hmac and aead
  encode-key-update print the example KEY_UPDATE (hmac) and the PING after it,
                    sealed with the next key
";

/// The options every role takes.
const COMMON_USAGE: &str = "\
  (client, attack-export, fuzz and server take --protection MODE, --alg NAME
   and --key-file PATH: the security settings of the peer; and the identities:
   --client-name NAME  this peer's identity as a local node (default dstpeer-client)
   --export-name NAME  the export a local node asks for (default: empty, any)
   --name NAME         this peer's identity as an export (default dstpeer);
   and, in the modes with keys (hmac, aead), when this peer replaces its
   sending key on its own, sending a KEY_UPDATE before the next message:
   --rekey-after BYTES  after BYTES (K, M, G suffixes; headers and payloads)
                        sealed under one key (1: before every message)
   --rekey-interval SECS  after a key has been in use SECS seconds
   (default: never; no effect in none and crc32c; KEY_UPDATEs from the peer
   are taken in hmac and aead, and end the connection in none and crc32c))
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (sec, args) = match security_options(&args) {
        Ok(v) => v,
        Err(f) => {
            eprintln!("dstpeer: {}", f.msg);
            return ExitCode::from(2);
        }
    };
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["encode-hello"] => print!("{}", examples::hello_dump()),
        ["encode-write"] => print!("{}", examples::write_dump()),
        ["encode-handshake"] => print!("{}", examples::handshake_dump()),
        ["encode-sealed"] => print!("{}", examples::sealed_dump()),
        ["encode-key-update"] => print!("{}", examples::key_update_dump()),
        ["client", addr, rest @ ..] => return finish(client::main(addr, rest, &sec)),
        ["attack-export", addr, rest @ ..] => return finish(attack::main(addr, rest, &sec)),
        ["fuzz", addr, rest @ ..] => return finish(fuzz::main(addr, rest, &sec)),
        ["server", addr, rest @ ..] => return finish(server::main(addr, rest, &sec)),
        ["pattern", rest @ ..] => return finish(client::pattern(rest)),
        ["proxy", rest @ ..] => return finish(proxy::main(rest)),
        ["decrypt-capture", rest @ ..] => return finish(capture::main(rest, &sec)),
        ["help" | "-h" | "--help"] => print!("{}", usage_text()),
        _ => {
            eprint!("{}", usage_text());
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// The whole usage text.
fn usage_text() -> String {
    format!(
        "{USAGE}{}{}{}{}{}{}{COMMON_USAGE}",
        client::USAGE,
        attack::USAGE,
        fuzz::USAGE,
        server::USAGE,
        proxy::USAGE,
        capture::USAGE
    )
}

/// Takes `--protection MODE`, `--alg NAME`, `--key-file PATH`, the
/// identities (`--client-name`, `--export-name`, `--name`) and the key
/// replacement (`--rekey-after`, `--rekey-interval`) out of `args`: the
/// security settings and the other arguments.
fn security_options(args: &[String]) -> Result<(SecConfig, Vec<String>), client::Failure> {
    let mut rest = Vec::new();
    let (mut protection, mut alg, mut key) = (None, None, None);
    let (mut client, mut want, mut identity) = (None, None, None);
    let (mut rekey_after, mut rekey_interval) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--protection" => &mut protection,
            "--alg" => &mut alg,
            "--key-file" => &mut key,
            "--client-name" => &mut client,
            "--export-name" => &mut want,
            "--name" => &mut identity,
            "--rekey-after" => &mut rekey_after,
            "--rekey-interval" => &mut rekey_interval,
            _ => {
                rest.push(a.clone());
                continue;
            }
        };
        let v = it
            .next()
            .ok_or_else(|| client::usage(format!("{a} needs a value")))?;
        *slot = Some(v.clone());
    }
    let key = match key {
        Some(path) => Some(SecConfig::read_key(&path).map_err(|e| client::usage(e.0))?),
        None => None,
    };
    let mut sec = SecConfig::new(protection.as_deref().unwrap_or("none"), alg.as_deref(), key)
        .map_err(|e| client::usage(e.0))?;
    let name = |what: &str, v: &Option<String>, empty_ok: bool, default: Name| match v {
        Some(s) => sec::parse_name(what, s, empty_ok).map_err(|e| client::usage(e.0)),
        None => Ok(default),
    };
    sec.client = name("--client-name", &client, false, sec.client)?;
    sec.want = name("--export-name", &want, true, sec.want)?;
    sec.identity = name("--name", &identity, false, sec.identity)?;
    let positive = |what: &str, v: &str| match client::parse_size(v) {
        Ok(0) | Err(_) => Err(client::usage(format!(
            "{what} {v}: a positive number (K, M, G suffixes)"
        ))),
        Ok(n) => Ok(n),
    };
    if let Some(v) = &rekey_after {
        sec.rekey.bytes = Some(positive("--rekey-after", v)?);
    }
    if let Some(v) = &rekey_interval {
        let secs = positive("--rekey-interval", v)?;
        sec.rekey.interval = Some(std::time::Duration::from_secs(secs));
    }
    if (rekey_after.is_some() || rekey_interval.is_some()) && !sec.protection.needs_key() {
        // Accepted, so that a script can pass the same options in every
        // mode; without keys there is nothing to replace.
        eprintln!(
            "dstpeer: note: no keys to replace in mode {}: --rekey-after and \
             --rekey-interval have no effect",
            sec.protection.as_str()
        );
    }
    Ok((sec, rest))
}

/// The exit status of a client command, its failure printed on stderr.
fn finish(r: Result<(), client::Failure>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("dstpeer: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
