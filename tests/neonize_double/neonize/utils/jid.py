"""neonize/utils/jid.py: `build_jid` and `Jid2String`, as neonize 0.5.2 has them."""

from __future__ import annotations

from ..proto.Neonize_pb2 import JID


def Jid2String(jid: JID) -> str:
    if jid.RawAgent > 0:
        return f"{jid.User}.{jid.RawAgent}:{jid.Device}@{jid.Server}"
    if jid.Device > 0:
        return f"{jid.User}:{jid.Device}@{jid.Server}"
    if len(jid.User) > 0:
        return f"{jid.User}@{jid.Server}"
    return jid.Server


def build_jid(phone_number: str, server: str = "s.whatsapp.net") -> JID:
    return JID(User=phone_number, Device=0, Integrator=0, IsEmpty=False, RawAgent=0, Server=server)


def parse(value: str) -> JID:
    """`user[:device]@server` as a JID (whatsmeow types.ParseJID)."""
    user, _, server = value.partition("@")
    user, _, device = user.partition(":")
    return JID(
        User=user,
        Device=int(device or 0),
        Integrator=0,
        IsEmpty=not user and not server,
        RawAgent=0,
        Server=server,
    )
