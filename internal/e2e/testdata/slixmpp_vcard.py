# slixmpp, an independent client, asks the gateway for vCards. Run by
# vcard_test.go once the account is registered. Arguments:
#   jid password c2s_port gateway peer_jid
# Prints one line per answer: a word, then JSON (ASCII only). Each request is
# bounded by STEP seconds and the whole run by TOTAL; the script exits by
# itself, 0 when all were answered.
import asyncio
import json
import logging
import ssl
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

jid, password, port, gw, peer = sys.argv[1:6]
STEP = 15
TOTAL = 45
VCARD4 = "{urn:ietf:params:xml:ns:vcard-4.0}vcard"

logging.basicConfig(level=logging.ERROR)


def out(word, value=""):
    print(word, json.dumps(value), flush=True)


class VCards(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.ok = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0054")
        self.register_plugin("xep_0060")
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", self.failed)

    def failed(self, event):
        out("FAIL", "authentication failed")
        self.disconnect()

    async def start(self, event):
        try:
            for word, who in (("PEER", peer), ("GATEWAY", gw)):
                res = await self["xep_0054"].get_vcard(jid=who, timeout=STEP)
                v = res["vcard_temp"]
                out(word, {"fn": v["FN"], "nickname": v["NICKNAME"],
                           "note": v["NOTE"]})
            res = await self["xep_0060"].get_items(peer, "urn:xmpp:vcard4",
                                                   timeout=STEP)
            fn = None
            for item in res["pubsub"]["items"]:
                card = item.xml.find(VCARD4)
                if card is not None:
                    fn = card.findtext("{urn:ietf:params:xml:ns:vcard-4.0}nickname/"
                                       "{urn:ietf:params:xml:ns:vcard-4.0}text")
            out("VCARD4_NICKNAME", fn)
            self.ok = True
        except (IqError, IqTimeout) as e:
            out("FAIL", repr(e))
        except Exception as e:  # report any failure as a line, then leave
            out("FAIL", repr(e))
        finally:
            self.disconnect()


x = VCards()
x.ssl_context.check_hostname = False
x.ssl_context.verify_mode = ssl.CERT_NONE
x.connect(("127.0.0.1", int(port)))
# A watchdog: whatever happens, leave after TOTAL seconds.
x.loop.call_later(TOTAL, lambda: (out("FAIL", "watchdog"), x.disconnect()))
x.process(forever=False)
sys.exit(0 if x.ok else 1)
