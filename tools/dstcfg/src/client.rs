//! The `dst` family client: a generic netlink socket bound to the resolved
//! `dst` family, with one method per command.
//!
//! A new command gets a method here built on [`DstClient::request`] (or
//! [`DstClient::dump`] for listings), a [`crate::message::DstCmd`] variant and
//! its attributes in `message.rs`.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use netlink_packet_core::NLM_F_DUMP;

use crate::message::{
    config_attrs, dev_del_attrs, dev_set_attrs, export_del_attrs, export_resize_attrs,
    resize_reply, DeviceRequest, DeviceSettings, DstAttr, DstCmd, DstMessage, Event, ExportRequest,
    ListEntry, ModuleSettings, NewDevice, Status,
};
use crate::netlink::{Family, FamilyNotFound, GenlSocket, KernelError, Received};
use crate::uapi;

/// A connection to the `dst` generic netlink family.
pub struct DstClient {
    sock: GenlSocket,
    family: Family,
}

impl DstClient {
    /// Opens a socket and resolves the `dst` family; fails with a message
    /// saying to load the module if it is not registered.
    pub fn connect() -> Result<Self> {
        let mut sock = GenlSocket::open()?;
        let family = match sock.resolve_family(uapi::DST_GENL_NAME) {
            Ok(family) => family,
            Err(err) if err.is::<FamilyNotFound>() => bail!(
                "the dst module is not loaded (no generic netlink family \"{}\", and the \
                 kernel could not load it); load it with: modprobe dst (installed) or \
                 insmod dst.ko (from the build folder)",
                uapi::DST_GENL_NAME
            ),
            Err(err) => return Err(err),
        };
        Ok(Self { sock, family })
    }

    /// Sends a `do` request and returns its replies.
    pub fn request(&mut self, cmd: DstCmd, attrs: Vec<DstAttr>) -> Result<Vec<DstMessage>> {
        self.send(cmd, attrs, 0)
    }

    /// Sends a `dump` request and returns every message of the dump.
    pub fn dump(&mut self, cmd: DstCmd, attrs: Vec<DstAttr>) -> Result<Vec<DstMessage>> {
        self.send(cmd, attrs, NLM_F_DUMP)
    }

    fn send(&mut self, cmd: DstCmd, attrs: Vec<DstAttr>, flags: u16) -> Result<Vec<DstMessage>> {
        let number = u8::from(cmd);
        // An older module lacks newer commands; say so rather than EOPNOTSUPP.
        if !self.family.ops.is_empty() && !self.family.supports(number) {
            bail!(
                "the loaded dst module does not implement {} (command {number}); \
                 load a dst module that matches this dstcfg",
                uapi::cmd_name(number).unwrap_or("this command")
            );
        }
        let msg = DstMessage::new(cmd, attrs);
        self.sock
            .request(self.family.id, msg, flags)
            .map_err(|err| match err.downcast::<KernelError>() {
                Ok(mut kerr) => {
                    kerr.attr_names = Some(uapi::attr_name);
                    kerr.into()
                }
                Err(err) => err,
            })
    }

    /// `DST_CMD_STATUS`: module and wire protocol versions.
    pub fn status(&mut self) -> Result<Status> {
        let replies = self.request(DstCmd::Status, Vec::new())?;
        Status::from_replies(&replies).context("malformed DST_CMD_STATUS reply")
    }

    /// `DST_CMD_EXPORT_ADD`: starts serving a block device.
    pub fn export_add(&mut self, req: &ExportRequest) -> Result<()> {
        self.request(DstCmd::ExportAdd, req.attrs()).map(drop)
    }

    /// `DST_CMD_EXPORT_DEL`: stops the export listening on `addr`, the one
    /// named `name` if given.
    pub fn export_del(&mut self, addr: SocketAddr, name: Option<&str>) -> Result<()> {
        self.request(DstCmd::ExportDel, export_del_attrs(addr, name))
            .map(drop)
    }

