//! The older command line, `dstcfg -r ADDR -a local` or `dstcfg -r ADDR
//! local`, turned into the subcommand form `dstcfg local -r ADDR` before
//! clap parses it: scripts and documents written for the flat option set
//! keep working unchanged, with the options before or after the action.
//!
//! [`translate`] finds the action, given with `-a ACTION` (`-aACTION`,
//! `--action ACTION`, `--action=ACTION`) or as the first word that is not
//! the value of an option, and moves it to the front. Which options take a
//! value, and which subcommands exist, it reads from the clap definition,
//! so a new option or subcommand needs nothing here.

use std::collections::HashSet;
use std::ffi::OsString;

use clap::error::ErrorKind;

/// How the action was given, for messages that name it as the user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `dstcfg local ...` (or no action: help, version).
    Subcommand,
    /// `dstcfg ... -a local ...`: messages say `-a local`.
    DashA,
}

/// The arguments in subcommand form, and how the action was given.
#[derive(Debug)]
pub struct Translated {
    /// The program name, the subcommand (if any), the other arguments.
    pub args: Vec<OsString>,
    /// How the action was given.
    pub form: Form,
}

/// The options of `cmd` and its subcommands that take their value from the
/// next argument (`-r ADDR`, `--loss-timeout 5s`; not `--wait[=TIME]`).
fn value_options(cmd: &clap::Command) -> HashSet<String> {
    let mut set = HashSet::new();
    for c in std::iter::once(cmd).chain(cmd.get_subcommands()) {
        for arg in c.get_arguments() {
            if arg.is_positional()
                || !arg.get_action().takes_values()
                || arg.is_require_equals_set()
            {
                continue;
            }
            set.extend(arg.get_short().map(|s| format!("-{s}")));
            set.extend(arg.get_long().map(|l| format!("--{l}")));
        }
    }
    set
}

/// Rewrites `args` (the first is the program name) into subcommand form.
/// `Err`: an unknown action, two different ones, or none where one is
/// needed (a usage error made with `cmd`).
pub fn translate(cmd: &clap::Command, args: Vec<OsString>) -> Result<Translated, clap::Error> {
    let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
    let takes_value = value_options(cmd);
    let mut rest: Vec<OsString> = Vec::with_capacity(args.len());
    let mut dash_a: Option<String> = None;
    let mut word: Option<(usize, String)> = None;
    let mut help_or_version = false;
    let mut iter = args.into_iter();
    let program = iter.next().unwrap_or_else(|| "dstcfg".into());
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            rest.push(arg);
            continue;
        };
        if text == "--" {
            rest.push(arg);
            rest.extend(iter.by_ref());
            break;
        }
        let action = if text == "-a" || text == "--action" {
            Some(
                iter.next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| usage(cmd, ErrorKind::InvalidValue, "-a needs an action"))?,
            )
        } else {
            // `--action=list`, `-alist`.
            text.strip_prefix("--action=")
                .or_else(|| text.strip_prefix("-a").filter(|_| !text.starts_with("--")))
                .map(str::to_string)
        };
        if let Some(action) = action {
            if let Some(first) = &dash_a {
                if *first != action {
                    return Err(two_actions(cmd, first, &action));
                }
            }
            dash_a = Some(action);
            continue;
        }
        help_or_version |= matches!(text.as_str(), "-h" | "--help" | "-V" | "--version");
        let is_value_option = takes_value.contains(&text);
        let positional = !text.starts_with('-') || text == "-";
        rest.push(arg);
        if is_value_option {
            // Its value, whatever it looks like, is not the action.
            rest.extend(iter.next());
        } else if positional && word.is_none() {
            word = Some((rest.len() - 1, text));
        }
    }

    if let Some(action) = &dash_a {
        if !names.contains(&action.as_str()) {
            return Err(unknown_action(cmd, action, &names, true));
        }
    }
    let known_word = word
        .as_ref()
        .filter(|(_, w)| names.contains(&w.as_str()))
        .cloned();
    let (action, form) = match (dash_a, known_word) {
        (Some(a), Some((i, w))) => {
            if a != w {
                return Err(two_actions(cmd, &a, &w));
            }
            rest.remove(i);
            (Some(a), Form::DashA)
        }
        (Some(a), None) => (Some(a), Form::DashA),
        (None, Some((i, w))) => {
            rest.remove(i);
            (Some(w), Form::Subcommand)
        }
        (None, None) => match &word {
            Some((_, w)) if w != "help" => return Err(unknown_action(cmd, w, &names, false)),
            // `dstcfg help [SUBCOMMAND]`, `dstcfg --help`, `dstcfg -V`:
            // clap answers those itself.
            Some(_) => (None, Form::Subcommand),
            None if help_or_version => (None, Form::Subcommand),
            None => {
                return Err(usage(
                    cmd,
                    ErrorKind::MissingRequiredArgument,
                    format!(
                        "no action given; give one of: {} (dstcfg ACTION [OPTIONS], or the \
                         older form with -a ACTION); dstcfg --help lists them",
                        names.join(", ")
                    ),
                ))
            }
        },
    };
    let mut out = Vec::with_capacity(rest.len() + 2);
    out.push(program);
    out.extend(action.map(OsString::from));
    out.extend(rest);
    Ok(Translated { args: out, form })
}

