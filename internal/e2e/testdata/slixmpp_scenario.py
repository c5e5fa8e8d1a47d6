# A full gateway scenario driven by slixmpp, an independent XMPP client.
# Run by slixmpp_test.go. Arguments:
#   jid password c2s_port gateway number imip_password peer_jid text ack_text away_text
# Each step is bounded by STEP seconds and the whole run by TOTAL; the script
# exits by itself, 0 when every step passed. It prints one line per step:
# a word, then JSON (ASCII only, so the locale does not matter).
import asyncio
import json
import logging
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

(jid, password, port, gw, number, imip_pw, peer, text, ack_text,
 away_text) = sys.argv[1:11]
STEP = 15
TOTAL = 60
REG = "jabber:iq:register"
NICK = "{http://jabber.org/protocol/nick}nick"
NOT_AVAILABLE = {"unavailable", "subscribe", "subscribed", "unsubscribe",
                 "unsubscribed", "probe", "error"}

logging.basicConfig(level=logging.ERROR)


def out(word, value=""):
    print(word, json.dumps(value), flush=True)


class Scenario(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.ok = False
        # Approve the gateway's subscription request and subscribe back.
        self.auto_authorize = True
        self.auto_subscribe = True
        self.register_plugin("xep_0030")
        self.messages = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", self.failed)
        self.add_event_handler("message", self.messages.put_nowait)
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

    async def register_iq(self, build):
        query = ET.Element("{%s}query" % REG)
        build(query)
        iq = self.make_iq_set(sub=query, ito=gw)
        try:
            res = await iq.send(timeout=STEP)
            return res["type"]
        except IqError as e:
            return "error:" + e.condition
        except IqTimeout:
            return "timeout"

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

        # Discovery: the gateway's identity and features.
        info = await self["xep_0030"].get_info(jid=gw, timeout=STEP)
        out("IDENTITIES", sorted("%s/%s" % (i[0], i[1])
                                 for i in info["disco_info"]["identities"]))
        out("FEATURES", sorted(info["disco_info"]["features"]))

        # XEP-0077: fetch the form, then register with the plain fields.
        iq = self.make_iq_get(queryxmlns=REG, ito=gw)
        res = await iq.send(timeout=STEP)
        query = res.xml.find("{%s}query" % REG)
        out("FORM", [c.tag.split("}")[1] for c in query])

        def fields(q):
            ET.SubElement(q, "{%s}username" % REG).text = number
            ET.SubElement(q, "{%s}password" % REG).text = imip_pw
        out("REGISTER", await self.register_iq(fields))

        # auto_authorize answers the gateway's subscribe; the server then
        # sends our presence, the gateway logs in and comes online.
        await self.wait(self.presences,
                        lambda p: p["from"].bare == gw and p["type"] not in NOT_AVAILABLE,
                        "the gateway's presence")
        out("GATEWAY_ONLINE")
        # Our subscribe back is approved too: the roster item becomes both.
        for _ in range(STEP * 20):
            if self.client_roster[gw]["subscription"] == "both":
                break
            await asyncio.sleep(0.05)
        out("GATEWAY_SUBSCRIPTION", self.client_roster[gw]["subscription"])

        # The gateway put the IMIP contact into our roster (XEP-0356 push).
        for _ in range(STEP * 20):
            if peer in self.client_roster:
                break
            await asyncio.sleep(0.05)
        item = self.client_roster[peer]
        out("PEER_ITEM", {"name": item["name"], "groups": item["groups"]})

        self.send_message(mto=peer, mbody=text, mtype="chat")
        out("SENT", text)

        def from_peer(m):
            return m["from"].bare == peer and m["type"] in ("chat", "normal") and m["body"]
        msg = await self.wait(self.messages, from_peer, "the peer's reply")
        nick = msg.xml.find(NICK)
        out("RECEIVED", {"body": msg["body"], "type": msg["type"],
                         "nick": nick.text if nick is not None else None})

        self.send_presence(pshow="away", pstatus=away_text)
        out("AWAY", away_text)
        # The peer confirms it saw the status before we leave.
        msg = await self.wait(self.messages,
                              lambda m: from_peer(m) and m["body"] == ack_text,
                              "the peer's acknowledgement")
        out("ACK", msg["body"])

        out("UNREGISTER", await self.register_iq(
            lambda q: ET.SubElement(q, "{%s}remove" % REG)))
        await self.wait(self.presences,
                        lambda p: p["from"].bare == gw and p["type"] == "unavailable",
                        "unavailable presence from the gateway")
        out("GATEWAY_OFFLINE")
        out("DONE")


x = Scenario()
x.ssl_context.check_hostname = False
x.ssl_context.verify_mode = ssl.CERT_NONE
x.connect(("127.0.0.1", int(port)))
# A watchdog: whatever happens, leave after TOTAL seconds.
x.loop.call_later(TOTAL, lambda: (out("FAIL", "watchdog"), x.disconnect()))
x.process(forever=False)
sys.exit(0 if x.ok else 1)
