# Registration and everyday commands through XEP-0050 ad-hoc commands,
# driven by slixmpp's xep_0050 client API (as Profanity's /cmd does it).
# Run by adhoc_test.go. Arguments:
#   jid password c2s_port gateway number imip_password
# Each step is bounded by STEP seconds and the whole run by TOTAL; the script
# exits by itself, 0 when every step passed. It prints one line per step:
# a word, then JSON (ASCII only).
import asyncio
import json
import logging
import ssl
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

jid, password, port, gw, number, imip_pw = sys.argv[1:7]
STEP = 15
TOTAL = 60
COMMANDS = "http://jabber.org/protocol/commands"
NOT_AVAILABLE = {"unavailable", "subscribe", "subscribed", "unsubscribe",
                 "unsubscribed", "probe", "error"}

logging.basicConfig(level=logging.ERROR)


def out(word, value=""):
    print(word, json.dumps(value), flush=True)


class Scenario(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.ok = False
        self.auto_authorize = True
        self.auto_subscribe = True
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0050")
        self.presences = asyncio.Queue()
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", self.failed)
        self.add_event_handler("presence", self.presences.put_nowait)

    def failed(self, event):
        out("FAIL", "authentication failed")
        self.disconnect()

    async def wait(self, queue, pred, what):
        async def loop():
            while True:
                stanza = await queue.get()
                if pred(stanza):
                    return stanza
        try:
            return await asyncio.wait_for(loop(), STEP)
        except asyncio.TimeoutError:
            raise RuntimeError("timed out waiting for " + what) from None

    async def commands(self):
        res = await self["xep_0050"].get_commands(jid=gw, timeout=STEP)
        return [i[1] for i in res["disco_items"]["items"]]

    async def command(self, node, action="execute", fields=None, sid=None):
        payload = None
        if fields is not None:
            payload = self["xep_0004"].make_form(ftype="submit")
            for var, value in fields.items():
                payload.add_field(var=var, value=value)
        try:
            res = await self["xep_0050"].send_command(
                gw, node, action=action, payload=payload, sessionid=sid,
                timeout=STEP)
        except IqError as e:
            return {"error": e.condition}
        except IqTimeout:
            return {"error": "timeout"}
        cmd = res["command"]
        form = cmd["form"]
        return {
            "status": cmd["status"],
            "sid": cmd["sessionid"],
            "notes": [[t, text] for t, text in cmd["notes"]],
            "form_type": form["type"],
            "fields": sorted(form.get_fields().keys()),
            "actions": sorted(cmd["actions"]),
        }

    async def start(self, event):
        try:
            await self.scenario()
            self.ok = True
        except Exception as e:  # report any failure as a line, then leave
            out("FAIL", repr(e))
        finally:
            self.disconnect()

    async def scenario(self):
        self.send_presence()
        await self.get_roster(timeout=STEP)

        info = await self["xep_0030"].get_info(jid=gw, timeout=STEP)
        out("FEATURES", sorted(info["disco_info"]["features"]))
        out("COMMANDS", await self.commands())

        first = await self.command("register")
        out("REGISTER_FORM", first)
        done = await self.command("register", action="complete", sid=first["sid"],
                                  fields={"username": number, "password": imip_pw})
        out("REGISTER", done)

        # auto_authorize answers the gateway's subscribe; the gateway logs
        # in with our presence and comes online.
        await self.wait(self.presences,
                        lambda p: p["from"].bare == gw and p["type"] not in NOT_AVAILABLE,
                        "the gateway's presence")
        out("GATEWAY_ONLINE")
        out("COMMANDS_AFTER", await self.commands())
        out("STATUS", await self.command("status"))
        out("ADMIN", await self.command("admin#statistics"))

        # A session cancelled.
        pw = await self.command("password")
        out("CANCEL", await self.command("password", action="cancel", sid=pw["sid"]))

        first = await self.command("unregister")
        out("UNREGISTER", await self.command("unregister", action="complete", sid=first["sid"],
                                             fields={"confirm": True}))
        await self.wait(self.presences,
                        lambda p: p["from"].bare == gw and p["type"] == "unavailable",
                        "unavailable presence from the gateway")
        out("GATEWAY_OFFLINE")
        out("COMMANDS_END", await self.commands())
        out("DONE")


x = Scenario()
x.ssl_context.check_hostname = False
x.ssl_context.verify_mode = ssl.CERT_NONE
x.connect(("127.0.0.1", int(port)))
x.loop.call_later(TOTAL, lambda: (out("FAIL", "watchdog"), x.disconnect()))
x.process(forever=False)
sys.exit(0 if x.ok else 1)
