"""`docvl up`: the whole platform on one machine, on loopback, with one command."""
