// SPDX-License-Identifier: GPL-2.0

//! `dstpeer`: the userspace side of the DST wire protocol.
//!
//! It compiles the protocol definition of the kernel module (`dst/proto.rs`)
//! as its own module, so the unit tests here exercise the very code the module
//! runs. The binary prints example messages as hex dumps (the examples of
//! `Documentation/protocol.md` come from it) and acts as a local node against
//! a running export (`dstpeer client`, in `client.rs`), the start of a test
//! peer and fuzzer.

use std::process::ExitCode;

#[path = "../../../dst/proto.rs"]
mod proto;

mod attack;
mod client;
mod examples;
mod fuzz;
mod sec;
mod server;
mod wire;

#[cfg(test)]
mod proto_tests;

use sec::SecConfig;

const USAGE: &str = "\
usage: dstpeer <command>

commands:
  encode-hello      print the example HELLO message (header + body) as a hex dump
  encode-write      print the example WRITE header (without its data) as a hex dump
  encode-handshake  print the example CHALLENGE, AUTH and HELLO_REPLY, and the
                    session keys, of the example HELLO
  encode-sealed     print the example PINGs protected with crc32c, hmac and aead
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
        ["client", addr, rest @ ..] => return finish(client::main(addr, rest, &sec)),
        ["attack-export", addr, rest @ ..] => return finish(attack::main(addr, rest, &sec)),
        ["fuzz", addr, rest @ ..] => return finish(fuzz::main(addr, rest, &sec)),
        ["server", addr, rest @ ..] => return finish(server::main(addr, rest, &sec)),
        ["pattern", rest @ ..] => return finish(client::pattern(rest)),
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
        "{USAGE}{}{}{}{}",
        client::USAGE,
        attack::USAGE,
        fuzz::USAGE,
        server::USAGE
    )
}

/// Takes `--protection MODE`, `--alg NAME` and `--key-file PATH` out of
/// `args`: the security settings and the other arguments.
fn security_options(args: &[String]) -> Result<(SecConfig, Vec<String>), client::Failure> {
    let mut rest = Vec::new();
    let (mut protection, mut alg, mut key) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--protection" => &mut protection,
            "--alg" => &mut alg,
            "--key-file" => &mut key,
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
    let sec = SecConfig::new(protection.as_deref().unwrap_or("none"), alg.as_deref(), key)
        .map_err(|e| client::usage(e.0))?;
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
