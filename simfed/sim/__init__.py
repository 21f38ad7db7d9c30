"""SimPy runtime: network, transport, federation sender and the simulated homeserver."""
