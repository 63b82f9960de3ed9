"""`edgeloop demo`: show the loop on one machine on embedded defaults."""
