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

mod client;

#[cfg(test)]
mod proto_tests;

use proto::{
    Header, HelloBody, Op, FEATURE_DISCARD, FEATURE_FLUSH, FEATURE_FUA, FEATURE_WRITE_ZEROES,
    FLAG_FUA, VERSION,
};

const USAGE: &str = "\
usage: dstpeer <command>

commands:
  encode-hello   print the example HELLO message (header + body) as a hex dump
  encode-write   print the example WRITE header (without its data) as a hex dump
";

/// The example HELLO: versions 1..=1, every feature, 1 MiB IOs, 4 queues of
/// depth 128.
fn example_hello() -> (Header, HelloBody) {
    let body = HelloBody {
        min_version: 1,
        max_version: VERSION,
        features: FEATURE_FLUSH | FEATURE_FUA | FEATURE_DISCARD | FEATURE_WRITE_ZEROES,
        max_io_bytes: 1 << 20,
        queues: 4,
        queue_depth: 128,
        client_id: 0,
    };
    (Header::hello(), body)
}

/// The example WRITE: id 1, 4096 bytes at offset 1 MiB, with FUA.
fn example_write() -> Header {
    Header::io(Op::Write, FLAG_FUA, 1, 1 << 20, 4096)
}

/// `hexdump -C`-style dump of `bytes`, one line per 16 bytes, offsets from 0.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x} ", line * 16));
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => out.push_str(&format!(" {b:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        for &b in chunk {
            out.push(if b == b' ' || b.is_ascii_graphic() {
                char::from(b)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out
}

/// The dump printed by `encode-hello`.
fn hello_dump() -> String {
    let (header, body) = example_hello();
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(&body.encode());
    hex_dump(&bytes)
}

/// The dump printed by `encode-write`.
fn write_dump() -> String {
    hex_dump(&example_write().encode())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["encode-hello"] => print!("{}", hello_dump()),
        ["encode-write"] => print!("{}", write_dump()),
        ["client", addr, rest @ ..] => return finish(client::main(addr, rest)),
        ["pattern", rest @ ..] => return finish(client::pattern(rest)),
        ["help" | "-h" | "--help"] => print!("{USAGE}{}", client::USAGE),
        _ => {
            eprint!("{USAGE}{}", client::USAGE);
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples in the protocol document are what this tool prints.
    const DOC: &str = include_str!("../../../Documentation/protocol.md");

    #[test]
    fn doc_examples_match() {
        assert!(DOC.contains(&hello_dump()), "HELLO dump:\n{}", hello_dump());
        assert!(DOC.contains(&write_dump()), "WRITE dump:\n{}", write_dump());
    }

    #[test]
    fn examples_are_valid() {
        let (header, body) = example_hello();
        assert_eq!(Header::decode(&header.encode()), Ok(header));
        assert_eq!(HelloBody::decode(&body.encode()), Ok(body));
        assert_eq!(body.validate(), Ok(()));
        let write = example_write();
        assert_eq!(Header::decode(&write.encode()), Ok(write));
    }

    #[test]
    fn hex_dump_format() {
        let bytes: Vec<u8> = (0x41..0x41 + 20).collect();
        assert_eq!(
            hex_dump(&bytes),
            "00000000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n\
             00000010  51 52 53 54                                       |QRST|\n"
        );
    }
}