    /// `DST_CMD_EXPORT_RELEASE`: takes the write access of the export on
    /// `addr` from the local node that holds it.
    pub fn export_release(&mut self, addr: SocketAddr, name: Option<&str>) -> Result<()> {
        self.request(DstCmd::ExportRelease, export_del_attrs(addr, name))
            .map(drop)
    }

    /// `DST_CMD_EXPORT_RESIZE`: grows the export on `addr` to `size` (none:
    /// to what its device holds now); returns the size it exports.
    pub fn export_resize(&mut self, addr: SocketAddr, size: Option<u64>) -> Result<u64> {
        let replies = self.request(DstCmd::ExportResize, export_resize_attrs(addr, size))?;
        resize_reply(&replies).context("malformed DST_CMD_EXPORT_RESIZE reply")
    }

    /// `DST_CMD_DEV_ADD`: connects to an export and creates `/dev/dstN`.
    pub fn dev_add(&mut self, req: &DeviceRequest) -> Result<NewDevice> {
        // A module older than the one-writer rule takes DST_A_READ_ONLY on
        // DEV_ADD without a word (its policy knows the flag, for exports)
        // and makes a writable device; it is the module without
        // DST_CMD_EXPORT_RELEASE.
        if req.read_only
            && !self.family.ops.is_empty()
            && !self.family.supports(uapi::DST_CMD_EXPORT_RELEASE)
        {
            bail!(
                "the loaded dst module does not know local --read-only (it would make a \
                 writable device); load the dst module that matches this dstcfg, or leave \
                 --read-only out"
            );
        }
        let replies = self.request(DstCmd::DevAdd, req.attrs())?;
        NewDevice::from_replies(&replies).context("malformed DST_CMD_DEV_ADD reply")
    }

    /// `DST_CMD_DEV_DEL`: deletes `/dev/dst<index>`; refused with EBUSY while
    /// it is open, unless `force`.
    pub fn dev_del(&mut self, index: u32, force: bool) -> Result<()> {
        self.request(DstCmd::DevDel, dev_del_attrs(index, force))
            .map(drop)
    }

    /// `DST_CMD_DEV_SET`: changes the settings given of `/dev/dst<index>`.
    pub fn dev_set(&mut self, index: u32, settings: &DeviceSettings) -> Result<()> {
        self.request(DstCmd::DevSet, dev_set_attrs(index, settings))
            .map(drop)
    }

    /// `DST_CMD_LIST`: every export and device.
    pub fn list(&mut self) -> Result<Vec<ListEntry>> {
        let msgs = self.dump(DstCmd::List, Vec::new())?;
        ListEntry::from_dump(&msgs).context("malformed DST_CMD_LIST reply")
    }

    /// `DST_CMD_CONFIG`: changes the module-wide settings given.
    pub fn config(&mut self, settings: &ModuleSettings) -> Result<()> {
        self.request(DstCmd::Config, config_attrs(settings))
            .map(drop)
    }

    /// Joins the `events` multicast group; from then on [`Self::next_events`]
    /// returns what the module reports.
    pub fn subscribe_events(&mut self) -> Result<()> {
        let name = uapi::DST_GENL_MCGRP_EVENTS;
        let Some(group) = self.family.group(name) else {
            bail!(
                "the loaded dst module has no \"{name}\" multicast group; load a dst module \
                 that matches this dstcfg"
            );
        };
        self.sock
            .join_group(group)
            .with_context(|| format!("cannot join the \"{name}\" multicast group"))
    }

    /// Waits for the next notifications. `Ok(None)`: some were lost (the
    /// receive buffer overflowed).
    pub fn next_events(&mut self) -> Result<Option<Vec<Event>>> {
        let msgs: Vec<DstMessage> = match self.sock.receive(self.family.id)? {
            Received::Messages(msgs) => msgs,
            Received::Overrun => return Ok(None),
        };
        let mut events = Vec::new();
        for msg in &msgs {
            events.extend(Event::from_message(msg).context("malformed DST_CMD_EVENT")?);
        }
        Ok(Some(events))
    }
}
