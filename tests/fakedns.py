"""A tiny DNS server on 127.0.0.1 for tests: answers from a dict, NXDOMAIN otherwise."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.resolver
import dns.rrset


class FakeDNS:
    """records: {("name.", "MX"): ["10 mx.example."], ("name.", "TXT"): ['"v=spf1 -all"']}."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def resolver(self) -> dns.resolver.Resolver:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.port
        r.lifetime = 2
        return r

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            q = query.question[0]
            name, rtype = q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype)
            self.queries.append((name, rtype))
            answers = self.records.get((name, rtype))
            if answers:
                response.answer.append(dns.rrset.from_text(q.name, 300, "IN", rtype, *answers))
            elif not any(n == name for n, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def stop(self) -> None:
        self.sock.close()
