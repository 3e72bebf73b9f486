from tests.robustness import rig as R
_orig = R.Rig._fail
def fail(self, text):
    m = self.core.master
    print("\nFAIL", text)
    for s in m.slaves.values():
        print(" slave %04X P%d sent=%d unacked=%d allowed=%d committed=%d offer=%d silent=%.1f linked=%.1f hb_tx=%s" % (s.twcid, s.protocol, s.sent_centiamps, s.unacked_centiamps, s.allowed_centiamps, s.committed_centiamps, s.offer_amps, self.now - s.last_rx_s, s.linked_s, [round(x,1) for x in list(s.heartbeat_tx_s)[-4:]]))
    print(" departed", m._departed, "now", self.now)
    for t, w in self.wire.items():
        print(" wire %04X" % t, vars(w))
    print(" units", [(hex(u.twcid), u.limit_amps) for u in self.bus.slaves])
    return _orig(self, text)
R.Rig._fail = fail