fn usage(cmd: &clap::Command, kind: ErrorKind, msg: impl std::fmt::Display) -> clap::Error {
    cmd.clone().error(kind, msg)
}

fn two_actions(cmd: &clap::Command, first: &str, second: &str) -> clap::Error {
    usage(
        cmd,
        ErrorKind::ArgumentConflict,
        format!("two actions given, {first} and {second}; give one"),
    )
}

fn unknown_action(cmd: &clap::Command, action: &str, names: &[&str], dash_a: bool) -> clap::Error {
    let what = if dash_a {
        "an action for -a"
    } else {
        "a subcommand"
    };
    usage(
        cmd,
        ErrorKind::InvalidValue,
        format!(
            "'{action}' is not {what}; give one of: {}",
            names.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn tr(args: &[&str]) -> Result<(Vec<String>, Form), clap::Error> {
        let cmd = crate::args::Cli::command();
        let args = std::iter::once("dstcfg")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        translate(&cmd, args).map(|t| {
            let args = t.args.into_iter().skip(1).map(|a| a.into_string().unwrap());
            (args.collect(), t.form)
        })
    }

    fn ok(args: &[&str]) -> Vec<String> {
        tr(args).unwrap().0
    }

    #[test]
    fn dash_a_becomes_the_subcommand() {
        assert_eq!(
            ok(&["-r", "192.0.2.1", "-a", "export", "-f", "/dev/sdb"]),
            ["export", "-r", "192.0.2.1", "-f", "/dev/sdb"]
        );
        assert_eq!(
            ok(&["-r", "192.0.2.1", "-a", "local"]),
            ["local", "-r", "192.0.2.1"]
        );
        assert_eq!(ok(&["-alist", "--json"]), ["list", "--json"]);
        assert_eq!(ok(&["--action=status"]), ["status"]);
        assert_eq!(ok(&["--json", "--action", "list"]), ["list", "--json"]);
        assert_eq!(tr(&["-a", "list"]).unwrap().1, Form::DashA);
        assert_eq!(ok(&["-a", "local", "--help"]), ["local", "--help"]);
        // `-` is -f's value (save to stdout), not a word.
        assert_eq!(
            ok(&["-f", "-", "-a", "save", "--force"]),
            ["save", "-f", "-", "--force"]
        );
        assert_eq!(
            ok(&["-a", "apply", "-f", "/etc/dst/dst.toml", "--dry-run"]),
            ["apply", "-f", "/etc/dst/dst.toml", "--dry-run"]
        );
    }

    #[test]
    fn the_action_as_a_word_anywhere() {
        assert_eq!(
            ok(&["-r", "192.0.2.1", "local"]),
            ["local", "-r", "192.0.2.1"]
        );
        assert_eq!(ok(&["list", "--json"]), ["list", "--json"]);
        assert_eq!(tr(&["list"]).unwrap().1, Form::Subcommand);
        // An option's value is never the action, whatever it says.
        assert_eq!(
            ok(&["-n", "list", "-r", "192.0.2.1", "local"]),
            ["local", "-n", "list", "-r", "192.0.2.1"]
        );
        assert_eq!(ok(&["-a", "list", "list"]), ["list"]);
        assert_eq!(
            ok(&["--wait", "local", "-r", "x"]),
            ["local", "--wait", "-r", "x"]
        );
    }

    #[test]
    fn help_and_version_pass() {
        assert_eq!(ok(&["--help"]), ["--help"]);
        assert_eq!(ok(&["-V"]), ["-V"]);
        assert_eq!(ok(&["help", "local"]), ["help", "local"]);
    }

    #[test]
    fn errors() {
        let e = tr(&["-a", "list", "status"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert!(
            e.to_string().contains("two actions given, list and status"),
            "{e}"
        );
        let e = tr(&["-a", "list", "-a", "status"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let e = tr(&["-a", "import"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
        assert!(
            e.to_string().contains("export, unexport, release, local"),
            "{e}"
        );
        assert_eq!(tr(&["lits"]).unwrap_err().kind(), ErrorKind::InvalidValue);
        let e = tr(&["-r", "192.0.2.1"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            tr(&[]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(tr(&["-a"]).unwrap_err().kind(), ErrorKind::InvalidValue);
    }
}
