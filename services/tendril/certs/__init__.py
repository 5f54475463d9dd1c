"""A private certificate authority for Tendril's mTLS: ``tendril certs init`` and ``tendril certs issue``.

Layout of a certificate directory (default ``~/.config/tendril/certs``, 0700):

* ``ca.pem`` / ``ca.key`` — the CA certificate (hand it to every peer) and its key (keep it
  on the machine that issues certificates; 0600);
* ``<name>.pem`` / ``<name>.key`` — a node certificate with CN = ``<name>`` (the peer id:
  worker id, scheduler id, gateway or data node name) and its key (0600).
"""
